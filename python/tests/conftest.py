import numpy as np
import pytest
from scipy.linalg import subspace_angles


def largest_angle(a, b):
    """The largest principal angle (radians) between the row spaces of a and b (k x m each)."""
    return float(np.max(subspace_angles(np.asarray(a, np.float64).T, np.asarray(b, np.float64).T)))


def relative(a, b):
    """max |a − b| / max |b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
