"""Dask arrays: Gram statistics per row block on the workers, an exact pairwise tree reduction, one
solve on the combined C; lazy transforms through ``map_blocks``."""

import functools
import sys

import numpy as np

from . import _laepca


def is_dask_array(x):
    """Whether ``x`` is a dask array (without importing dask when it was never imported)."""
    if "dask.array" not in sys.modules:
        return False
    import dask.array as da

    return isinstance(x, da.Array)


def is_sparse_dask(x):
    """Whether the chunks of a dask array are scipy.sparse matrices."""
    import scipy.sparse as sp

    return sp.issparse(getattr(x, "_meta", None))


@functools.lru_cache(maxsize=None)
def has_hardware_gpu():
    """Whether wgpu finds a hardware adapter (software ones, like lavapipe, are slower than the CPU
    engine). Asked once per process: enumerating adapters costs a driver round-trip."""
    return any(d["device_type"] != "cpu" for d in _laepca.devices())


def use_gpu(backend):
    """Whether a block is to be summed on a GPU: asked for, or "auto" with a hardware adapter."""
    if backend == "gpu":
        return True
    return backend == "auto" and has_hardware_gpu()


def aligned(x, contiguous=True):
    """``x`` as an aligned (and by default C-contiguous) NumPy array, copied only when it is not: arrays
    that arrive through pickle protocol 5 buffers, as Dask sends them, can be misaligned."""
    return np.require(x, requirements=["A", "C"] if contiguous else ["A"])


def aligned_stats(stats):
    c, mean, n = stats
    return aligned(c), aligned(mean), n


def block_stats(block, center, backend, adapter):
    """The Gram statistics ``(C, mean, n)`` of one row block, computed on the worker that holds it, on
    its GPU when ``backend`` asks for one (``"auto"``: a hardware adapter if the worker has one)."""
    return _laepca.gram_stats(aligned(block), center, use_gpu(backend), adapter)


def merge_stats(a, b):
    """The exact combination of two blocks' statistics (the library's ``GramStats::merge``)."""
    return _laepca.merge_stats(aligned_stats(a), aligned_stats(b))


def tree_reduce(parts, combine):
    """Combines delayed values pairwise, level by level, in a fixed order: a tree of depth log2(len)."""
    import dask

    combine = dask.delayed(combine, pure=True)
    while len(parts) > 1:
        parts = [
            combine(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    return parts[0]


def gram_stats(x, center, backend, adapter):
    """``(C, mean, n)`` of a 2-D dask array chunked by rows (columns are gathered into one chunk)."""
    import dask

    if x.numblocks[1] > 1:
        x = x.rechunk({1: -1})
    blocks = x.to_delayed()[:, 0].tolist()
    parts = [
        dask.delayed(block_stats, pure=True)(b, center, backend, adapter) for b in blocks
    ]
    (stats,) = dask.compute(tree_reduce(parts, merge_stats))
    return aligned_stats(stats)


def map_rows(x, func, n_out, dtype):
    """``func`` applied lazily to each row block of ``x`` (n x m), giving n x ``n_out``."""
    if x.numblocks[1] > 1:
        x = x.rechunk({1: -1})
    return x.map_blocks(func, dtype=dtype, chunks=(x.chunks[0], (n_out,)))
