"""``laepca.PCA``: the scikit-learn estimator over the Rust library."""

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from . import _dask, _laepca

_BACKENDS = ("auto", "cpu", "gpu")
_PRECISIONS = ("auto", "float32", "float64")

_SPARSE_MESSAGE = (
    "laepca.PCA does not take sparse dask chunks (nor sparse input to inverse_transform or the "
    "likelihoods); fit a scipy.sparse matrix directly (it is never densified) or pass dense data"
)


class PCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Principal component analysis by an L2-regularised linear autoencoder (LAE-PCA).

    A drop-in for :class:`sklearn.decomposition.PCA`: the top principal directions of the centred data
    are the left singular vectors of the decoder of a linear autoencoder trained with an L2 penalty
    (Kunin et al., ICML 2019), learnt on the Gram matrix of the data by the laepca library, on a GPU
    (wgpu: Vulkan, Metal, DX12) or on the CPU. The attributes are scikit-learn's, with the same sign
    convention (in each component the entry of largest absolute value is positive).

    Parameters
    ----------
    n_components : int, float or None, default=None
        An int: that many components. A float in (0, 1): the fewest components whose explained
        variance ratios add up to more than it (as scikit-learn). None: ``min(n_samples, n_features)``
        (a ValueError when the centred data has a lower rank, e.g. ``n_samples <= n_features``: ask
        for at most ``n_samples - 1`` then).
    whiten : bool, default=False
        Scale the scores to unit variance (``transform`` divides by ``sqrt(explained_variance_)``).
    solver : str, default="auto"
        The iteration: ``"auto"`` (no parameter to tune) or one of the paper's variants ``"untied"``,
        ``"sync"``, ``"tied"``, ``"exact-untied"``, ``"exact-sync"``, ``"exact-tied"``.
    backend : {"auto", "cpu", "gpu"}, default="auto"
        Where to run: ``"auto"`` takes a hardware GPU when there is one, else the CPU; ``"gpu"`` fails
        without an adapter.
    precision : {"auto", "float32", "float64"}, default="auto"
        The dtype the data is fitted in: ``"auto"`` keeps float32 as float32 and anything else as
        float64. The GPU's loop computes in float64 for float64 where the device has f64 shaders
        (``arithmetic_`` says), else in float32; the attributes have this dtype.
    lambda_ : float or None, default=None
        The L2 weight, on the scale of ``C = X_cᵀ X_c`` (it must stay below the k-th squared singular
        value). None: the library's default (half a lower bound of it).
    tol : float or None, default=None
        The stopping threshold (None: the library's default for the solver and precision).
    max_iter : int, default=100000
        The most iterations; ``converged_`` tells whether the fit stopped before.
    random_state : int, RandomState instance or None, default=None
        Seeds the autoencoder's initial weights.
    center : bool, default=True
        Remove each feature's mean (False: the uncentred second moment, as TruncatedSVD).

    Attributes
    ----------
    components_ : ndarray of shape (n_components_, n_features)
    explained_variance_ : ndarray of shape (n_components_,)
        ``σ_i² / (n_samples − 1)``.
    explained_variance_ratio_ : ndarray of shape (n_components_,)
    singular_values_ : ndarray of shape (n_components_,)
    mean_ : ndarray of shape (n_features,)
    n_components_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has string column names (a pandas DataFrame).
    n_samples_ : int
    noise_variance_ : float
        The probabilistic PCA model's noise variance: the mean variance of the discarded directions.
    n_iter_ : int
        Iterations the solver ran; for ``solver="auto"`` its Rayleigh–Ritz steps, the one on the start
        included (so at least 1).
    n_passes_ : int
        Products of C with a block of n_components columns (the library's ``Fit::passes``).
    converged_ : bool
        Whether the stopping quantity fell below ``tol`` before ``max_iter``.
    stalled_ : bool
        Whether the solver stopped at the rounding floor of its precision before reaching ``tol``
        (not converged, but more iterations would only move the result within rounding noise).
    backend_ : str
        ``"cpu"`` or ``"gpu"``: where the fit ran.
    adapter_ : str or None
        The GPU adapter's name.
    arithmetic_ : str
        ``"float32"`` or ``"float64"``: the arithmetic of the solver loop (the data's on the CPU).
    timings_ : dict
        Seconds spent in each phase of the fit (gram, setup, iterate, finish, upload, readback, total).

    Notes
    -----
    The GIL is released while the library works, and Ctrl-C stops a fit within a fraction of a second
    with KeyboardInterrupt (the estimator is left as it was). ``fit`` also takes a dask array chunked
    by rows: each block's Gram statistics are computed where it lives, combined exactly, and solved
    once; ``transform`` of a dask array is lazy.

    ``get_covariance`` is the probabilistic PCA model ``W Wᵀ + σ² I`` with
    ``W = components_ᵀ (explained_variance_ − σ²)^{1/2}`` whether or not ``whiten`` is set (the model
    does not depend on how the scores are scaled; scikit-learn scales ``W`` once more when whitening).
    """

    def __init__(
        self,
        n_components=None,
        *,
        whiten=False,
        solver="auto",
        backend="auto",
        precision="auto",
        lambda_=None,
        tol=None,
        max_iter=100_000,
        random_state=None,
        center=True,
    ):
        self.n_components = n_components
        self.whiten = whiten
        self.solver = solver
        self.backend = backend
        self.precision = precision
        self.lambda_ = lambda_
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.center = center

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.sparse = True
        return tags

    def __sklearn_is_fitted__(self):
        # The parameter `lambda_` ends in "_" like a fitted attribute: say what "fitted" means here.
        return hasattr(self, "components_")

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    # ----------------------------------------------------------------------------------------------
    # Fitting

    def _check_params(self):
        """The parameters, checked, as the keyword arguments of the binding's fits."""
        if self.backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, not {self.backend!r}")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, not {self.precision!r}")
        if not isinstance(self.solver, str):
            raise TypeError(f"solver must be a string, not {type(self.solver).__name__}")
        for name in ("lambda_", "tol"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a number or None, not {type(value).__name__}")
        if not isinstance(self.max_iter, numbers.Integral) or isinstance(self.max_iter, bool):
            raise TypeError(f"max_iter must be an int, not {type(self.max_iter).__name__}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be at least 1, not {self.max_iter}")
        if isinstance(self.random_state, numbers.Integral) and not isinstance(self.random_state, bool):
            if self.random_state < 0:
                raise ValueError(f"random_state must be non-negative, not {self.random_state}")
            seed = int(self.random_state)
        else:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        # "auto" as the library means it (a hardware GPU, else the CPU), with the adapter search done
        # once per process instead of once per fit.
        backend = self.backend
        if backend == "auto" and not _dask.has_hardware_gpu():
            backend = "cpu"
        return dict(
            solver=self.solver,
            backend=backend,
            lambda_=None if self.lambda_ is None else float(self.lambda_),
            tol=None if self.tol is None else float(self.tol),
            max_iter=int(self.max_iter),
            seed=seed,
            center=bool(self.center),
            adapter=None,
        )

    def _resolve_k(self, n_samples, n_features, spectrum=None):
        """The number of components; for a variance fraction, from ``spectrum()`` (C's eigenvalues)."""
        nc = self.n_components
        limit = min(n_samples, n_features)
        if nc is None:
            return limit
        if isinstance(nc, bool) or not isinstance(nc, numbers.Real):
            raise TypeError(f"n_components must be an int, a float in (0, 1) or None, not {nc!r}")
        if isinstance(nc, numbers.Integral):
            if not 1 <= nc <= limit:
                raise ValueError(
                    f"n_components={nc} must be between 1 and min(n_samples, n_features)={limit}"
                )
            return int(nc)
        if not 0.0 < nc < 1.0:
            raise ValueError(f"n_components={nc} as a float must be in (0, 1)")
        eig = np.clip(np.sort(spectrum())[::-1][:limit], 0.0, None)
        ratio_cumsum = np.cumsum(eig) / eig.sum()
        return int(min(np.searchsorted(ratio_cumsum, nc, side="right") + 1, limit))

    def _dtype(self, input_dtype):
        if self.precision == "auto":
            return np.float32 if input_dtype == np.float32 else np.float64
        return np.dtype(self.precision).type

    def fit(self, X, y=None):
        """Fits the model to X (n_samples x n_features: a NumPy array, anything array-like, or a dask
        array chunked by rows). Returns self."""
        self._fit(X)
        return self

    def fit_transform(self, X, y=None):
        """Fits the model and returns the scores of X (lazy for a dask array)."""
        return self._fit(X).transform(X)

    _INPUT_ATTRIBUTES = ("n_features_in_", "feature_names_in_")

    def _fit(self, X):
        # The estimator changes only when a fit succeeds: validate_data records the input's width and
        # names at once, so a failed or interrupted fit puts the previous ones back.
        saved = {a: self.__dict__[a] for a in self._INPUT_ATTRIBUTES if a in self.__dict__}
        try:
            result = self._fit_result(X)
        except BaseException:
            for a in self._INPUT_ATTRIBUTES:
                self.__dict__.pop(a, None)
            self.__dict__.update(saved)
            raise
        self._set_attributes(result)
        return self

    def _fit_result(self, X):
        """The binding's result for X (validated, in the working dtype)."""
        params = self._check_params()
        if _dask.is_dask_array(X):
            return self._fit_dask(X, params)
        else:
            # Dense samples are checked for NaN and infinity by the library as it copies them into
            # the Gram blocks (a ValueError naming the row and column), so not scanned here first.
            X = validate_data(
                self,
                X,
                accept_sparse="csr",
                dtype=[np.float64, np.float32],
                ensure_min_samples=2,
                ensure_all_finite=sp.issparse(X),
            )
            if sp.issparse(X):
                return self._fit_sparse(X, params)
            X = _dask.aligned(X.astype(self._dtype(X.dtype), copy=False), contiguous=False)
            if not (X.flags.c_contiguous or X.flags.f_contiguous):
                X = np.ascontiguousarray(X)
            n, m = X.shape
            if isinstance(self.n_components, float):
                # A variance fraction needs C's spectrum: the statistics once, then a fit on them.
                c, mean, n = _laepca.gram_stats(
                    _dask.aligned(X), params["center"], _dask.use_gpu(params["backend"]), None
                )
                k = self._resolve_k(n, m, lambda: np.linalg.eigvalsh(c))
                return _laepca.fit_gram(c, mean, n, np.dtype(X.dtype).name, dict(params, k=k))
            return _laepca.fit(X, dict(params, k=self._resolve_k(n, m)))

    def _fit_sparse(self, X, params):
        """A CSR matrix, never densified: the library chooses between forming C a block of rows at a
        time, applying C from X at each product, and (fewer samples than features) forming K = X_c X_cᵀ
        a block of features at a time (the centring implicit in each)."""
        X = X.astype(self._dtype(X.dtype), copy=False)
        n, m = X.shape

        def spectrum():
            # A variance fraction needs C's whole spectrum: C formed once (m x m, float64) for it.
            x64 = X.astype(np.float64)
            c = (x64.T @ x64).toarray()
            if params["center"]:
                mean = np.asarray(x64.mean(axis=0)).ravel()
                c -= n * np.outer(mean, mean)
            return np.linalg.eigvalsh(c)

        return _laepca.fit_csr(
            X.indptr.astype(np.int64, copy=False),
            X.indices.astype(np.int64, copy=False),
            np.ascontiguousarray(X.data),
            (n, m),
            "auto",
            dict(params, k=self._resolve_k(n, m, spectrum)),
        )

    def _fit_dask(self, X, params):
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-D dask array, got {X.ndim} dimension(s)")
        if _dask.is_sparse_dask(X):
            raise TypeError(_SPARSE_MESSAGE)
        dtype = self._dtype(X.dtype)
        if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
            raise TypeError(f"a dask array of dtype {X.dtype} cannot be fitted; use a float dtype")
        X = X.astype(dtype)
        # Each worker resolves "auto" itself (a GPU where it has one).
        c, mean, n = _dask.gram_stats(X, params["center"], self.backend, params["adapter"])
        if n < 2:
            raise ValueError(f"Found array with {n} sample(s) while a minimum of 2 is required.")
        k = self._resolve_k(n, c.shape[0], lambda: np.linalg.eigvalsh(c))
        self.n_features_in_ = c.shape[0]
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return _laepca.fit_gram(c, mean, n, np.dtype(dtype).name, dict(params, k=k))

    def _set_attributes(self, r):
        """The binding's result as the fitted attributes (only after a successful fit)."""
        self.components_ = r["components"]
        self.explained_variance_ = r["explained_variance"]
        self.explained_variance_ratio_ = r["explained_variance_ratio"]
        self.singular_values_ = r["singular_values"]
        self.mean_ = r["mean"]
        self.n_components_ = self.components_.shape[0]
        self.n_samples_ = r["n_samples"]
        self.n_iter_ = r["n_iter"]
        self.n_passes_ = r["n_passes"]
        self.converged_ = r["converged"]
        self.stalled_ = r["stalled"]
        self.backend_ = r["backend"]
        self.arithmetic_ = r["arithmetic"]
        self.adapter_ = r["adapter"]
        self.timings_ = r["timings"]
        # The discarded directions' mean variance, from the total variance (scikit-learn's formula for
        # its truncated solvers; equal to the mean of the remaining eigenvalues of a full SVD).
        ev = self.explained_variance_.astype(np.float64)
        ratio = self.explained_variance_ratio_.astype(np.float64)
        total_var = ev.sum() / ratio.sum() if ratio.sum() > 0 else 0.0
        rest = min(self.n_samples_, self.components_.shape[1]) - self.n_components_
        self.noise_variance_ = float(max(total_var - ev.sum(), 0.0) / rest) if rest > 0 else 0.0

    # ----------------------------------------------------------------------------------------------
    # Using the fit

    def _check_input(self, X, accept_sparse=False):
        check_is_fitted(self)
        if not accept_sparse:
            _reject_sparse(X)
        return validate_data(
            self, X, accept_sparse="csr" if accept_sparse else False,
            dtype=[np.float64, np.float32], reset=False,
        )

    def transform(self, X):
        """Scores of X, ``(X − mean_) components_ᵀ`` (divided by ``sqrt(explained_variance_)`` when
        whitening), in X's float dtype. A dask array gives a lazy dask array."""
        check_is_fitted(self)
        if _dask.is_dask_array(X):
            self._check_dask_width(X)
            dtype = self._dtype(X.dtype)
            return _dask.map_rows(X, self._transform_array, self.n_components_, dtype)
        return self._transform_array(self._check_input(X, accept_sparse=True))

    def _transform_array(self, X):
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
        components = self.components_.T.astype(dtype)
        if sp.issparse(X):
            # (X − 1 meanᵀ) Wᵀ = X Wᵀ − 1 (mean Wᵀ): X stays sparse.
            scores = np.asarray(X.astype(dtype) @ components) - self.mean_.astype(dtype) @ components
        else:
            scores = (np.asarray(X, dtype=dtype) - self.mean_.astype(dtype)) @ components
        if self.whiten:
            scores /= np.sqrt(self.explained_variance_.astype(dtype))
        return scores

    def inverse_transform(self, X):
        """Back from scores (n x n_components_) to the data space: ``X components_ + mean_`` (whitened
        scores are scaled back first). A dask array gives a lazy dask array."""
        check_is_fitted(self)
        if _dask.is_dask_array(X):
            dtype = self._dtype(X.dtype)
            return _dask.map_rows(X, self._inverse_array, self.components_.shape[1], dtype)
        _reject_sparse(X)
        return self._inverse_array(check_array(X, dtype=[np.float64, np.float32]))

    def _inverse_array(self, X):
        if X.shape[1] != self.n_components_:
            raise ValueError(
                f"X has {X.shape[1]} columns, but the model has {self.n_components_} components"
            )
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
        components = self.components_.astype(dtype)
        if self.whiten:
            components = np.sqrt(self.explained_variance_.astype(dtype))[:, None] * components
        return np.asarray(X, dtype=dtype) @ components + self.mean_.astype(dtype)

    def _check_dask_width(self, X):
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has shape {X.shape}, but PCA is expecting {self.n_features_in_} features as input"
            )
        if _dask.is_sparse_dask(X):
            raise TypeError(_SPARSE_MESSAGE)

    # ----------------------------------------------------------------------------------------------
    # The probabilistic PCA model (Tipping & Bishop 1999), which LAE-PCA's critical points share

    def get_covariance(self):
        """The model's covariance ``components_ᵀ diag(max(ev − σ², 0)) components_ + σ² I``."""
        check_is_fitted(self)
        components = self.components_.astype(np.float64)
        ev = self.explained_variance_.astype(np.float64)
        excess = np.maximum(ev - self.noise_variance_, 0.0)
        cov = (components.T * excess) @ components
        cov.flat[:: cov.shape[0] + 1] += self.noise_variance_
        return cov

    def get_precision(self):
        """The inverse of :meth:`get_covariance`, by the matrix inversion lemma (the components are
        orthonormal: ``(I − Uᵀ diag(e / (e + σ²)) U) / σ²``)."""
        check_is_fitted(self)
        sigma2 = self.noise_variance_
        if sigma2 == 0.0:
            return np.linalg.inv(self.get_covariance())
        components = self.components_.astype(np.float64)
        excess = np.maximum(self.explained_variance_.astype(np.float64) - sigma2, 0.0)
        shrink = excess / (excess + sigma2)
        precision = -(components.T * shrink) @ components
        precision.flat[:: precision.shape[0] + 1] += 1.0
        return precision / sigma2

    def score_samples(self, X):
        """The log-likelihood of each sample under the probabilistic PCA model."""
        X = self._check_input(X).astype(np.float64)
        centred = X - self.mean_.astype(np.float64)
        precision = self.get_precision()
        sign, logdet = np.linalg.slogdet(precision)
        if sign <= 0:
            logdet = -np.inf
        log_like = -0.5 * np.sum(centred * (centred @ precision), axis=1)
        log_like -= 0.5 * (X.shape[1] * np.log(2.0 * np.pi) - logdet)
        return log_like

    def score(self, X, y=None):
        """The mean log-likelihood of the samples under the probabilistic PCA model."""
        return float(np.mean(self.score_samples(X)))


def _reject_sparse(X):
    """A clear TypeError for scipy.sparse input where it is not taken."""
    if sp.issparse(X):
        raise TypeError(_SPARSE_MESSAGE)

