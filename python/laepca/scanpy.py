"""scanpy-style use: ``laepca.scanpy.pca(adata, ...)`` writes what ``scanpy.pp.pca`` writes, where it
writes it, so that ``sc.pp.neighbors`` and ``sc.tl.umap`` run on the result unchanged.

- ``adata.obsm["X_pca"]``: the scores, n_obs x n_comps, in ``dtype`` (float32 by default, as scanpy);
- ``adata.varm["PCs"]``: the loadings, n_vars x n_comps, zeros for the variables outside ``mask_var``;
- ``adata.uns["pca"]``: ``variance``, ``variance_ratio`` and ``params`` (``zero_center``,
  ``use_highly_variable``, ``mask_var``, and ``layer`` when one was used).

Only anndata is needed (not scanpy itself).
"""

import numpy as np

from ._pca import PCA

#: scanpy's default number of components (``scanpy.settings.N_PCS``).
N_PCS = 50


class _Empty:
    """The "not given" default of ``mask_var`` (None means "no mask")."""

    def __repr__(self):
        return "<default>"


_empty = _Empty()


def _mask(adata, mask_var):
    """(the parameter as scanpy records it, the boolean mask or None), as scanpy decides: by default
    ``"highly_variable"`` when ``adata.var`` has that column, else no mask."""
    if mask_var is _empty:
        mask_var = "highly_variable" if "highly_variable" in adata.var.columns else None
    if mask_var is None:
        return None, None
    if isinstance(mask_var, str):
        if mask_var not in adata.var.columns:
            raise KeyError(f"mask_var={mask_var!r} is not a column of adata.var")
        mask = np.asarray(adata.var[mask_var].values)
    else:
        mask = np.asarray(mask_var)
    if mask.dtype != bool or mask.shape != (adata.n_vars,):
        raise ValueError(f"mask_var must select variables: a boolean array of length {adata.n_vars}")
    return mask_var, mask


def pca(
    data,
    n_comps=None,
    *,
    layer=None,
    zero_center=True,
    random_state=0,
    return_info=False,
    mask_var=_empty,
    dtype="float32",
    key_added=None,
    copy=False,
    **pca_params,
):
    """PCA of an AnnData (or an array) by laepca, with ``scanpy.pp.pca``'s arguments and results.

    Parameters
    ----------
    data : AnnData or array (n_obs x n_vars)
    n_comps : int or None
        None: 50, or ``min(n_obs, n_vars) − 1`` when that is smaller (as scanpy).
    layer : str or None
        The layer to use instead of ``X``.
    zero_center : bool
        Centre the variables (False: the uncentred decomposition; its ``variance`` is then
        ``σ²/(n − 1)`` of the uncentred data).
    random_state : int, RandomState or None
    return_info : bool
        For an array: also return ``(components, variance_ratio, variance)`` as scanpy does.
    mask_var : str, boolean array or None
        The variables to use; by default ``"highly_variable"`` when ``adata.var`` has it.
    dtype : str
        The dtype of the scores.
    key_added : str or None
        Store under this key in ``obsm``, ``varm`` and ``uns`` instead of X_pca, PCs and pca.
    copy : bool
        Return a modified copy instead of writing into ``data``.
    **pca_params
        Passed to :class:`laepca.PCA` (``backend``, ``solver``, ``tol``, ...); ``precision`` defaults
        to ``"float64"`` here.

    Returns
    -------
    The modified copy with ``copy=True``, None for an AnnData, the scores for an array.
    """
    try:
        from anndata import AnnData
    except ImportError as e:  # pragma: no cover - anndata is an optional dependency
        raise ImportError("laepca.scanpy needs anndata: pip install 'laepca[scanpy]'") from e

    return_anndata = isinstance(data, AnnData)
    if return_anndata:
        adata = data.copy() if copy else data
    else:
        adata = AnnData(np.asarray(data))
    mask_var_param, mask = _mask(adata, mask_var)
    sub = adata[:, mask] if mask is not None else adata
    x = sub.X if layer is None else sub.layers[layer]
    if n_comps is None:
        min_dim = min(sub.n_vars, sub.n_obs)
        n_comps = min_dim - 1 if min_dim <= N_PCS else N_PCS

    # float64 unless asked otherwise: scanpy's 50 components end in eigenvalues a percent apart, which
    # a float32 solve does not separate well (the scores are still stored in `dtype`).
    pca_params.setdefault("precision", "float64")
    model = PCA(n_comps, random_state=random_state, center=zero_center, **pca_params)
    x_pca = model.fit_transform(x)
    if x_pca.dtype != np.dtype(dtype):
        x_pca = x_pca.astype(dtype)

    if not return_anndata:
        if return_info:
            return x_pca, model.components_, model.explained_variance_ratio_, model.explained_variance_
        return x_pca

    key_obsm, key_varm, key_uns = ("X_pca", "PCs", "pca") if key_added is None else [key_added] * 3
    adata.obsm[key_obsm] = x_pca
    if mask is not None:
        loadings = np.zeros((adata.n_vars, n_comps))
        loadings[mask] = model.components_.T
        adata.varm[key_varm] = loadings
    else:
        adata.varm[key_varm] = model.components_.T
    params = dict(
        zero_center=zero_center,
        use_highly_variable=mask_var_param == "highly_variable",
        mask_var=mask_var_param,
    )
    if layer is not None:
        params["layer"] = layer
    adata.uns[key_uns] = dict(
        params=params,
        variance=model.explained_variance_,
        variance_ratio=model.explained_variance_ratio_,
    )
    return adata if copy else None
