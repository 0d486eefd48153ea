//! `laepca fit`: read (streaming .npy and IDX row chunks into the Gram accumulation), fit, write.

use super::output::{
    check_destination, guard_inputs, ms, AdapterJson, Outputs, PhasesJson, Summary, TimingsMs,
};
use super::plot::{convergence_svg, scree_svg};
use super::progress::Bar;
use super::{print_out, Context, Failure, FitArgs};
use laepca::io::{IoError, NpyWriter, Precision, Reader};
use laepca::{Error, Fit, GramStats, LaePca, Layout, Real};
use nalgebra::{DMatrix, DVector};
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

pub fn run(args: &FitArgs) -> Result<ExitCode, Failure> {
    let start = Instant::now();
    check_parameters(args)?;
    let reader = Reader::open(&args.input)?;
    let (n, m) = samples_features(args, &reader);
    let name = args.input.display();
    if n == 0 || m == 0 {
        let e = Error::EmptyData {
            n_samples: n,
            n_features: m,
        };
        return Err(Failure(format!("{name}: {e}")));
    }
    if args.k == 0 || args.k > n.min(m) {
        let e = Error::InvalidK {
            k: args.k,
            max: n.min(m),
        };
        return Err(Failure(format!("{name}: {e}")));
    }
    check_destination(&args.out, &OUTPUT_NAMES)?;
    for file in OUTPUT_NAMES {
        guard_inputs(&args.out.join(file), &[&args.input])?;
    }
    let bar = Bar::new();
    let result = match reader.precision() {
        Precision::F32 => fit_as::<f32>(args, reader, start, &bar),
        Precision::F64 => fit_as::<f64>(args, reader, start, &bar),
    };
    bar.clear();
    let text = result?;
    print_out(&text);
    Ok(ExitCode::SUCCESS)
}

/// (samples, features) of the file as the layout reads it.
fn samples_features(args: &FitArgs, reader: &Reader) -> (usize, usize) {
    if args.features_in_rows {
        (reader.cols(), reader.rows())
    } else {
        (reader.rows(), reader.cols())
    }
}

/// The parameters' domains, checked before a big file is read.
fn check_parameters(args: &FitArgs) -> Result<(), Failure> {
    for (flag, value) in [
        ("--lambda", args.lambda),
        ("--alpha", args.alpha),
        ("--tol", args.tol),
    ] {
        if let Some(v) = value {
            if !(v > 0.0 && v.is_finite()) {
                let e = Error::InvalidParameter {
                    name: flag,
                    value: v,
                    reason: "it must be positive and finite",
                };
                return Err(Failure(e.to_string()));
            }
        }
    }
    if args.max_iter == Some(0) {
        return Err(Failure(
            "invalid --max-iter 0: it must be at least 1".to_string(),
        ));
    }
    Ok(())
}

fn model(args: &FitArgs, bar: &Bar) -> LaePca {
    let mut model = LaePca::new(args.k)
        .solver(args.solver.resolve())
        .seed(args.seed)
        .backend(args.backend)
        .center(!args.no_center)
        .on_progress(bar.hook());
    if let Some(v) = args.lambda {
        model = model.lambda(v);
    }
    if let Some(v) = args.alpha {
        model = model.alpha(v);
    }
    if let Some(v) = args.tol {
        model = model.tol(v);
    }
    if let Some(v) = args.max_iter {
        model = model.max_iter(v);
    }
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
/// this one is pushed. Returns the statistics, the time spent reading and the time spent accumulating.
fn accumulate<T: Real>(
    model: &LaePca,
    reader: &mut Reader,
    bar: &Bar,
) -> Result<(GramStats, Duration, Duration), Failure> {
    // The builder's backend is decided: the accumulation runs on the device the fit will use.
    let mut acc = model.accumulator(reader.cols()).map_err(|e| match e {
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
    let t = Instant::now();
    let stats = acc.finish().map_err(|e| data_error(e, reader))?;
    gram += t.elapsed();
    Ok((stats, load, gram))
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

fn fit_as<T: Real>(
    args: &FitArgs,
    mut reader: Reader,
    start: Instant,
    bar: &Bar,
) -> Result<String, Failure> {
    // One backend decision (the library's) for every phase: the accumulation, the loop, the summary.
    let model = model(args, bar)
        .resolve_backend()
        .context("cannot use the GPU (--backend gpu)")?;
    let (n, m) = samples_features(args, &reader);
    // With features in rows the samples are columns: the file is read whole.
    let (fit, load, gram, samples): (Fit<T>, Duration, Duration, Option<DMatrix<T>>) =
        if args.features_in_rows {
            bar.message("load", "reading the whole file (features in rows)");
            let t = Instant::now();
            let mat = reader.read_all::<T>()?;
            let load = t.elapsed();
            let fit = model
                .clone()
                .layout(Layout::FeaturesInRows)
                .fit_slice(&mat.data, mat.rows, mat.cols)
                .map_err(|e| data_error(e, &reader))?;
            let gram = fit.timings.gram;
            let samples = args
                .scores
                .then(|| DMatrix::from_row_slice(mat.rows, mat.cols, &mat.data).transpose());
            (fit, load, gram, samples)
        } else {
            let (stats, load, gram) = accumulate::<T>(&model, &mut reader, bar)?;
            let fit = model
                .fit_gram::<T>(&stats)
                .map_err(|e| data_error(e, &reader))?;
            (fit, load, gram, None)
        };
    let k = args.k;

    bar.message("write", "writing the results");
    let t_write = Instant::now();
    let mut out = Outputs::new(&args.out, &OUTPUT_NAMES)?;
    out.npy("components.npy", &[k, m], &rows_f32(&fit.components))?;
    out.npy("singular_values.npy", &[k], &to_f32(&fit.singular_values))?;
    out.npy(
        "explained_variance.npy",
        &[k],
        &to_f32(&fit.explained_variance),
    )?;
    out.npy(
        "explained_variance_ratio.npy",
        &[k],
        &to_f32(&fit.explained_variance_ratio),
    )?;
    out.npy("mean.npy", &[m], &to_f32(&fit.mean))?;
    if args.scores {
        bar.message(
            "scores",
            "projecting the data (a second pass over the file)",
        );
        write_scores(&mut out, &fit, samples, args, n, m)?;
    }
    let input_name = args
        .input
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if args.plot {
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
            &format!("{input_name}: explained variance ratio, k = {k}"),
        )
        .map_err(Failure)?;
        out.bytes("scree.svg", svg.as_bytes())?;
    }
    let mut files = out.names();
    files.push("summary.json".to_string());
    let t = &fit.timings;
    let summary = Summary {
        laepca_version: env!("CARGO_PKG_VERSION"),
        input: args.input.display().to_string(),
        format: reader.format().name(),
        dtype: reader.dtype().to_string(),
        n_samples: n,
        n_features: m,
        k,
        layout: if args.features_in_rows {
            "features-in-rows"
        } else {
            "samples-in-rows"
        },
        center: !args.no_center,
        precision: reader.precision().name(),
        solver: fit.solver.name().to_string(),
        solver_requested: args.solver.name().to_string(),
        backend: fit.backend.name().to_string(),
        backend_requested: args.backend.name().to_string(),
        phases: PhasesJson::of(fit.backend),
        adapter: fit.adapter.as_ref().map(|a| AdapterJson {
            name: a.name.clone(),
            backend: a.backend.clone(),
            device_type: a.device_type.clone(),
        }),
        lambda: fit.lambda,
        alpha: fit.alpha.is_finite().then_some(fit.alpha),
        tol: fit.tol,
        max_iter: args.max_iter.unwrap_or(100_000),
        seed: args.seed,
        iterations: fit.iterations,
        passes: fit.passes,
        converged: fit.converged,
        stalled: fit.stalled,
        final_stopping_quantity: fit.history.last().copied().filter(|q| q.is_finite()),
        singular_values: to_f64(&fit.singular_values),
        explained_variance: to_f64(&fit.explained_variance),
        explained_variance_ratio: to_f64(&fit.explained_variance_ratio),
        timings_ms: TimingsMs {
            load: ms(load),
            gram: ms(gram),
            setup: ms(t.setup),
            upload: ms(t.upload),
            readback: ms(t.readback),
            iterate: ms(t.iterate),
            finish: ms(t.finish),
            write: ms(t_write.elapsed()),
            total: ms(start.elapsed()),
        },
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
            summary.final_stopping_quantity.unwrap_or(f64::NAN)
        );
    }
    Ok(if args.json {
        json
    } else {
        report(&summary, args)
    })
}

/// Scores (n x k): from the matrix in memory, or by a second streamed pass over the file.
fn write_scores<T: Real>(
    out: &mut Outputs,
    fit: &Fit<T>,
    samples: Option<DMatrix<T>>,
    args: &FitArgs,
    n: usize,
    m: usize,
) -> Result<(), Failure> {
    let projection = fit.projection();
    let k = fit.components.nrows();
    let mut writer = NpyWriter::create(out.path("scores.npy"), &[n, k])?;
    let name = args.input.display();
    match samples {
        Some(x) => {
            let scores = projection.transform(&x).context(&name)?;
            writer.write(&rows_f32(&scores))?;
        }
        None => {
            let mut reader = Reader::open(&args.input)?;
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

/// The human-readable report (without --json).
fn report(s: &Summary, args: &FitArgs) -> String {
    let mut r = format!(
        "{} ({}, {}): {} samples x {} features, k = {}\n",
        s.input, s.format, s.dtype, s.n_samples, s.n_features, s.k
    );
    let on = match &s.adapter {
        Some(a) => format!(
            "{} ({}, {}, {})",
            s.backend, a.name, a.backend, a.device_type
        ),
        None => s.backend.clone(),
    };
    let state = if s.converged {
        "converged"
    } else if s.stalled {
        "stalled at the precision floor"
    } else {
        "NOT converged"
    };
    r += &format!(
        "solver {} on {on}: {} iterations ({} passes over C), {state} (tol {:.1e}); lambda {:.4e}\n",
        s.solver, s.iterations, s.passes, s.tol, s.lambda
    );
    r += &format!(
        "{:>9} {:>16} {:>20} {:>10} {:>11}\n",
        "component", "singular value", "explained variance", "ratio", "cumulative"
    );
    let mut cum = 0.0;
    for i in 0..s.k {
        cum += s.explained_variance_ratio[i];
        r += &format!(
            "{:>9} {:>16.6e} {:>20.6e} {:>10.4} {:>11.4}\n",
            i + 1,
            s.singular_values[i],
            s.explained_variance[i],
            s.explained_variance_ratio[i],
            cum
        );
    }
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
