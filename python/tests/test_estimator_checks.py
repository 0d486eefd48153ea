"""scikit-learn's own estimator checks on laepca.PCA."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from laepca import PCA


@parametrize_with_checks([PCA(), PCA(n_components=2, whiten=True), PCA(n_components=0.9)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
