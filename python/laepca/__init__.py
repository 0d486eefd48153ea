"""laepca: PCA by L2-regularised linear autoencoders (LAE-PCA, Kunin et al. 2019) on the GPU and the CPU.

>>> from laepca import PCA
>>> scores = PCA(16).fit_transform(X)          # doctest: +SKIP

``laepca.PCA`` is a scikit-learn estimator (it takes NumPy and Dask arrays), ``laepca.scanpy.pca`` writes
where ``scanpy.pp.pca`` writes, and ``laepca.devices()`` lists the GPU adapters wgpu finds.
"""

from . import _laepca
from ._pca import PCA

__all__ = ["PCA", "devices", "SOLVERS"]
__version__ = "0.1.0"

#: The solvers ``PCA(solver=...)`` takes: the default, then the paper's six variants.
SOLVERS = tuple(_laepca.SOLVERS)


def devices():
    """The GPU adapters wgpu finds, as dicts (name, backend, device_type, buffer limits).

    A ``device_type`` of ``"cpu"`` is a software adapter (Mesa's lavapipe, WARP): ``backend="auto"``
    skips it.
    """
    return _laepca.devices()
