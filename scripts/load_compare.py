#!/usr/bin/env python3
"""laepca's file readers against NumPy's for the same files, interleaved in one run, median of --runs.

Files (Fashion-MNIST, 60000 x 784; written into --dir from --npy when missing):
  fashion.npy       float32                 laepca  vs  np.load
  fashion.csv       '%.6g', comma-separated laepca  vs  np.loadtxt (and pandas.read_csv when installed)
  fashion.csv.gz    the CSV gzipped         laepca  vs  gzip.open().read() (inflate only, no parse)
  IDX .gz (--idx)   the u8 images, gzipped  laepca  vs  gzip.open().read() + np.frombuffer

laepca's figure is `examples/load_time FILE` (read_matrix::<f32>, the whole file into memory, timed inside
the process). The text files are also read with RAYON_NUM_THREADS=1, so that the parallel parse's gain
shows as a ratio. Every file is read once before the timed runs (a warm page cache for all).

    cargo build --release --example load_time
    python3 scripts/load_compare.py [--bin $CARGO_TARGET_DIR/release/examples/load_time] [--runs 5]
"""

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

try:
    import pandas
except ImportError:
    pandas = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def laepca_seconds(binary, path, threads=None):
    env = dict(os.environ)
    if threads is not None:
        env["RAYON_NUM_THREADS"] = str(threads)
    out = subprocess.run([binary, path], check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
    rows, cols, seconds = out.split()
    return (int(rows), int(cols)), float(seconds)


def timed(f):
    start = time.perf_counter()
    result = f()
    return result, time.perf_counter() - start


def prepare(args):
    os.makedirs(args.dir, exist_ok=True)
    npy = os.path.join(args.dir, "fashion.npy")
    if not os.path.exists(npy):
        shutil.copyfile(args.npy, npy)
    csv = os.path.join(args.dir, "fashion.csv")
    if not os.path.exists(csv):
        print(f"writing {csv} ...", file=sys.stderr)
        np.savetxt(csv + ".tmp", np.load(npy), fmt="%.6g", delimiter=",")
        os.rename(csv + ".tmp", csv)
    gz = csv + ".gz"
    if not os.path.exists(gz):
        print(f"writing {gz} ...", file=sys.stderr)
        with open(csv, "rb") as src, gzip.open(gz + ".tmp", "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.rename(gz + ".tmp", gz)
    return npy, csv, gz


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(TARGET, "release", "examples", "load_time"))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--dir", default="/tmp/load_compare")
    p.add_argument("--npy", default="/tmp/data/fashion.npy")
    p.add_argument("--idx", default="/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
    args = p.parse_args()
    npy, csv, gz = prepare(args)

    def idx_numpy():
        with gzip.open(args.idx, "rb") as f:
            data = f.read()
        return np.frombuffer(data, dtype=np.uint8, offset=16)

    def gz_read():
        with gzip.open(gz, "rb") as f:
            return len(f.read())

    # (label, file, laepca's threads (None: all), NumPy's reader or None)
    cases = [
        (".npy", npy, None, "np.load", lambda: np.load(npy)),
        ("CSV", csv, None, "np.loadtxt", lambda: np.loadtxt(csv, delimiter=",", dtype=np.float32)),
    ]
    if pandas is not None:
        cases.append(("CSV", csv, None, "pandas.read_csv",
                      lambda: pandas.read_csv(csv, header=None, dtype=np.float32).to_numpy()))
    cases += [
        ("CSV, 1 thread", csv, 1, None, None),
        ("CSV.gz", gz, None, "gzip.open().read()", gz_read),
        ("CSV.gz, 1 thread", gz, 1, None, None),
        ("IDX .gz", args.idx, None, "gzip.open().read() + frombuffer", idx_numpy),
    ]
    for _, path, threads, _, ref in cases:  # warm the page cache
        laepca_seconds(args.bin, path, threads)
    times = {i: ([], []) for i in range(len(cases))}
    for run in range(args.runs):
        for i, (label, path, threads, _, ref) in enumerate(cases):
            shape, s = laepca_seconds(args.bin, path, threads)
            times[i][0].append(s)
            if ref is not None:
                _, r = timed(ref)
                times[i][1].append(r)
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)

    print(f"{os.cpu_count()} CPUs, median of {args.runs} interleaved runs, warm page cache")
    print("| file | laepca (s) | reference | reference (s) | laepca / reference |")
    print("|---|---|---|---|---|")
    for i, (label, path, threads, name, _) in enumerate(cases):
        lae = statistics.median(times[i][0])
        if name is None:
            print(f"| {label} | {lae:.3f} | | | |")
            continue
        ref = statistics.median(times[i][1])
        print(f"| {label} | {lae:.3f} | {name} | {ref:.3f} | {lae / ref:.2f} |")
    by_label = {c[0]: statistics.median(times[i][0]) for i, c in enumerate(cases)}
    for text in ("CSV", "CSV.gz"):
        one = by_label[f"{text}, 1 thread"]
        print(f"{text}: laepca with all threads / 1 thread = {by_label[text] / one:.2f}")


if __name__ == "__main__":
    main()
