"""Agreement with sklearn.decomposition.PCA (full SVD, float64) on the data sets scikit-learn ships."""

import numpy as np
import pytest
from conftest import largest_angle, relative
from sklearn import datasets
from sklearn.decomposition import PCA as SklearnPCA

from laepca import PCA

# (loader, components): k below the smallest dimension, with eigengaps of at least 9 % (digits' smallest).
CASES = [("iris", 3), ("wine", 5), ("digits", 10), ("breast_cancer", 10)]


@pytest.mark.parametrize("name,k", CASES)
@pytest.mark.parametrize("whiten", [False, True])
def test_agrees_with_sklearn_full_svd(name, k, whiten):
    X = getattr(datasets, f"load_{name}")().data.astype(np.float64)
    ref = SklearnPCA(k, svd_solver="full", whiten=whiten).fit(X)
    ours = PCA(k, whiten=whiten, random_state=0).fit(X)
    assert ours.converged_ and ours.n_components_ == k
    assert ours.components_.dtype == np.float64
    # The auto solver stops when the span moves by a sine below 1e-8 per iteration: the subspace and
    # each direction (all gaps >= 9 %) are accurate to ~1e-8, and the Rayleigh-quotient variances to
    # its square, i.e. to rounding.
    assert largest_angle(ours.components_, ref.components_) < 1e-7
    for mine, theirs in zip(ours.components_, ref.components_):
        assert mine @ theirs > 1 - 1e-12, "same direction and same sign (svd_flip's convention)"
    assert relative(ours.explained_variance_, ref.explained_variance_) < 1e-10
    assert relative(ours.explained_variance_ratio_, ref.explained_variance_ratio_) < 1e-10
    assert relative(ours.singular_values_, ref.singular_values_) < 1e-10
    assert relative(ours.mean_, ref.mean_) < 1e-13
    assert abs(ours.noise_variance_ / ref.noise_variance_ - 1) < 1e-6
    scores = ours.transform(X)
    assert relative(scores, ref.transform(X)) < 1e-6
    assert relative(ours.inverse_transform(scores), ref.inverse_transform(ref.transform(X))) < 1e-6
    if not whiten:
        # The probabilistic PCA model (scikit-learn scales W once more when whitening; see PCA's notes).
        assert relative(ours.get_covariance(), ref.get_covariance()) < 1e-6
        assert relative(ours.get_precision(), ref.get_precision()) < 1e-6
        assert abs(ours.score(X) / ref.score(X) - 1) < 1e-8


@pytest.mark.parametrize("name,fraction", [("wine", 0.95), ("digits", 0.8), ("breast_cancer", 0.999)])
def test_variance_fraction_picks_sklearns_count(name, fraction):
    X = getattr(datasets, f"load_{name}")().data.astype(np.float64)
    ref = SklearnPCA(fraction, svd_solver="full").fit(X)
    ours = PCA(fraction, random_state=0).fit(X)
    assert ours.n_components_ == ref.n_components_
    assert relative(ours.explained_variance_ratio_, ref.explained_variance_ratio_) < 1e-8
