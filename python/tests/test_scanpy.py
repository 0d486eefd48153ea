"""laepca.scanpy.pca against scanpy's own pp.pca on pbmc68k_reduced (shipped in scanpy's wheel)."""

import numpy as np
import pytest
from conftest import largest_angle

sc = pytest.importorskip("scanpy")
import laepca.scanpy as lsc  # noqa: E402


@pytest.fixture(scope="module")
def pbmc():
    adata = sc.datasets.pbmc68k_reduced()
    reference = adata.copy()
    sc.pp.pca(reference)  # 50 components of the 309 highly variable genes
    return adata, reference


def test_writes_where_scanpy_writes_and_agrees(pbmc):
    adata, reference = pbmc
    ours = adata.copy()
    assert lsc.pca(ours, random_state=0) is None
    for key in ("X_pca",):
        assert ours.obsm[key].shape == reference.obsm[key].shape
        assert ours.obsm[key].dtype == reference.obsm[key].dtype
    assert ours.varm["PCs"].shape == reference.varm["PCs"].shape
    assert ours.varm["PCs"].dtype == reference.varm["PCs"].dtype
    assert ours.uns["pca"]["params"] == reference.uns["pca"]["params"]
    assert set(ours.uns["pca"]) == set(reference.uns["pca"])
    mask = adata.var["highly_variable"].to_numpy()
    assert np.all(ours.varm["PCs"][~mask] == 0), "zeros outside the mask, as scanpy"
    ours_pcs, ref_pcs = ours.varm["PCs"][mask].T, reference.varm["PCs"][mask].T
    # scanpy's reference is a float32 ARPACK solve: its variances carry ~1e-6 relative error, and the
    # 50-dimensional subspace ends in eigenvalues ~1 % apart, which float32 separates only to ~1e-4.
    ratio_err = np.max(np.abs(ours.uns["pca"]["variance_ratio"] / reference.uns["pca"]["variance_ratio"] - 1))
    var_err = np.max(np.abs(ours.uns["pca"]["variance"] / reference.uns["pca"]["variance"] - 1))
    assert ratio_err < 1e-5 and var_err < 1e-5, (ratio_err, var_err)
    assert largest_angle(ours_pcs, ref_pcs) < 1e-3
    assert largest_angle(ours_pcs[:10], ref_pcs[:10]) < 1e-4
    # Per component, the same sign convention: the scores agree column by column.
    cos = np.sum(ours_pcs[:10] * ref_pcs[:10], axis=1)
    assert np.all(cos > 1 - 1e-6), cos


def test_neighbors_and_umap_run_on_the_result(pbmc):
    adata, _ = pbmc
    ours = lsc.pca(adata, n_comps=20, copy=True, key_added=None)
    sc.pp.neighbors(ours, n_pcs=20)
    sc.tl.umap(ours)
    assert ours.obsm["X_umap"].shape == (adata.n_obs, 2)


def test_options_as_scanpy(pbmc):
    adata, _ = pbmc
    ours = lsc.pca(adata, n_comps=5, mask_var=None, key_added="lae", copy=True)
    assert ours.obsm["lae"].shape == (700, 5) and ours.varm["lae"].shape == (765, 5)
    assert ours.uns["lae"]["params"] == dict(zero_center=True, use_highly_variable=False, mask_var=None)
    scores, components, ratio, variance = lsc.pca(adata.X, n_comps=4, return_info=True)
    assert scores.shape == (700, 4) and components.shape == (4, 765)
    layered = adata.copy()
    layered.layers["scaled"] = adata.X * 2
    lsc.pca(layered, n_comps=3, layer="scaled")
    assert layered.uns["pca"]["params"]["layer"] == "scaled"
    assert np.allclose(layered.uns["pca"]["variance"], 4 * lsc.pca(adata, n_comps=3, copy=True).uns["pca"]["variance"], rtol=1e-6)


def test_sparse_counts_are_fitted_without_densifying_as_scanpy_does():
    # raw.X of pbmc68k_reduced: 700 cells x 765 genes, CSR, log-normalised, float32.
    import scipy.sparse as sp

    raw = sc.datasets.pbmc68k_reduced().raw.to_adata()
    assert sp.issparse(raw.X)
    reference = raw.copy()
    sc.pp.pca(reference, n_comps=20)
    ours = raw.copy()
    lsc.pca(ours, n_comps=20, random_state=0)
    assert sp.issparse(ours.X), "the data stays sparse"
    ratio_err = np.max(np.abs(ours.uns["pca"]["variance_ratio"] / reference.uns["pca"]["variance_ratio"] - 1))
    assert ratio_err < 1e-5, ratio_err
    # Against the float64 eigendecomposition of the densified data (the wrapper fits in float64; the
    # operator route's products are f64 sums): ~1e-10 here, where scanpy's own answer is off by ~2e-5.
    dense = raw.X.toarray().astype(np.float64)
    centred = dense - dense.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    top = vectors[:, ::-1][:, :20].T
    assert largest_angle(ours.varm["PCs"].T, top) < 1e-8
