"""PCA(16).fit on Fashion-MNIST's 60000 x 784 training images from Python: laepca.PCA against
sklearn.decomposition.PCA in the same process, interleaved, median of 5 (and how well they agree).

    apt-get install -y dataset-fashion-mnist
    python scripts/fashion_mnist_python.py [--repeats 5] [--backend auto] [--dtype float32]
"""

import argparse
import gzip
import statistics
import time

import numpy as np
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA as SklearnPCA

from laepca import PCA

IMAGES = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def load_idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = np.frombuffer(raw[:16], dtype=">u4")
    if magic != 2051:
        raise ValueError(f"{path}: not an IDX image file (magic {magic})")
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(int(n), int(rows) * int(cols))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    X = (load_idx_images(IMAGES) / 255.0).astype(args.dtype)
    times = {"laepca": [], "sklearn": []}
    for _ in range(args.repeats):
        t = time.perf_counter()
        ours = PCA(16, backend=args.backend, random_state=0).fit(X)
        times["laepca"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ref = SklearnPCA(16, random_state=0).fit(X)
        times["sklearn"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"data {X.shape} {X.dtype}; laepca backend {ours.backend_} ({ours.adapter_}), "
          f"{ours.n_iter_} iterations, converged {ours.converged_}; sklearn svd_solver {ref._fit_svd_solver}")
    for k, v in times.items():
        print(f"{k:8s} median {med[k]:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in v)})")
    print(f"ratio laepca / sklearn = {med['laepca'] / med['sklearn']:.2f}")
    print(f"laepca phases (last run): " + ", ".join(f"{k} {v:.3f}" for k, v in ours.timings_.items()))
    angle = np.max(subspace_angles(ours.components_.T.astype(np.float64), ref.components_.T.astype(np.float64)))
    ratio_err = np.max(np.abs(ours.explained_variance_ratio_ / ref.explained_variance_ratio_ - 1))
    print(f"agreement: largest principal angle {angle:.2e} rad, explained variance ratio rel. {ratio_err:.2e}")


if __name__ == "__main__":
    main()
