#!/usr/bin/env python3
"""OpenBLAS's sgemm (full BᵀB) and ssyrk (one triangle) on the Gram blocks of benches/gram_kernels.rs,
through SciPy: best and median GFLOP/s, counting the flops each performs (2·len·m² and len·m·(m+1)).

    python3 scripts/blas_gram_block.py     (numpy, scipy, threadpoolctl from a virtual environment)
"""
import time

import numpy as np
from scipy.linalg import blas

try:
    from threadpoolctl import threadpool_info
    print([(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()])
except ImportError:
    pass
print("| len x m | kernel | best GFLOP/s | median GFLOP/s | effective (best) |")
print("|---|---|---|---|---|")
for length, m in [(512, 784), (512, 2048), (2048, 784)]:
    b = np.asfortranarray(np.random.default_rng(1).standard_normal((m, length)).astype(np.float32))
    reps = 7 if m > 1000 else 15
    full, tri = 2.0 * length * m * m, float(length * m * (m + 1))

    def t(f):
        f()
        ts = []
        for _ in range(reps):
            s = time.perf_counter()
            f()
            ts.append(time.perf_counter() - s)
        ts.sort()
        return ts[0], ts[reps // 2]

    for name, f, flops in [
        ("OpenBLAS sgemm (full)", lambda: blas.sgemm(1.0, b, b, trans_b=True), full),
        ("OpenBLAS ssyrk (lower)", lambda: blas.ssyrk(1.0, b, lower=True), tri),
    ]:
        best, med = t(f)
        print(f"| {length} x {m} | {name} | {flops / best / 1e9:.1f} | {flops / med / 1e9:.1f} | {full / best / 1e9:.1f} |")
