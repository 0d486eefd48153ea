#!/usr/bin/env python3
"""laepca's CPU path against scikit-learn's PCA, interleaved in one run on the same machine.

Data sets (both float32, samples in rows):
  fashion   the 60000 x 784 Fashion-MNIST training images, pixels / 255 (Debian's dataset-fashion-mnist)
  synthetic 50000 x 2048: rank 64 (geometric spectrum 10 .. 1) + N(0, 0.1²) noise + mean 5, seed 0

For each data set the script writes the matrix once as .npy, then alternates, `--runs` times (median
quoted), on the same in-memory float32 matrix in this process: scikit-learn's
`PCA(k, svd_solver="covariance_eigh").fit` (its automatic choice for tall data) and laepca's Python
package, `laepca.PCA(k, backend="cpu").fit` (both wall clock, each call's own validation included);
and, as a third timing, the command-line tool on the file, `laepca fit FILE.npy -k K --backend cpu
--json`, of which only the fit phases are counted (gram + setup + iterate + finish from the summary's
timings_ms; the file is read beside the Gram on the same cores, so this figure includes what the reading
takes from them; the rest of the run is reported apart as load). Each timing starts after a pause
(`--pause`, 0.3 s): OpenBLAS's worker threads spin for about 0.1 s after a call, and without the pause
they would run on the cores that the next timing needs. Accuracy: the largest relative error of the k
explained-variance ratios against scikit-learn's covariance_eigh on the float64 matrix.

It also times loading (the same load figure) against np.load (.npy), gzip.open().read() + frombuffer
(the gzipped IDX file) and np.loadtxt (a CSV of the first 5000 Fashion-MNIST rows).

numpy, scikit-learn and laepca's package come from a virtual environment, not from the project:

    python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install numpy scikit-learn threadpoolctl
    cargo build --release && /tmp/skvenv/bin/pip install ./python
    /tmp/skvenv/bin/python scripts/sklearn_compare.py [--laepca target/release/laepca] [--runs 5]
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

try:
    import laepca
except ImportError:
    laepca = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
FIT_PHASES = ("gram", "setup", "iterate", "finish")


def load_fashion(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != 0x0803:
        sys.exit(f"{path}: not an IDX3 u8 file (magic {magic:#x})")
    pixels = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows * cols)
    return pixels.astype(np.float32) / np.float32(255.0)


def synthetic():
    rng = np.random.default_rng(0)
    n, m, r = 50000, 2048, 64
    u = rng.standard_normal((n, r)).astype(np.float32)
    v = rng.standard_normal((r, m)).astype(np.float32)
    s = np.geomspace(10, 1, r).astype(np.float32)
    noise = rng.standard_normal((n, m)).astype(np.float32)
    return ((u * s) @ v / np.float32(np.sqrt(m)) + np.float32(0.1) * noise + np.float32(5)).astype(np.float32)


def laepca_fit(binary, path, k):
    out = subprocess.run(
        [binary, "fit", path, "-k", str(k), "--backend", "cpu", "--json"],
        check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ).stdout
    return json.loads(out)


def load_seconds(t):
    """Everything in the run but the fit phases and the writing: opening and reading the file (the text
    readers parse at open, which the summary's `load` phase does not count), plus process set-up."""
    return (t["total"] - sum(t[p] for p in FIT_PHASES) - t["write"]) / 1e3


def rel_err(evr, ref):
    evr, ref = np.asarray(evr, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(evr - ref) / ref))


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def compare(name, x, k, runs, binary, tmp, pause):
    path = os.path.join(tmp, f"{name}.npy")
    np.save(path, x)
    ref = PCA(k, svd_solver="covariance_eigh").fit(x.astype(np.float64)).explained_variance_ratio_
    sk_times, py_times, lae_times, lae_phases, lae_loads, np_loads = [], [], [], [], [], []
    py_model = None

    def python_fit():
        return laepca.PCA(k, backend="cpu").fit(x)

    # A warm-up of each, then the three in turn, each after a pause.
    PCA(k, svd_solver="covariance_eigh").fit(x)
    if laepca is not None:
        python_fit()
    laepca_fit(binary, path, k)
    for _ in range(runs):
        time.sleep(pause)
        model = PCA(k, svd_solver="covariance_eigh")
        sk_times.append(timed(lambda: model.fit(x)))
        if laepca is not None:
            time.sleep(pause)
            t = time.perf_counter()
            py_model = python_fit()
            py_times.append(time.perf_counter() - t)
        time.sleep(pause)
        summary = laepca_fit(binary, path, k)
        t = summary["timings_ms"]
        lae_times.append(sum(t[p] for p in FIT_PHASES) / 1e3)
        lae_phases.append({p: t[p] / 1e3 for p in FIT_PHASES})
        lae_loads.append(load_seconds(t))
        np_loads.append(timed(lambda: np.load(path)))
    sk, lae = statistics.median(sk_times), statistics.median(lae_times)
    phases = {p: statistics.median(r[p] for r in lae_phases) for p in FIT_PHASES}
    print(f"\n{name}: {x.shape[0]} x {x.shape[1]} float32, k = {k}, median of {runs} "
          f"(laepca: {summary['solver']}, {summary['iterations']} iterations)")
    print(f"  laepca CLI phases: " + ", ".join(f"{p} {v:.3f} s" for p, v in phases.items()))
    print(f"  laepca CLI fit runs: {', '.join(f'{v:.3f}' for v in lae_times)} s")
    if py_times:
        print(f"  laepca Python fit runs: {', '.join(f'{v:.3f}' for v in py_times)} s "
              f"(last: {', '.join(f'{p} {py_model.timings_[p]:.3f} s' for p in FIT_PHASES)})")
    print(f"  sklearn fit runs: {', '.join(f'{v:.3f}' for v in sk_times)} s")
    print(f"  load .npy: laepca {statistics.median(lae_loads):.3f} s, np.load {statistics.median(np_loads):.3f} s")
    sk_err = rel_err(model.explained_variance_ratio_, ref)
    rows = []
    if py_times:
        rows.append((name, "Python, in memory", statistics.median(py_times), sk,
                     rel_err(py_model.explained_variance_ratio_, ref), sk_err))
    rows.append((name, "CLI, fit phases, from the file", lae, sk,
                 rel_err(summary["explained_variance_ratio"], ref), sk_err))
    return rows


def load_times(binary, fashion, runs, tmp):
    """laepca's load phase against NumPy on the gzipped IDX file and on a CSV."""
    def idx_numpy():
        with gzip.open(fashion, "rb") as f:
            data = f.read()
        return np.frombuffer(data, dtype=np.uint8, offset=16)

    csv = os.path.join(tmp, "fashion5000.csv")
    np.savetxt(csv, load_fashion(fashion)[:5000], fmt="%.6g", delimiter=",")
    rows = []
    for label, path, numpy_load in [
        ("IDX .gz (60000 x 784 u8)", fashion, idx_numpy),
        ("CSV (5000 x 784)", csv, lambda: np.loadtxt(csv, delimiter=",", dtype=np.float32)),
    ]:
        phase, outside, ref = [], [], []
        for _ in range(runs):
            t = laepca_fit(binary, path, 16)["timings_ms"]
            phase.append(t["load"] / 1e3)
            outside.append(load_seconds(t))
            ref.append(timed(numpy_load))
        rows.append((label, statistics.median(phase), statistics.median(outside), statistics.median(ref)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--laepca", default=os.path.join(ROOT, "target", "release", "laepca"))
    ap.add_argument("--fashion", default=os.environ.get("LAEPCA_FASHION_MNIST", DEFAULT_FASHION))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("-k", type=int, default=16)
    ap.add_argument("--only", choices=["fashion", "synthetic"], help="one data set only")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds of pause before each timing")
    args = ap.parse_args()
    if not os.path.exists(args.laepca):
        sys.exit(f"{args.laepca} not found: run `cargo build --release` first")
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i['internal_api']} {i.get('architecture', '')} ({i['num_threads']} threads)"
                         for i in threadpool_info() if i["user_api"] == "blas")
    except ImportError:
        blas = "unknown BLAS"
    print(f"numpy {np.__version__} ({blas}), scikit-learn {sklearn.__version__}; {os.cpu_count()} CPUs")
    if laepca is None:
        print("laepca's Python package is not installed (pip install ./python): CLI timings only")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "fashion"):
            if not os.path.exists(args.fashion):
                sys.exit(f"{args.fashion} not found: install the Debian package dataset-fashion-mnist")
            results += compare("fashion", load_fashion(args.fashion), args.k, args.runs, args.laepca, tmp, args.pause)
        if args.only in (None, "synthetic"):
            results += compare("synthetic", synthetic(), args.k, args.runs, args.laepca, tmp, args.pause)
        loads = load_times(args.laepca, args.fashion, args.runs, tmp) if args.only in (None, "fashion") else []
    print(f"\n| data | laepca CPU | laepca fit (s) | scikit-learn covariance_eigh (s) | ratio | "
          f"EVR error vs float64: laepca / scikit-learn |")
    print("|---|---|---|---|---|---|")
    for name, how, lae, sk, lae_err, sk_err in results:
        print(f"| {name} | {how} | {lae:.3f} | {sk:.3f} | {lae / sk:.2f} | {lae_err:.1e} / {sk_err:.1e} |")
    if loads:
        # .npy and IDX are streamed: their reader runs beside the Gram (the load phase is its time, the
        # time outside the fit phases only what it did not hide); the text readers parse at open.
        print("\n| file | laepca reader, load phase (s) | laepca outside the fit phases (s) | NumPy (s) |")
        print("|---|---|---|---|")
        for label, phase, outside, ref in loads:
            print(f"| {label} | {phase:.3f} | {outside:.3f} | {ref:.3f} |")


if __name__ == "__main__":
    main()
