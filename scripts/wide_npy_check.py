"""The issue's wide-data figure: a dense n x m float32 .npy (default 2000 x 200000, 1.6 GB) fitted by
`laepca fit` on the transposed Gram route read by blocks of features; prints laepca's peak resident
memory, its time, and the largest principal angle and singular-value error against an independent f64
reference computed here with NumPy (K = X_c X_cᵀ by column blocks of the memory-mapped file, numpy.linalg
.eigh, U = X_cᵀ V Σ⁻¹).

    python scripts/wide_npy_check.py target/release/laepca [--n 2000] [--m 200000] [--k 10] [--dir /tmp]

Needs NumPy and GNU time (/usr/bin/time, for the peak resident memory).

The data: mean 5 + a rank-20 signal with singular values 1000 * 0.8^i + Gaussian noise (0.01), seed 0.
The file is written once and reused (DIR/wide_{n}x{m}.npy).
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def write_data(path, n, m, rank=20, seed=0):
    rng = np.random.default_rng(seed)
    left, _ = np.linalg.qr(rng.standard_normal((n, rank)))
    right, _ = np.linalg.qr(rng.standard_normal((m, rank)))
    sigma = 1000.0 * 0.8 ** np.arange(rank)
    a = left * sigma  # n x rank
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, m))
    for r0 in range(0, n, 100):
        r1 = min(n, r0 + 100)
        block = 5.0 + a[r0:r1] @ right.T + 0.01 * rng.standard_normal((r1 - r0, m))
        out[r0:r1] = block.astype(np.float32)
    out.flush()
    del out


def reference(path, k, block=5000):
    x = np.load(path, mmap_mode="r")
    n, m = x.shape
    kmat = np.zeros((n, n))
    for j0 in range(0, m, block):
        xb = np.asarray(x[:, j0 : j0 + block], dtype=np.float64)
        xb -= xb.mean(axis=0)
        kmat += xb @ xb.T
    vals, vecs = np.linalg.eigh(kmat)
    order = np.argsort(vals)[::-1][:k]
    sigma = np.sqrt(vals[order])
    v = vecs[:, order]
    u = np.zeros((m, k))
    for j0 in range(0, m, block):
        xb = np.asarray(x[:, j0 : j0 + block], dtype=np.float64)
        xb -= xb.mean(axis=0)
        u[j0 : j0 + block] = xb.T @ v / sigma
    return sigma, u


def main():
    p = argparse.ArgumentParser()
    p.add_argument("laepca")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--m", type=int, default=200000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--dir", default="/tmp")
    a = p.parse_args()
    path = Path(a.dir) / f"wide_{a.n}x{a.m}.npy"
    if not path.exists():
        t = time.perf_counter()
        write_data(path, a.n, a.m)
        print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s")
    out = Path(a.dir) / f"wide_{a.n}x{a.m}_fit"
    cmd = [a.laepca, "fit", str(path), "-k", str(a.k), "-o", str(out), "--backend", "cpu", "--json"]
    # GNU time reports laepca's own peak: this process's rusage of a child would also count the pages
    # the child shared with this (large) process between fork and exec.
    t = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-f", "peak_kb %M"] + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if run.returncode != 0:
        sys.exit(f"laepca failed: {run.stderr}")
    peak_mb = int(run.stderr.rsplit("peak_kb ", 1)[1].split()[0]) / 1024
    summary = json.loads(run.stdout)
    comps = np.load(out / "components.npy").astype(np.float64)  # k x m
    svals = np.load(out / "singular_values.npy").astype(np.float64)
    sigma, u = reference(path, a.k)
    q, _ = np.linalg.qr(comps.T)
    cosines = np.linalg.svd(u.T @ q, compute_uv=False)
    angle = float(np.arccos(np.clip(cosines.min(), -1.0, 1.0)))
    sv_err = float(np.max(np.abs(svals - sigma) / sigma))
    print(
        f"{a.n} x {a.m} float32, k = {a.k}: method {summary['method']} ({summary['method_reason']}), "
        f"precision {summary['precision']}, {summary['passes']} passes, wall {wall:.1f} s, "
        f"peak RSS {peak_mb:.0f} MB; largest principal angle to the f64 reference {angle:.1e}, "
        f"largest relative singular-value error {sv_err:.1e}"
    )


if __name__ == "__main__":
    main()
