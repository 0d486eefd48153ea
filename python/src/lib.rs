//! `laepca._laepca`: the Python binding of the laepca library (the estimator itself is Python, in
//! `python/laepca/`). NumPy arrays are read in place (C or Fortran order, float32 or float64); the GIL
//! is released while the library works, on a worker thread that the calling thread watches for Ctrl-C.

use laepca::{
    Backend, CsrMatrix, Error, Fit, GramAccumulator, GramStats, LaePca, Layout, Method, Real,
    Solver,
};
use nalgebra::{DMatrix, DVector};
use numpy::{
    Element, IntoPyArray, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How often the waiting thread looks for a pending signal (Ctrl-C) while the library works.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// The library's error as the Python exception that fits it, with the library's message.
fn to_py_err(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::InvalidK { .. }
        | Error::EmptyData { .. }
        | Error::ShapeMismatch { .. }
        | Error::NonFinite { .. }
        | Error::InvalidParameter { .. }
        | Error::LambdaTooLarge { .. }
        | Error::RankDeficient { .. }
        | Error::InvalidSparse { .. }
        | Error::Unsupported { .. } => PyValueError::new_err(msg),
        Error::Cancelled => PyKeyboardInterrupt::new_err(msg),
        _ => PyRuntimeError::new_err(msg),
    }
}

/// Runs `job` on a worker thread with the GIL released. Every [`SIGNAL_POLL`] the calling thread takes
/// the GIL back to run Python's signal handlers; when one raises (KeyboardInterrupt on Ctrl-C) the
/// cancel flag is set, the worker stops at its next Gram block or stopping check, its result is
/// dropped and the handler's exception is returned.
fn run_cancellable<R, F>(py: Python<'_>, job: F) -> PyResult<R>
where
    R: Send,
    F: FnOnce(Arc<AtomicBool>) -> laepca::Result<R> + Send,
{
    let cancel = Arc::new(AtomicBool::new(false));
    let outcome: Result<laepca::Result<R>, PyErr> = py.detach(|| {
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel();
            let flag = cancel.clone();
            let worker = std::thread::Builder::new()
                .name("laepca-fit".into())
                .spawn_scoped(scope, move || {
                    // A send fails only when the receiver is gone, and it waits for this thread.
                    let _ = tx.send(job(flag));
                })
                .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
            let result = loop {
                match rx.recv_timeout(SIGNAL_POLL) {
                    Ok(result) => break Ok(result),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if let Err(signal) = Python::attach(|py| py.check_signals()) {
                            cancel.store(true, Ordering::Relaxed);
                            // The worker returns soon after the flag is set; its result is dropped.
                            let _ = rx.recv();
                            break Err(signal);
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        break Err(PyRuntimeError::new_err("the laepca worker thread panicked"))
                    }
                }
            };
            let _ = worker.join();
            result
        })
    });
    outcome?.map_err(to_py_err)
}

/// The fit's parameters, from the dict the estimator passes (every key present; None for a default).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct FitParams {
    k: usize,
    solver: String,
    backend: String,
    lambda_: Option<f64>,
    tol: Option<f64>,
    max_iter: usize,
    seed: u64,
    center: bool,
    adapter: Option<String>,
}

impl FitParams {
    /// The library's builder for these parameters.
    fn builder(self) -> PyResult<LaePca> {
        let solver: Solver = self.solver.parse().map_err(PyValueError::new_err)?;
        let backend: Backend = self.backend.parse().map_err(PyValueError::new_err)?;
        let mut p = LaePca::new(self.k)
            .solver(solver)
            .backend(backend)
            .max_iter(self.max_iter)
            .seed(self.seed)
            .center(self.center)
            .lambda(self.lambda_)
            .tol(self.tol);
        if let Some(a) = self.adapter {
            p = p.adapter(a);
        }
        Ok(p)
    }
}

/// A k x m (or n x k) nalgebra matrix as a row-major NumPy array.
fn matrix_to_py<'py, T: Real + Element>(
    py: Python<'py>,
    x: &DMatrix<T>,
) -> PyResult<Bound<'py, PyAny>> {
    let (rows, cols) = x.shape();
    let row_major: Vec<T> = x.transpose().as_slice().to_vec();
    Ok(row_major.into_pyarray(py).reshape([rows, cols])?.into_any())
}

fn vector_to_py<'py, T: Element + Copy>(py: Python<'py>, v: &DVector<T>) -> Bound<'py, PyAny> {
    v.as_slice().to_vec().into_pyarray(py).into_any()
}

/// The fit as a dict of NumPy arrays and plain values, named as the estimator's attributes.
fn fit_to_py<'py, T: Real + Element>(
    py: Python<'py>,
    fit: &Fit<T>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("components", matrix_to_py(py, &fit.components)?)?;
    d.set_item("singular_values", vector_to_py(py, &fit.singular_values))?;
    d.set_item(
        "explained_variance",
        vector_to_py(py, &fit.explained_variance),
    )?;
    d.set_item(
        "explained_variance_ratio",
        vector_to_py(py, &fit.explained_variance_ratio),
    )?;
    d.set_item("mean", vector_to_py(py, &fit.mean))?;
    d.set_item("n_samples", fit.n_samples)?;
    d.set_item("n_features", fit.n_features)?;
    // Auto's start is a Rayleigh–Ritz step of its own (a pass over C): with k = m it is the whole fit,
    // after 0 further iterations. Its n_iter counts the steps; the paper's solvers count iterations.
    let steps = if fit.solver == Solver::Auto {
        fit.passes
    } else {
        fit.iterations
    };
    d.set_item("n_iter", steps)?;
    d.set_item("n_passes", fit.passes)?;
    d.set_item("converged", fit.converged)?;
    d.set_item("stalled", fit.stalled)?;
    d.set_item("backend", fit.backend.name())?;
    let arithmetic = match fit.arithmetic {
        laepca::Arithmetic::F32 => "float32",
        laepca::Arithmetic::F64 => "float64",
    };
    d.set_item("arithmetic", arithmetic)?;
    d.set_item("method", fit.method.name())?;
    d.set_item("method_reason", fit.method_reason.as_str())?;
    d.set_item("adapter", fit.adapter.as_ref().map(|a| a.name.clone()))?;
    d.set_item("solver", fit.solver.name())?;
    d.set_item("lambda", fit.lambda)?;
    d.set_item("tol", fit.tol)?;
    let t = &fit.timings;
    let timings = PyDict::new(py);
    for (name, v) in [
        ("upload", t.upload),
        ("gram", t.gram),
        ("setup", t.setup),
        ("iterate", t.iterate),
        ("readback", t.readback),
        ("finish", t.finish),
        ("total", t.total),
    ] {
        timings.set_item(name, v.as_secs_f64())?;
    }
    d.set_item("timings", timings)?;
    Ok(d)
}

/// A 2-D array as a row-major slice and its (rows, cols, layout) for the library: a C-order array is
/// samples in rows; a Fortran-order one is, in memory, the row-major transpose (features in rows).
fn array_slice<'a, T: Element>(
    x: &'a PyReadonlyArray2<'_, T>,
) -> PyResult<(&'a [T], usize, usize, Layout)> {
    let (n, m) = (x.shape()[0], x.shape()[1]);
    let c_order = x.is_c_contiguous();
    let slice = x.as_slice().map_err(|_| {
        PyTypeError::new_err(
            "the array must be C- or Fortran-contiguous (use numpy.ascontiguousarray)",
        )
    })?;
    Ok(if c_order {
        (slice, n, m, Layout::SamplesInRows)
    } else {
        (slice, m, n, Layout::FeaturesInRows)
    })
}

fn fit_array<'py, T: Real + Element>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, T>,
    params: LaePca,
) -> PyResult<Bound<'py, PyDict>> {
    let (data, rows, cols, layout) = array_slice(&x)?;
    let params = params.layout(layout);
    let fit = run_cancellable(py, move |cancel| {
        params.cancel_flag(cancel).fit_slice(data, rows, cols)
    })?;
    fit_to_py(py, &fit)
}

/// Fits `x` (2-D, float32 or float64, samples in rows) and returns the result as a dict.
#[pyfunction]
fn fit<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    params: FitParams,
) -> PyResult<Bound<'py, PyDict>> {
    let params = params.builder()?;
    if let Ok(x) = x.extract::<PyReadonlyArray2<'py, f64>>() {
        fit_array(py, x, params)
    } else if let Ok(x) = x.extract::<PyReadonlyArray2<'py, f32>>() {
        fit_array(py, x, params)
    } else {
        Err(PyTypeError::new_err(NOT_A_FLOAT_ARRAY))
    }
}

/// A scipy CSR matrix's index array (int64, as the estimator passes it) as offsets or column indices.
fn indices_from_py<U: TryFrom<i64>>(a: &PyReadonlyArray1<'_, i64>, what: &str) -> PyResult<Vec<U>> {
    a.as_array()
        .iter()
        .map(|&v| {
            U::try_from(v).map_err(|_| {
                PyValueError::new_err(format!("invalid sparse matrix: {what} holds {v}"))
            })
        })
        .collect()
}

fn fit_csr_as<'py, T: Real + Element>(
    py: Python<'py>,
    (indptr, indices, data): (Vec<usize>, Vec<u32>, PyReadonlyArray1<'py, T>),
    (rows, cols): (usize, usize),
    params: LaePca,
) -> PyResult<Bound<'py, PyDict>> {
    let values = data.as_array().iter().copied().collect();
    let x = CsrMatrix::try_new(rows, cols, indptr, indices, values).map_err(to_py_err)?;
    let fit = run_cancellable(py, move |cancel| params.cancel_flag(cancel).fit_csr(&x))?;
    fit_to_py(py, &fit)
}

/// Fits a CSR matrix given by its arrays (`indptr` and `indices` as int64, `data` float32 or float64,
/// samples in rows) by the route `method` names (auto, gram, gram-t or operator), never densified.
#[pyfunction]
fn fit_csr<'py>(
    py: Python<'py>,
    indptr: PyReadonlyArray1<'py, i64>,
    indices: PyReadonlyArray1<'py, i64>,
    data: &Bound<'py, PyAny>,
    shape: (usize, usize),
    method: &str,
    params: FitParams,
) -> PyResult<Bound<'py, PyDict>> {
    let method: Method = method.parse().map_err(PyValueError::new_err)?;
    let params = params.builder()?.method(method);
    let indptr = indices_from_py::<usize>(&indptr, "indptr")?;
    let indices = indices_from_py::<u32>(&indices, "indices")?;
    if let Ok(d) = data.extract::<PyReadonlyArray1<'py, f64>>() {
        fit_csr_as(py, (indptr, indices, d), shape, params)
    } else if let Ok(d) = data.extract::<PyReadonlyArray1<'py, f32>>() {
        fit_csr_as(py, (indptr, indices, d), shape, params)
    } else {
        Err(PyTypeError::new_err(
            "expected the sparse matrix's data as float32 or float64",
        ))
    }
}

/// What a 2-D input of another type is told.
const NOT_A_FLOAT_ARRAY: &str = "expected a 2-D float32 or float64 NumPy array";

/// Statistics handed over from Python: `C` (m x m), the mean (m) and the sample count.
fn stats_from_py(
    c: &PyReadonlyArray2<'_, f64>,
    mean: &PyReadonlyArray1<'_, f64>,
    n_samples: usize,
) -> PyResult<GramStats> {
    let (m, m2) = (c.shape()[0], c.shape()[1]);
    let c = c.as_array();
    Ok(GramStats {
        // C is symmetric, so its row-major and column-major layouts are the same matrix; read by index
        // anyway so that any strides work.
        c: DMatrix::from_fn(m, m2, |i, j| c[[i, j]]),
        mean: DVector::from_iterator(mean.len(), mean.as_array().iter().copied()),
        n_samples,
    })
}

fn stats_to_py<'py>(py: Python<'py>, s: &GramStats) -> PyResult<Bound<'py, PyAny>> {
    let c = matrix_to_py(py, &s.c)?;
    let mean = vector_to_py(py, &s.mean);
    Ok((c, mean, s.n_samples).into_pyobject(py)?.into_any())
}

/// Fits precomputed statistics (from `gram_stats` and `merge_stats`); `dtype` ("float32" or
/// "float64") is the precision of the result and of the CPU loop.
#[pyfunction]
fn fit_gram<'py>(
    py: Python<'py>,
    c: PyReadonlyArray2<'py, f64>,
    mean: PyReadonlyArray1<'py, f64>,
    n_samples: usize,
    dtype: &str,
    params: FitParams,
) -> PyResult<Bound<'py, PyDict>> {
    let params = params.builder()?;
    let stats = stats_from_py(&c, &mean, n_samples)?;
    match dtype {
        "float32" => {
            let fit = run_cancellable(py, |cancel| {
                params.cancel_flag(cancel).fit_gram::<f32>(&stats)
            })?;
            fit_to_py(py, &fit)
        }
        "float64" => {
            let fit = run_cancellable(py, |cancel| {
                params.cancel_flag(cancel).fit_gram::<f64>(&stats)
            })?;
            fit_to_py(py, &fit)
        }
        other => Err(PyValueError::new_err(format!(
            "dtype must be 'float32' or 'float64', not '{other}'"
        ))),
    }
}

/// Rows pushed between two looks at the cancel flag in `gram_stats`.
const GRAM_PUSH_ROWS: usize = 1 << 15;

fn gram_array<T: Real + Element>(
    py: Python<'_>,
    x: PyReadonlyArray2<'_, T>,
    center: bool,
    gpu: bool,
    adapter: Option<String>,
) -> PyResult<GramStats> {
    if !x.is_c_contiguous() {
        return Err(PyTypeError::new_err(
            "gram_stats needs a C-contiguous array (use numpy.ascontiguousarray)",
        ));
    }
    let m = x.shape()[1];
    let data = x
        .as_slice()
        .map_err(|e| PyTypeError::new_err(e.to_string()))?;
    run_cancellable(py, move |cancel| {
        let mut acc = if gpu {
            GramAccumulator::new_gpu(m, center, adapter.as_deref())?
        } else {
            GramAccumulator::new(m, center)?
        };
        for chunk in data.chunks(GRAM_PUSH_ROWS * m.max(1)) {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            acc.push_rows(chunk)?;
        }
        acc.finish()
    })
}

/// The Gram statistics `(C, mean, n_samples)` of a block of rows (C-contiguous, float32 or float64), in
/// f64, on the CPU or (`gpu=True`) the GPU whose name contains `adapter`.
#[pyfunction]
#[pyo3(signature = (x, center, gpu=false, adapter=None))]
fn gram_stats<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    center: bool,
    gpu: bool,
    adapter: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let stats = if let Ok(x) = x.extract::<PyReadonlyArray2<'py, f64>>() {
        gram_array(py, x, center, gpu, adapter)?
    } else if let Ok(x) = x.extract::<PyReadonlyArray2<'py, f32>>() {
        gram_array(py, x, center, gpu, adapter)?
    } else {
        return Err(PyTypeError::new_err(NOT_A_FLOAT_ARRAY));
    };
    stats_to_py(py, &stats)
}

/// The exact combination of two blocks' statistics (`GramStats::merge`), as `(C, mean, n_samples)`.
#[pyfunction]
fn merge_stats<'py>(
    py: Python<'py>,
    a: (
        PyReadonlyArray2<'py, f64>,
        PyReadonlyArray1<'py, f64>,
        usize,
    ),
    b: (
        PyReadonlyArray2<'py, f64>,
        PyReadonlyArray1<'py, f64>,
        usize,
    ),
) -> PyResult<Bound<'py, PyAny>> {
    let a = stats_from_py(&a.0, &a.1, a.2)?;
    let b = stats_from_py(&b.0, &b.1, b.2)?;
    let merged = py.detach(|| a.merge(&b)).map_err(to_py_err)?;
    stats_to_py(py, &merged)
}

/// The GPU adapters wgpu finds, as dicts.
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let list = py.detach(laepca::devices);
    list.iter()
        .map(|info| {
            let d = PyDict::new(py);
            d.set_item("name", &info.name)?;
            d.set_item("backend", &info.backend)?;
            d.set_item("device_type", &info.device_type)?;
            d.set_item("max_buffer_size", info.max_buffer_size)?;
            d.set_item(
                "max_storage_buffer_binding_size",
                info.max_storage_buffer_binding_size,
            )?;
            Ok(d)
        })
        .collect()
}

#[pymodule]
fn _laepca(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add_function(wrap_pyfunction!(fit_gram, m)?)?;
    m.add_function(wrap_pyfunction!(fit_csr, m)?)?;
    m.add_function(wrap_pyfunction!(gram_stats, m)?)?;
    m.add_function(wrap_pyfunction!(merge_stats, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add(
        "SOLVERS",
        Solver::ALL.iter().map(|s| s.name()).collect::<Vec<_>>(),
    )?;
    Ok(())
}
