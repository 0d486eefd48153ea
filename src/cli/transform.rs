//! `laepca transform`: scores of new data with a fitted model, streamed chunk by chunk.

use super::cleanup;
use super::output::guard_inputs;
use super::{print_out, Context, Failure, TransformArgs};
use laepca::io::{read_npy, NpyWriter, Reader};
use laepca::{Error, Projection};
use nalgebra::{DMatrix, DVector};
use std::path::Path;
use std::process::ExitCode;

/// Reads components.npy (k x m) and mean.npy (m) from a model directory.
fn load_model(dir: &Path) -> Result<Projection<f64>, Failure> {
    if !dir.is_dir() {
        return Err(Failure(format!(
            "the model directory {} does not exist (give the -o directory of `laepca fit`)",
            dir.display()
        )));
    }
    let components_path = dir.join("components.npy");
    let mean_path = dir.join("mean.npy");
    for p in [&components_path, &mean_path] {
        if !p.is_file() {
            return Err(Failure(format!(
                "the model directory {} has no {} (it is written by `laepca fit`)",
                dir.display(),
                p.file_name().unwrap_or_default().to_string_lossy()
            )));
        }
    }
    let c = read_npy::<f64>(&components_path)?;
    let (k, m) = match c.shape[..] {
        [k, m] if k > 0 && m > 0 => (k, m),
        _ => {
            return Err(Failure(format!(
                "{}: expected a k x n_features array of components, found shape {:?}",
                components_path.display(),
                c.shape
            )))
        }
    };
    let mean = read_npy::<f64>(&mean_path)?;
    if mean.shape.len() != 1 {
        return Err(Failure(format!(
            "{}: expected a 1-D array of n_features means, found shape {:?}",
            mean_path.display(),
            mean.shape
        )));
    }
    Projection::new(
        DMatrix::from_row_slice(k, m, &c.data),
        DVector::from_vec(mean.data),
    )
    .context(format!("the model in {}", dir.display()))
}

pub fn run(args: &TransformArgs) -> Result<ExitCode, Failure> {
    let projection = load_model(&args.model)?;
    let (k, m) = projection.components.shape();
    let is_npy = args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if !is_npy {
        return Err(Failure(format!(
            "the output {} must be a .npy file",
            args.out.display()
        )));
    }
    guard_inputs(
        &args.out,
        &[
            &args.input,
            &args.model.join("components.npy"),
            &args.model.join("mean.npy"),
        ],
    )?;
    let h5ad = super::h5ad_options(&args.input, &args.layer, &args.var_mask)?;
    if h5ad.is_some() && args.features_in_rows {
        return Err(Failure(format!(
            "{}: an .h5ad file holds observations in rows: --features-in-rows does not apply",
            args.input.display()
        )));
    }
    let mut reader = super::open_reader(&args.input, &h5ad)?;
    let name = args.input.display();
    let (n, cols) = if args.features_in_rows {
        (reader.cols(), reader.rows())
    } else {
        (reader.rows(), reader.cols())
    };
    if cols != m {
        return Err(Failure(format!(
            "{name} has {cols} features but the model in {} was fitted on {m} (shape mismatch)",
            args.model.display()
        )));
    }
    if n == 0 {
        let e = Error::EmptyData {
            n_samples: n,
            n_features: cols,
        };
        return Err(Failure(format!("{name}: {e}")));
    }
    let name_of_out = args
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out_dir = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    cleanup::remove_stale(&out_dir, &name_of_out, "tmp");
    let mut writer = NpyWriter::create(&args.out, &[n, k])?;
    let temp = cleanup::Temp::register(writer.temp_path().to_path_buf());
    let mut put = |x: &DMatrix<f64>, first_row: usize| -> Result<(), Failure> {
        let scores = projection.transform(x).map_err(|e| match e {
            Error::NonFinite { row, col, value } => {
                let (row, col) = if args.features_in_rows {
                    (col, first_row + row)
                } else {
                    (first_row + row, col)
                };
                let line = reader_line(&args.input, row);
                Failure(format!(
                    "{name}: non-finite value {value} at row {row}, column {col} (counted from 0{line})"
                ))
            }
            e => Failure(format!("{name}: {e}")),
        })?;
        let mut rows = Vec::with_capacity(scores.len());
        for i in 0..scores.nrows() {
            rows.extend(scores.row(i).iter().map(|&v| v as f32));
        }
        writer.write(&rows).map_err(Failure::from)
    };
    if args.features_in_rows {
        let mat = reader.read_all::<f64>()?;
        let x = DMatrix::from_row_slice(mat.rows, mat.cols, &mat.data).transpose();
        put(&x, 0)?;
    } else {
        let chunk = reader.chunk_rows();
        let mut buf = Vec::<f64>::new();
        let mut first = 0;
        while reader.read_rows(&mut buf, chunk)? > 0 {
            let rows = buf.len() / m;
            put(&DMatrix::from_row_slice(rows, m, &buf), first)?;
            first += rows;
        }
    }
    writer.finish()?.commit()?;
    temp.keep();
    print_out(&format!(
        "wrote {}: {n} x {k} scores (float32)\n",
        args.out.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// "; line L of the file" for a text file's row (a re-read: only on the error path).
fn reader_line(path: &Path, row: usize) -> String {
    Reader::open(path)
        .ok()
        .and_then(|r| r.source_line(row))
        .map(|l| format!("; line {l} of the file"))
        .unwrap_or_default()
}
