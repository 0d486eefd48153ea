"""laepca.PCA's own behaviour: parameters, dtypes, errors, devices, the GIL and Ctrl-C."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

import laepca
from laepca import PCA


def data(rng, n=200, m=12, dtype=np.float64):
    scales = 0.8 ** np.arange(m)
    return (rng.normal(size=(n, m)) * scales + 5.0).astype(dtype)


def test_parameters_are_sklearns_and_init_does_no_work():
    params = PCA().get_params()
    expected = {"n_components", "whiten", "solver", "backend", "precision", "lambda_", "tol",
                "max_iter", "random_state", "center"}
    assert set(params) == expected
    # No validation in __init__: a bad value is kept as given and only fit rejects it.
    bad = PCA(backend="nowhere")
    assert bad.get_params()["backend"] == "nowhere"
    assert clone(PCA(3, solver="tied")).set_params(tol=1e-9).get_params()["tol"] == 1e-9


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(rng, dtype):
    X = data(rng, dtype=dtype)
    pca = PCA(3, random_state=0).fit(X)
    for attr in ("components_", "explained_variance_", "explained_variance_ratio_",
                 "singular_values_", "mean_"):
        assert getattr(pca, attr).dtype == dtype, attr
    assert pca.transform(X).dtype == dtype
    assert pca.inverse_transform(pca.transform(X)).dtype == dtype
    wide = PCA(3, precision="float64", random_state=0).fit(X)
    assert wide.components_.dtype == np.float64


def test_fitted_attributes(rng):
    import pandas as pd

    X = pd.DataFrame(data(rng), columns=[f"gene{i}" for i in range(12)])
    pca = PCA(4, random_state=0).fit(X)
    assert pca.n_components_ == 4 and pca.n_features_in_ == 12 and pca.n_samples_ == 200
    assert list(pca.feature_names_in_) == list(X.columns)
    assert list(pca.get_feature_names_out()) == ["pca0", "pca1", "pca2", "pca3"]
    assert pca.converged_ and not pca.stalled_ and pca.n_iter_ > 0
    assert pca.backend_ == "cpu" and pca.adapter_ is None
    assert set(pca.timings_) == {"upload", "gram", "setup", "iterate", "readback", "finish", "total"}
    assert pca.timings_["total"] >= pca.timings_["iterate"] >= 0
    assert pca.noise_variance_ > 0
    # The model's precision is the inverse of its covariance.
    assert np.allclose(pca.get_precision() @ pca.get_covariance(), np.eye(12), atol=1e-10)


def test_fortran_order_and_views_give_the_same_fit(rng):
    X = data(rng)
    a = PCA(3, random_state=0).fit(X)
    b = PCA(3, random_state=0).fit(np.asfortranarray(X))
    c = PCA(3, random_state=0).fit(np.hstack([X, X])[:, :12])  # neither C nor F contiguous
    assert np.allclose(a.components_, b.components_, atol=1e-12)
    assert np.array_equal(a.components_, c.components_)


def test_same_seed_same_bits(rng):
    X = data(rng)
    a = PCA(3, random_state=7).fit(X).components_
    b = PCA(3, random_state=7).fit(X).components_
    assert np.array_equal(a, b)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sparse_input_is_fitted_without_densifying_as_the_dense_data(rng, fmt, dtype):
    X = sp.random(400, 30, density=0.2, format=fmt, random_state=0, dtype=dtype)
    X.data = np.ceil(X.data * 5)  # counts
    dense = X.toarray()
    fitted = PCA(4, random_state=0).fit(X)
    reference = PCA(4, random_state=0, precision="float64").fit(dense.astype(np.float64))
    assert fitted.components_.dtype == dtype
    tol = 1e-9 if dtype == np.float64 else 2e-4
    # The same directions (signs fixed by the same convention), variances and means.
    np.testing.assert_allclose(fitted.components_, reference.components_, atol=tol * 10)
    np.testing.assert_allclose(fitted.explained_variance_ratio_, reference.explained_variance_ratio_, rtol=tol)
    np.testing.assert_allclose(fitted.mean_, dense.mean(axis=0), rtol=1e-6, atol=1e-6)
    # Scores of sparse input without densifying, equal to the dense scores.
    np.testing.assert_allclose(fitted.transform(X), fitted.transform(dense), rtol=1e-5, atol=1e-4)
    # What takes no sparse input says so.
    with pytest.raises(TypeError, match="sparse"):
        fitted.score_samples(X)
    # A variance fraction: the same number of components as for the dense data.
    assert PCA(0.5).fit(X).n_components_ == PCA(0.5).fit(dense).n_components_


def test_errors_carry_the_librarys_messages(rng):
    X = data(rng)
    with pytest.raises(ValueError, match="collapses component"):
        PCA(3, lambda_=1e12).fit(X)
    with pytest.raises(ValueError, match="unknown solver 'newton'"):
        PCA(3, solver="newton").fit(X)
    with pytest.raises(ValueError, match="invalid parameter tol"):
        PCA(3, tol=-1.0).fit(X)
    with pytest.raises(ValueError, match="rank 1 after centring"):
        PCA(2).fit(np.outer(np.arange(20.0), np.ones(5)))
    with pytest.raises(ValueError, match="n_components=13"):
        PCA(13).fit(X)
    with pytest.raises(ValueError, match="backend must be one of"):
        PCA(3, backend="tpu").fit(X)
    with pytest.raises(TypeError, match="n_components"):
        PCA("three").fit(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("n_components", [3, 0.5])
def test_non_finite_samples_are_named_by_the_library(rng, bad, n_components):
    # Dense samples are not scanned by scikit-learn's check first: the library finds the value as it
    # copies the samples, and its message names where.
    X = data(rng)
    X[150, 7] = bad
    with pytest.raises(ValueError, match=r"non-finite value -?(NaN|inf) in the data at row 150, column 7"):
        PCA(n_components, backend="cpu").fit(X)
    # Sparse input keeps scikit-learn's check.
    with pytest.raises(ValueError, match="NaN|infinity"):
        PCA(n_components, backend="cpu").fit(sp.csr_matrix(X))


def test_a_failed_fit_leaves_the_previous_one(rng):
    X = data(rng)
    pca = PCA(3, random_state=0).fit(X)
    kept = pca.components_
    with pytest.raises(ValueError, match="collapses component"):
        pca.set_params(lambda_=1e12).fit(X[:, :8])
    assert pca.n_features_in_ == 12 and pca.components_ is kept
    assert pca.transform(X).shape == (200, 3)


def test_devices_lists_adapters():
    devices = laepca.devices()
    assert isinstance(devices, list)
    for d in devices:
        assert {"name", "backend", "device_type", "max_buffer_size"} <= set(d)


def test_gpu_errors_are_runtime_errors(monkeypatch):
    if not laepca.devices():
        with pytest.raises(RuntimeError, match="no GPU adapter"):
            PCA(1, backend="gpu").fit(np.random.default_rng(0).normal(size=(3, 4)))
        return
    # An adapter name that no adapter has (WGPU_ADAPTER_NAME is read when the fit opens a device).
    # (C too large for the device, this test's case before, is now split over several buffers; an m
    # beyond what the buffers allow would need terabytes of host memory for C first.)
    monkeypatch.setenv("WGPU_ADAPTER_NAME", "no-such-adapter")
    with pytest.raises(RuntimeError, match="no adapter named like 'no-such-adapter'"):
        PCA(1, backend="gpu").fit(np.random.default_rng(0).normal(size=(10, 4)))


def test_gpu_backend_agrees_with_the_cpu(rng):
    if not laepca.devices():
        message = "no GPU adapter (install mesa-vulkan-drivers for lavapipe)"
        if os.environ.get("LAEPCA_REQUIRE_GPU"):
            pytest.fail(message + " and LAEPCA_REQUIRE_GPU is set")
        pytest.skip(message)
    X = data(rng, n=300, m=16)
    gpu = PCA(3, backend="gpu", random_state=0).fit(X)
    cpu = PCA(3, backend="cpu", random_state=0).fit(X)
    assert gpu.backend_ == "gpu" and gpu.adapter_
    # float64 data: the GPU's loop in float64 where the adapter has f64 shaders (lavapipe has), else
    # float32; float32 data always in float32; the CPU in the data's dtype.
    assert gpu.arithmetic_ in ("float32", "float64") and cpu.arithmetic_ == "float64"
    assert PCA(3, backend="gpu", random_state=0).fit(X.astype(np.float32)).arithmetic_ == "float32"
    # The GPU in float32 (directions to ~1e-5 for gaps of 25 %) or float64.
    from conftest import largest_angle

    assert largest_angle(gpu.components_, cpu.components_) < 1e-4


# A fit that runs for minutes: the untied gradient solver on isotropic noise (tiny eigengaps).
LONG_FIT = """
import numpy as np, laepca
X = np.random.default_rng(0).normal(size=(1000, 200))
long_fit = laepca.PCA(50, solver="untied", tol=1e-300, max_iter=10**9, random_state=0)
"""


def test_the_gil_is_released_during_a_fit():
    namespace = {}
    exec(LONG_FIT, namespace)
    pca = namespace["long_fit"].set_params(max_iter=3000)
    worker = threading.Thread(target=pca.fit, args=(namespace["X"],))
    counted = 0
    worker.start()
    start = time.perf_counter()
    while worker.is_alive():
        counted += 1
        time.sleep(0.001)
    elapsed = time.perf_counter() - start
    worker.join()
    # With the GIL held, this thread could not run until the fit ended.
    assert elapsed > 0.5, "the fit is long enough to tell"
    assert counted > 100, f"the main thread ran {counted} times in {elapsed:.2f} s"
    assert pca.n_iter_ == 3000


def test_ctrl_c_interrupts_a_fit_within_a_second():
    script = LONG_FIT + textwrap.dedent("""
        import sys
        before = laepca.PCA(2, random_state=0).fit(X[:50, :5])
        kept = before.components_.copy()
        print("ready", flush=True)
        try:
            before.set_params(n_components=50, solver="untied", tol=1e-300, max_iter=10**9).fit(X)
        except KeyboardInterrupt:
            unchanged = (before.components_.shape == kept.shape and (before.components_ == kept).all()
                         and before.n_features_in_ == 5)
            print("interrupted", unchanged, flush=True)
            sys.exit(0)
        print("finished", flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(1.5)  # well inside the solver loop
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline().strip()
        waited = time.monotonic() - sent
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
    assert line == "interrupted True", line
    assert waited < 1.0, f"KeyboardInterrupt after {waited:.2f} s"
