#!/usr/bin/env python3
"""scikit-learn's PCA against laepca's CPU path on Fashion-MNIST, on the same machine in the same run.

The matrix: the 60000 x 784 training images, pixels / 255 as float32, k = 16 (scikit-learn's usual
preparation; the benchmark builds the same matrix bit for bit). scikit-learn fits PCA with svd_solver
"covariance_eigh" (its automatic choice for this shape) and "randomized" on the float32 matrix, and
"covariance_eigh" on the float64 matrix as the reference for the explained-variance ratios. laepca's
CPU path (the library's default solver, f32 data) is timed by the benchmark binary
(benches/compare.rs, `--only fashion-mnist --no-gpu`), which reports the median of 3 runs after a warm-up.

numpy and scikit-learn come from a local virtual environment, not from the project:

    python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install numpy scikit-learn
    /tmp/skvenv/bin/python scripts/sklearn_compare.py [--laepca-bin target/release/deps/compare-HASH]

Without --laepca-bin the script builds the bench binary with cargo.
"""

import argparse
import gzip
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import sklearn
from sklearn.decomposition import PCA

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def load_fashion(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != 0x0803:
        sys.exit(f"{path}: not an IDX3 u8 file (magic {magic:#x})")
    pixels = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows * cols)
    # The same float32 values as the benchmark's `v as f32 / 255.0`.
    return pixels.astype(np.float32) / np.float32(255.0)


def timed_fits(make, x, runs):
    """A warm-up fit, then `runs` timed fits; the median time and the last model."""
    make().fit(x)
    times, model = [], None
    for _ in range(runs):
        model = make()
        t = time.perf_counter()
        model.fit(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, model


def bench_binary(given):
    if given:
        return given
    print("building the bench binary with cargo ...", file=sys.stderr)
    out = subprocess.run(
        ["cargo", "bench", "--bench", "compare", "--no-run", "--message-format=json"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ).stdout
    exe = None
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("executable") and msg.get("target", {}).get("name") == "compare":
            exe = msg["executable"]
    if not exe:
        sys.exit("could not find the bench binary in cargo's output")
    return exe


def laepca_cpu(binary, fashion, runs, solvers):
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            binary, "--only", "fashion-mnist", "--no-gpu", "--no-eigen", "--no-plots",
            "--solvers", solvers, "--runs", str(runs), "--fashion", fashion, "--out", out,
        ]
        print("running:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(out, "results.json")) as f:
            report = json.load(f)
    problem = next(p for p in report["problems"] if p["family"] == "fashion")
    return problem


def rel_err(evr, ref):
    evr, ref = np.asarray(evr, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(evr - ref) / ref))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--laepca-bin", help="the bench binary (target/release/deps/compare-HASH)")
    ap.add_argument("--fashion", default=os.environ.get("LAEPCA_FASHION_MNIST", DEFAULT_FASHION))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("-k", type=int, default=16)
    ap.add_argument("--laepca-solvers", default="default",
                    help="laepca solvers to time, comma-separated (`default`: the library's default)")
    args = ap.parse_args()
    if not os.path.exists(args.fashion):
        sys.exit(f"{args.fashion} not found: install the Debian package dataset-fashion-mnist")
    binary = bench_binary(args.laepca_bin)

    x32 = load_fashion(args.fashion)
    x64 = x32.astype(np.float64)
    print(f"Fashion-MNIST {x32.shape[0]} x {x32.shape[1]}, k = {args.k}; numpy {np.__version__}, "
          f"scikit-learn {sklearn.__version__}; {os.cpu_count()} CPUs")

    ref = PCA(args.k, svd_solver="covariance_eigh").fit(x64).explained_variance_ratio_

    rows = []
    for name, solver, x, extra in [
        ("sklearn covariance_eigh float32", "covariance_eigh", x32, {}),
        ("sklearn randomized float32", "randomized", x32, {"random_state": 0}),
    ]:
        med, times, model = timed_fits(lambda: PCA(args.k, svd_solver=solver, **extra), x, args.runs)
        rows.append((name, med, times, model.explained_variance_ratio_))

    problem = laepca_cpu(binary, args.fashion, args.runs, args.laepca_solvers)
    bench_ref = problem["reference_explained_variance_ratio"]
    laepca_rows = []
    for r in problem["rows"]:
        if r["status"] != "ok":
            print(f"laepca {r['name']}: {r['status']}: {r['note']}")
            continue
        name = f"laepca CPU {r['solver']} {r['precision']} ({r['iterations']} it, " + (
            "converged" if r["converged"] else "stalled" if r["stalled"] else "not converged") + ")"
        t = r["times_s"]
        laepca_rows.append((name, t["total"], [t["total"]], r["explained_variance_ratio"]))
        print(f"  {name}: gram {t['gram']:.3f} s, setup {t['setup']:.3f} s, loop {t['iterate']:.3f} s, "
              f"finish {t['finish']:.3f} s, other {t['other']:.3f} s (median of {r['runs']})")

    print()
    print(f"| method | median of {args.runs} (s) | explained_variance_ratio_[0] | max rel. error of the {args.k} "
          "ratios vs f64 | laepca-CPU / this |")
    print("|---|---|---|---|---|")
    lae_time = laepca_rows[0][1] if laepca_rows else float("nan")
    for name, med, _, evr in rows + laepca_rows:
        print(f"| {name} | {med:.3f} | {evr[0]:.8f} | {rel_err(evr, ref):.1e} | {lae_time / med:.2f} |")
    print(f"| sklearn covariance_eigh float64 (reference) | - | {ref[0]:.8f} | 0 | - |")
    print()
    print(f"the benchmark's own f64 reference (nalgebra on the f64 Gram) differs from scikit-learn's float64 "
          f"covariance_eigh by {rel_err(bench_ref, ref):.1e} relative")
    for name, med, times, _ in rows:
        print(f"{name}: runs {', '.join(f'{t:.3f}' for t in times)} s")
    if laepca_rows:
        cov = rows[0][1]
        print(f"\nlaepca CPU / sklearn covariance_eigh float32 time: {lae_time / cov:.2f} "
              f"(expectation: within 1.5)")


if __name__ == "__main__":
    main()
