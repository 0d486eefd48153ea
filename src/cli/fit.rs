//! `laepca fit`: read (streaming .npy and IDX row chunks into the Gram accumulation; Matrix Market
//! coordinate files kept sparse), fit, write.

use super::output::{
    check_destination, guard_inputs, AdapterJson, DataJson, Outputs, PhasesJson, RunJson,
    SpectrumJson, Summary, TimingsMs,
};
use super::plot::{convergence_svg, scree_svg};
use super::progress::Bar;
use super::{print_out, Context, Failure, FitArgs};
use laepca::io::{Coordinates, Format, H5adFile, IoError, NpyWriter, Precision, Reader};
use laepca::{
    Backend, CheckedParams, CsrMatrix, Error, Fit, GramAccumulator, LaePca, Layout, Method, Real,
};
use nalgebra::{DMatrix, DVector};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every file `fit` may write into its directory (none of them may be the input).
const OUTPUT_NAMES: [&str; 9] = [
    "components.npy",
    "singular_values.npy",
    "explained_variance.npy",
    "explained_variance_ratio.npy",
    "mean.npy",
    "scores.npy",
    "convergence.svg",
    "scree.svg",
    "summary.json",
];

/// Runs `laepca fit`: checks the parameters against the file's shape (from its header), fits, writes
/// the results, prints the report.
pub fn run(args: &FitArgs) -> Result<ExitCode, Failure> {
    let start = Instant::now();
    let h5ad = super::h5ad_options(&args.input, &args.layer, &args.var_mask)?;
    let reader = match &h5ad {
        Some(options) => {
            if args.features_in_rows {
                return Err(Failure(format!(
                    "{}: an .h5ad file holds observations in rows: --features-in-rows does not apply",
                    args.input.display()
                )));
            }
            let file = H5adFile::open(&args.input, options)?;
            if file.is_sparse() {
                return run_sparse(args, start, SparseFile::H5ad(Box::new(file)));
            }
            Reader::from_h5ad(file)
        }
        None if laepca::io::is_sparse(&args.input)? => {
            return run_sparse(args, start, SparseFile::Mtx)
        }
        None => Reader::open(&args.input)?,
    };
    let (n, m) = samples_features(args, &reader);
    // The library's own check, before a big file is read.
    let model = model(args);
    let checked = model.check(n, m).map_err(|e| check_error(e, &args.input))?;
    // The library's route for dense data of this shape (an unsupported --method fails here).
    let (method, _) = model
        .dense_method(n, m)
        .map_err(|e| check_error(e, &args.input))?;
    check_destination(&args.out, &OUTPUT_NAMES)?;
    for file in OUTPUT_NAMES {
        guard_inputs(&args.out.join(file), &[&args.input])?;
    }
    let bar = Bar::new();
    let model = model.on_progress(bar.hook());
    let run = (start, method);
    let result = match reader.precision() {
        Precision::F32 => fit_as::<f32>(args, &model, &checked, reader, run, &bar),
        Precision::F64 => fit_as::<f64>(args, &model, &checked, reader, run, &bar),
    };
    bar.clear();
    let text = result?;
    print_out(&text);
    Ok(ExitCode::SUCCESS)
}

/// A sparse input file.
enum SparseFile {
    /// A Matrix Market coordinate file (not read yet).
    Mtx,
    /// A CSR or CSC matrix of an `.h5ad` file (opened: shape, type and mask read).
    H5ad(Box<H5adFile>),
}

/// A sparse input with its shape known, its values not yet in the fit's precision.
enum SparseEntries {
    /// The coordinate file's entries.
    Mtx(Coordinates),
    /// The `.h5ad` matrix, read as CSR in the fit's precision.
    H5ad(Box<H5adFile>),
}

impl SparseEntries {
    fn shape(&self) -> (usize, usize) {
        match self {
            SparseEntries::Mtx(c) => (c.rows, c.cols),
            SparseEntries::H5ad(f) => (f.rows(), f.cols()),
        }
    }
    fn precision(&self) -> Precision {
        match self {
            SparseEntries::Mtx(c) => c.precision(),
            SparseEntries::H5ad(f) => f.precision(),
        }
    }
    /// The CSR matrix in `T`, and what the summary says of the file's storage.
    fn into_csr<T: Real>(
        self,
        name: &str,
    ) -> Result<(CsrMatrix<T>, &'static str, String), Failure> {
        Ok(match self {
            SparseEntries::Mtx(coords) => {
                let in_file = coords.entries.len();
                let x = coords.into_csr::<T>().context(name)?;
                let dtype = format!("sparse, {} stored entries ({in_file} in the file)", x.nnz());
                (x, "mtx", dtype)
            }
            SparseEntries::H5ad(file) => {
                let x = file.read_csr::<T>()?;
                (x, "h5ad", file.dtype().to_string())
            }
        })
    }
}

/// `laepca fit` of a sparse file (a Matrix Market coordinate file, or an `.h5ad` file's CSR or CSC
/// matrix): read whole but kept sparse, then fitted by the library's route choice (or `--method`).
fn run_sparse(args: &FitArgs, start: Instant, file: SparseFile) -> Result<ExitCode, Failure> {
    // The parameters and the destination are checked against the shape (the file's first lines, or
    // the .h5ad attributes) before the entries are read.
    let (n, m) = match &file {
        SparseFile::Mtx => {
            let (rows, cols, _) = laepca::io::coordinate_shape(&args.input)?;
            if args.features_in_rows {
                (cols, rows)
            } else {
                (rows, cols)
            }
        }
        SparseFile::H5ad(f) => (f.rows(), f.cols()),
    };
    let model = model(args);
    let checked = model.check(n, m).map_err(|e| check_error(e, &args.input))?;
    check_destination(&args.out, &OUTPUT_NAMES)?;
    for file in OUTPUT_NAMES {
        guard_inputs(&args.out.join(file), &[&args.input])?;
    }
    let bar = Bar::new();
    bar.message("load", "reading the sparse entries");
    let t_load = Instant::now();
    let entries = match file {
        SparseFile::Mtx => {
            let mut coords = laepca::io::read_coordinates(&args.input)?;
            if args.features_in_rows {
                std::mem::swap(&mut coords.rows, &mut coords.cols);
                for e in &mut coords.entries {
                    *e = (e.1, e.0, e.2);
                }
            }
            SparseEntries::Mtx(coords)
        }
        SparseFile::H5ad(file) => SparseEntries::H5ad(file),
    };
    let load = t_load.elapsed();
    if entries.shape() != (n, m) {
        return Err(Failure(format!(
            "{}: the file changed while it was read ({} x {} by its first lines, {} x {} after)",
            args.input.display(),
            n,
            m,
            entries.shape().0,
            entries.shape().1
        )));
    }
    let model = model.on_progress(bar.hook());
    let result = match entries.precision() {
        Precision::F32 => fit_sparse_as::<f32>(args, &model, &checked, entries, load, start, &bar),
        Precision::F64 => fit_sparse_as::<f64>(args, &model, &checked, entries, load, start, &bar),
    };
    bar.clear();
    let text = result?;
    print_out(&text);
    Ok(ExitCode::SUCCESS)
}

/// Builds the CSR matrix in `T`, fits it, writes the results, and returns what to print.
fn fit_sparse_as<T: Real>(
    args: &FitArgs,
    model: &LaePca,
    checked: &CheckedParams,
    entries: SparseEntries,
    load: Duration,
    start: Instant,
    bar: &Bar,
) -> Result<String, Failure> {
    let name = args.input.display().to_string();
    let t = Instant::now();
    let (x, format, dtype) = entries.into_csr::<T>(&name)?;
    let load = load + t.elapsed();
    let model = model
        .clone()
        .resolve_backend()
        .context("cannot use the GPU (--backend gpu)")?;
    let fit = model.fit_csr(&x).context(&name)?;
    let data = DataJson {
        input: name,
        format,
        dtype,
        n_samples: checked.n_samples,
        n_features: checked.n_features,
        k: checked.k,
        layout: layout_name(args),
        center: !args.no_center,
        precision: if std::mem::size_of::<T>() == 4 {
            Precision::F32.name()
        } else {
            Precision::F64.name()
        },
    };
    let gram = fit.timings.gram;
    let file_fit = FileFit {
        fit,
        load,
        gram,
        samples: Samples::Sparse(&x),
    };
    write_and_report(args, &model, checked, file_fit, data, start, bar)
}

/// (samples, features) of the file as the layout reads it.
fn samples_features(args: &FitArgs, reader: &Reader) -> (usize, usize) {
    if args.features_in_rows {
        (reader.cols(), reader.rows())
    } else {
        (reader.rows(), reader.cols())
    }
}

/// A failed [`LaePca::check`]: a parameter named by its flag, a shape problem by the file.
fn check_error(e: Error, input: &Path) -> Failure {
    match e {
        Error::InvalidParameter {
            name,
            value,
            reason,
        } => {
            // The library names a parameter by its setter; the flags that set them:
            let flag = match name {
                "lambda" => "--lambda",
                "alpha" => "--alpha",
                "tol" => "--tol",
                "max_iter" => "--max-iter",
                other => other,
            };
            let e = Error::InvalidParameter {
                name: flag,
                value,
                reason,
            };
            Failure(e.to_string())
        }
        e => Failure(format!("{}: {e}", input.display())),
    }
}

/// The library's builder for the flags.
fn model(args: &FitArgs) -> LaePca {
    let mut model = LaePca::new(args.k)
        .solver(args.solver)
        .seed(args.seed)
        .backend(args.backend)
        .gpu_precision(args.precision)
        .center(!args.no_center)
        .max_iter(args.max_iter)
        .lambda(args.lambda)
        .alpha(args.alpha)
        .tol(args.tol)
        .method(args.method);
    if let Some(a) = &args.adapter {
        model = model.adapter(a.clone());
    }
    model
}

/// A library error about the data, with the file (and for text files the line) named.
fn data_error(e: Error, reader: &Reader) -> Failure {
    let name = reader.path().display();
    match e {
        Error::NonFinite { row, col, value } => {
            let line = reader
                .source_line(row)
                .map(|l| format!("; line {l} of the file"))
                .unwrap_or_default();
            Failure(format!(
                "{name}: non-finite value {value} at row {row}, column {col} (counted from 0{line}): \
                 remove or impute it"
            ))
        }
        e => Failure(format!("{name}: {e}")),
    }
}

enum StreamError {
    Io(IoError),
    Data(Error),
}

/// Streams the file's rows into the Gram accumulation: a reader thread decodes the next chunk while
/// this one is pushed. Returns the accumulation (not yet finished), the time spent reading and the
/// time spent pushing the rows.
fn accumulate<T: Real>(
    model: &LaePca,
    reader: &mut Reader,
    bar: &Bar,
) -> Result<(GramAccumulator, Duration, Duration), Failure> {
    // The builder's backend is decided: the accumulation runs on the device the fit will use.
    let mut acc = model
        .gram_accumulator::<T>(reader.cols(), Some(reader.rows()))
        .map_err(|e| match e {
            Error::TooLarge { .. } => data_error(e, reader),
            e => Failure(format!("cannot use the GPU (--backend gpu): {e}")),
        })?;
    bar.gram(Some(reader.rows() as u64));
    let chunk = reader.chunk_rows();
    let mut gram = Duration::ZERO;
    let mut failure = None;
    let (tx, rx) = mpsc::sync_channel::<Result<Vec<T>, IoError>>(1);
    let (back_tx, back_rx) = mpsc::channel::<Vec<T>>();
    let load = std::thread::scope(|s| {
        let rdr = &mut *reader;
        let producer = std::thread::Builder::new()
            .name("reader".into())
            .spawn_scoped(s, move || {
                let mut load = Duration::ZERO;
                loop {
                    let mut buf = back_rx.try_recv().unwrap_or_default();
                    let t = Instant::now();
                    let got = rdr.read_rows(&mut buf, chunk);
                    load += t.elapsed();
                    match got {
                        Ok(0) => break,
                        Ok(_) => {
                            if tx.send(Ok(buf)).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            break;
                        }
                    }
                }
                load
            });
        let producer = producer?;
        // `rx` is consumed here, so an early break lets the reader thread's send fail and end.
        for msg in rx {
            match msg {
                Ok(buf) => {
                    let t = Instant::now();
                    let pushed = acc.push_rows(&buf);
                    gram += t.elapsed();
                    if let Err(e) = pushed {
                        failure = Some(StreamError::Data(e));
                        break;
                    }
                    bar.samples(acc.n_samples() as u64);
                    let _ = back_tx.send(buf);
                }
                Err(e) => {
                    failure = Some(StreamError::Io(e));
                    break;
                }
            }
        }
        Ok(producer.join())
    });
    let load = load
        .map_err(|e: std::io::Error| Failure(format!("cannot start the reader thread: {e}")))?
        .map_err(|_| Failure("internal error: the reader thread failed".to_string()))?;
    match failure {
        Some(StreamError::Io(e)) => return Err(e.into()),
        Some(StreamError::Data(e)) => return Err(data_error(e, reader)),
        None => {}
    }
    Ok((acc, load, gram))
}

fn to_f32<T: Real>(v: &DVector<T>) -> Vec<f32> {
    v.iter().map(|x| x.as_f64() as f32).collect()
}

fn to_f64<T: Real>(v: &DVector<T>) -> Vec<f64> {
    v.iter().map(|x| x.as_f64()).collect()
}

/// A matrix's rows as row-major f32.
fn rows_f32<T: Real>(x: &DMatrix<T>) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for i in 0..x.nrows() {
        out.extend(x.row(i).iter().map(|v| v.as_f64() as f32));
    }
    out
}

/// A fit of the file with the times spent outside the library.
struct FileFit<'a, T: Real> {
    fit: Fit<T>,
    /// Reading and decoding the file.
    load: Duration,
    /// Accumulating C (the library's own time when it read the whole matrix).
    gram: Duration,
    /// Where the scores' samples come from.
    samples: Samples<'a, T>,
}

/// The samples for the scores.
enum Samples<'a, T: Real> {
    /// Kept in memory (the file was read whole and the scores are wanted).
    Dense(DMatrix<T>),
    /// The sparse matrix that was fitted.
    Sparse(&'a CsrMatrix<T>),
    /// A second streamed pass over the file.
    Stream,
}

/// Fits, writes the results, and returns what to print.
fn fit_as<T: Real>(
    args: &FitArgs,
    model: &LaePca,
    checked: &CheckedParams,
    mut reader: Reader,
    (start, method): (Instant, Method),
    bar: &Bar,
) -> Result<String, Failure> {
    // One backend decision (the library's) for every phase: the accumulation, the loop, the summary.
    let model = model
        .clone()
        .resolve_backend()
        .context("cannot use the GPU (--backend gpu)")?;
    // The transposed Gram route needs whole features: a .npy file is read by blocks of features
    // (twice), any other file whole.
    let transposed = method == Method::GramT;
    let by_features = transposed && !args.features_in_rows && reader.format() == Format::Npy;
    let file_fit = if by_features {
        fit_by_features::<T>(&model, &reader, bar)?
    } else if args.features_in_rows || transposed {
        fit_whole::<T>(args, &model, &mut reader, bar)?
    } else {
        fit_streamed::<T>(&model, &mut reader, bar)?
    };
    let data = data_json(args, &reader, checked);
    write_and_report(args, &model, checked, file_fit, data, start, bar)
}

/// Writes the results of a fit (and the scores, the plots), then the summary; returns what to print.
fn write_and_report<T: Real>(
    args: &FitArgs,
    model: &LaePca,
    checked: &CheckedParams,
    file_fit: FileFit<'_, T>,
    data: DataJson,
    start: Instant,
    bar: &Bar,
) -> Result<String, Failure> {
    let fit = &file_fit.fit;
    bar.message("write", "writing the results");
    let t_write = Instant::now();
    let mut out = Outputs::new(&args.out, &OUTPUT_NAMES)?;
    write_arrays(&mut out, fit)?;
    if args.scores {
        bar.message(
            "scores",
            "projecting the data (a second pass over the file)",
        );
        write_scores(&mut out, fit, &file_fit.samples, args)?;
    }
    if args.plot {
        write_plots(&mut out, fit, args)?;
    }
    let mut files = out.names();
    files.push("summary.json".to_string());
    // The operator route forms no C: its set-up (the means and the diagonal of C) ran on the CPU.
    let gram_backend = match fit.method {
        Method::Operator => Backend::Cpu,
        _ => model
            .gram_backend::<T>()
            .unwrap_or(model.requested_backend()),
    };
    let summary = Summary {
        laepca_version: env!("CARGO_PKG_VERSION"),
        data,
        run: run_json(args, checked, fit, gram_backend),
        spectrum: SpectrumJson {
            singular_values: to_f64(&fit.singular_values),
            explained_variance: to_f64(&fit.explained_variance),
            explained_variance_ratio: to_f64(&fit.explained_variance_ratio),
        },
        timings_ms: TimingsMs::of(
            &fit.timings,
            file_fit.load,
            file_fit.gram,
            t_write.elapsed(),
            start.elapsed(),
        ),
        files,
    };
    let json =
        serde_json::to_string_pretty(&summary).context("cannot serialise the summary")? + "\n";
    out.bytes("summary.json", json.as_bytes())?;
    out.commit()?;
    if !fit.converged && !fit.stalled {
        log::warn!(
            "the {} iteration did not reach tol = {:e} in {} iterations (last stopping quantity {:e}); \
             raise --max-iter or --tol",
            fit.solver.name(),
            fit.tol,
            fit.iterations,
            summary.run.final_stopping_quantity.unwrap_or(f64::NAN)
        );
    }
    Ok(if args.json {
        json
    } else {
        report(&summary, args)
    })
}

/// Features in rows (the samples are the file's columns), or the transposed Gram route (it needs whole
/// features): the file is read whole and fitted as a matrix.
fn fit_whole<T: Real>(
    args: &FitArgs,
    model: &LaePca,
    reader: &mut Reader,
    bar: &Bar,
) -> Result<FileFit<'static, T>, Failure> {
    bar.message("load", "reading the whole file");
    let t = Instant::now();
    let mat = reader.read_all::<T>()?;
    let load = t.elapsed();
    let layout = if args.features_in_rows {
        Layout::FeaturesInRows
    } else {
        Layout::SamplesInRows
    };
    let fit = model
        .clone()
        .layout(layout)
        .fit_slice(&mat.data, mat.rows, mat.cols)
        .map_err(|e| data_error(e, reader))?;
    let gram = fit.timings.gram;
    let samples = match (args.scores, layout) {
        (false, _) => Samples::Stream,
        (true, Layout::FeaturesInRows) => {
            Samples::Dense(DMatrix::from_row_slice(mat.rows, mat.cols, &mat.data).transpose())
        }
        // Samples in rows stream well: a second pass, rather than a second copy of the matrix.
        (true, _) => Samples::Stream,
    };
    Ok(FileFit {
        fit,
        load,
        gram,
        samples,
    })
}

/// Wide data in a .npy file on the transposed route: read by blocks of features, never whole (memory:
/// K, one block, the directions).
fn fit_by_features<T: Real>(
    model: &LaePca,
    reader: &Reader,
    bar: &Bar,
) -> Result<FileFit<'static, T>, Failure> {
    bar.message("gram", "reading blocks of features");
    let mut blocks = laepca::io::NpyFeatures::open(reader.path())?;
    let fit = model
        .fit_feature_blocks::<T>(&mut blocks)
        .map_err(|e| data_error(e, reader))?;
    let gram = fit.timings.gram;
    Ok(FileFit {
        fit,
        load: Duration::ZERO,
        gram,
        samples: Samples::Stream,
    })
}

/// Samples in rows: the rows are streamed into the Gram accumulation, then C is fitted.
fn fit_streamed<T: Real>(
    model: &LaePca,
    reader: &mut Reader,
    bar: &Bar,
) -> Result<FileFit<'static, T>, Failure> {
    let (acc, load, pushes) = accumulate::<T>(model, reader, bar)?;
    // The accumulation's finish is the fit's Gram phase (C stays on the device for a GPU loop).
    let fit = model
        .fit_accumulated::<T>(acc)
        .map_err(|e| data_error(e, reader))?;
    let gram = pushes + fit.timings.gram;
    Ok(FileFit {
        fit,
        load,
        gram,
        samples: Samples::Stream,
    })
}

/// The arrays of the result, as float32 .npy files.
fn write_arrays<T: Real>(out: &mut Outputs, fit: &Fit<T>) -> Result<(), Failure> {
    let (k, m) = fit.components.shape();
    out.npy("components.npy", &[k, m], &rows_f32(&fit.components))?;
    for (name, values) in [
        ("singular_values.npy", &fit.singular_values),
        ("explained_variance.npy", &fit.explained_variance),
        (
            "explained_variance_ratio.npy",
            &fit.explained_variance_ratio,
        ),
    ] {
        out.npy(name, &[k], &to_f32(values))?;
    }
    out.npy("mean.npy", &[m], &to_f32(&fit.mean))
}

/// convergence.svg and scree.svg.
fn write_plots<T: Real>(out: &mut Outputs, fit: &Fit<T>, args: &FitArgs) -> Result<(), Failure> {
    let input_name = args
        .input
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let title = format!(
        "{} on {}: {} ({} iterations)",
        fit.solver.name(),
        input_name,
        fit.backend.name(),
        fit.iterations
    );
    let svg = convergence_svg(&fit.history, fit.tol, &title).map_err(Failure)?;
    out.bytes("convergence.svg", svg.as_bytes())?;
    let svg = scree_svg(
        &to_f64(&fit.explained_variance_ratio),
        &format!(
            "{input_name}: explained variance ratio, k = {}",
            fit.components.nrows()
        ),
    )
    .map_err(Failure)?;
    out.bytes("scree.svg", svg.as_bytes())
}

/// The summary's description of the data.
fn data_json(args: &FitArgs, reader: &Reader, checked: &CheckedParams) -> DataJson {
    DataJson {
        input: args.input.display().to_string(),
        format: reader.format().name(),
        dtype: reader.dtype().to_string(),
        n_samples: checked.n_samples,
        n_features: checked.n_features,
        k: checked.k,
        layout: layout_name(args),
        center: !args.no_center,
        precision: reader.precision().name(),
    }
}

fn layout_name(args: &FitArgs) -> &'static str {
    if args.features_in_rows {
        "features-in-rows"
    } else {
        "samples-in-rows"
    }
}

/// The summary's description of the run: what was asked, what ran, how it ended.
fn run_json<T: Real>(
    args: &FitArgs,
    checked: &CheckedParams,
    fit: &Fit<T>,
    gram_backend: laepca::Backend,
) -> RunJson {
    RunJson {
        solver: fit.solver.name().to_string(),
        solver_requested: args.solver.name().to_string(),
        backend: fit.backend.name().to_string(),
        backend_requested: args.backend.name().to_string(),
        arithmetic: fit.arithmetic.name(),
        precision_requested: args.precision.name(),
        method: fit.method.name().to_string(),
        method_requested: args.method.name().to_string(),
        method_reason: fit.method_reason.clone(),
        phases: PhasesJson::of(gram_backend, fit.backend),
        adapter: fit.adapter.as_ref().map(AdapterJson::of),
        lambda: fit.lambda,
        alpha: fit.alpha,
        tol: fit.tol,
        max_iter: checked.max_iter,
        seed: args.seed,
        iterations: fit.iterations,
        passes: fit.passes,
        converged: fit.converged,
        stalled: fit.stalled,
        final_stopping_quantity: fit.history.last().copied().filter(|q| q.is_finite()),
    }
}

/// Scores (n x k): from the matrix in memory, or by a second streamed pass over the file.
fn write_scores<T: Real>(
    out: &mut Outputs,
    fit: &Fit<T>,
    samples: &Samples<'_, T>,
    args: &FitArgs,
) -> Result<(), Failure> {
    let projection = fit.projection();
    let (k, m) = fit.components.shape();
    let mut writer = NpyWriter::create(out.path("scores.npy"), &[fit.n_samples, k])?;
    let name = args.input.display();
    match samples {
        Samples::Dense(x) => {
            let scores = projection.transform(x).context(&name)?;
            writer.write(&rows_f32(&scores))?;
        }
        Samples::Sparse(x) => {
            let scores = projection.transform_csr(x).context(&name)?;
            writer.write(&rows_f32(&scores))?;
        }
        Samples::Stream => {
            let h5ad = super::h5ad_options(&args.input, &args.layer, &args.var_mask)?;
            let mut reader = super::open_reader(&args.input, &h5ad)?;
            let chunk = reader.chunk_rows();
            let mut buf = Vec::<T>::new();
            while reader.read_rows(&mut buf, chunk)? > 0 {
                let x = DMatrix::from_row_slice(buf.len() / m, m, &buf);
                let scores = projection.transform(&x).context(&name)?;
                writer.write(&rows_f32(&scores))?;
            }
        }
    }
    out.add(writer.finish()?)
}

fn secs(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

/// The human-readable report (without --json): what was fitted, how the run ended, the spectrum, the
/// times.
fn report(s: &Summary, args: &FitArgs) -> String {
    let d = &s.data;
    let mut r = format!(
        "{} ({}, {}): {} samples x {} features, k = {}\n",
        d.input, d.format, d.dtype, d.n_samples, d.n_features, d.k
    );
    r += &run_line(&s.run);
    r += &spectrum_table(&s.spectrum);
    let t = &s.timings_ms;
    r += &format!(
        "time: load {}, gram {}, iterate {}, finish {}, write {}, total {}\n",
        secs(t.load),
        secs(t.gram),
        secs(t.iterate),
        secs(t.finish),
        secs(t.write),
        secs(t.total)
    );
    r += &format!("wrote {} to {}\n", s.files.join(", "), args.out.display());
    r
}

/// "solver ... on ...: N iterations (P passes over C), converged (tol ...); lambda ...".
fn run_line(run: &RunJson) -> String {
    let on = match &run.adapter {
        Some(a) => format!(
            "{} ({}, {}, {})",
            run.backend, a.name, a.backend, a.device_type
        ),
        None => run.backend.clone(),
    };
    let state = if run.converged {
        "converged"
    } else if run.stalled {
        "stalled at the precision floor"
    } else {
        "NOT converged"
    };
    format!(
        "solver {} on {on}: {} iterations ({} passes over C), {state} (tol {:.1e}); lambda {:.4e}\n\
         method {} ({})\n",
        run.solver,
        run.iterations,
        run.passes,
        run.tol,
        run.lambda,
        run.method,
        run.method_reason
    )
}

/// One line per component: singular value, explained variance, its ratio and the cumulative ratio.
fn spectrum_table(sp: &SpectrumJson) -> String {
    let mut r = format!(
        "{:>9} {:>16} {:>20} {:>10} {:>11}\n",
        "component", "singular value", "explained variance", "ratio", "cumulative"
    );
    let mut cum = 0.0;
    for (i, ((sv, ev), ratio)) in sp
        .singular_values
        .iter()
        .zip(&sp.explained_variance)
        .zip(&sp.explained_variance_ratio)
        .enumerate()
    {
        cum += ratio;
        r += &format!(
            "{:>9} {sv:>16.6e} {ev:>20.6e} {ratio:>10.4} {cum:>11.4}\n",
            i + 1
        );
    }
    r
}
