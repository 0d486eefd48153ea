"""Writes tests/data/pbmc68k_reduced_head.h5ad: the first 150 cells of scanpy's pbmc68k_reduced in the
current AnnData format (anndata >= 0.8: encoding-type attributes, var as a group of columns), for the
.h5ad reader's tests. The other fixture, tests/data/10x_pbmc68k_reduced.h5ad, is scanpy's own file (the
legacy anndata < 0.7 layout), copied unchanged from its wheel.

    python scripts/make_h5ad_fixture.py          # needs scanpy (and so anndata, h5py, scipy)

Contents: X dense float32 (150 x 765); raw.X CSR float32 counts with raw.var; layers["counts_csc"] the
same counts as CSC; layers["detected_int"] dense int32, 1 where raw.X is non-zero; var columns highly_variable (bool),
hv_with_na (pandas' nullable boolean, one missing value) and means (float32, not a mask).
"""
import sys
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

N_CELLS = 150

full = sc.datasets.pbmc68k_reduced()
head = full[:N_CELLS].copy()
counts = sp.csr_matrix(full.raw.X[:N_CELLS], dtype=np.float32)
counts.sort_indices()

var = pd.DataFrame(index=head.var_names.copy())
var["highly_variable"] = head.var["highly_variable"].to_numpy(dtype=bool)
with_na = pd.array(var["highly_variable"].to_numpy(), dtype="boolean")
with_na[3] = pd.NA
var["hv_with_na"] = with_na
var["means"] = head.var["means"].to_numpy(dtype=np.float32)

out = anndata.AnnData(
    X=np.asarray(head.X, dtype=np.float32),
    obs=pd.DataFrame(index=head.obs_names.copy()),
    var=var,
)
out.raw = anndata.AnnData(X=counts, var=pd.DataFrame(index=full.raw.var_names.copy()))
out.layers["counts_csc"] = sp.csc_matrix(counts)
out.layers["detected_int"] = (counts.toarray() != 0).astype(np.int32)

path = Path(__file__).resolve().parent.parent / "tests" / "data" / "pbmc68k_reduced_head.h5ad"
out.write_h5ad(path, compression="gzip")
print(f"wrote {path} ({path.stat().st_size} bytes), anndata {anndata.__version__}", file=sys.stderr)
