//! The command line: arguments (clap), dispatch, and the one-line error report.

mod cleanup;
mod demo;
mod devices;
mod fit;
mod output;
mod plot;
mod progress;
mod transform;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use laepca::io::{H5adFile, H5adMatrix, H5adOptions, Reader};
use laepca::{Backend, LaePca, Method, Solver};
use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// PCA by L2-regularised linear autoencoders (LAE-PCA) on the GPU and the CPU.
///
/// Data files have samples in rows and features in columns (unless --features-in-rows); the results
/// follow scikit-learn's conventions (centred data, components as rows, explained_variance_ratio).
#[derive(Parser, Debug)]
#[command(name = "laepca", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fit the top-k principal components of a data file; write them (.npy) and summary.json to DIR
    Fit(FitArgs),
    /// Project data onto the components of a fitted model: writes the n x k scores as .npy
    Transform(TransformArgs),
    /// List the GPU adapters wgpu sees, with their limits
    Devices,
    /// Fit a dataset with a known spectrum on the GPU (if any) and the CPU; print the errors
    Demo,
}

/// The arguments of `laepca fit`.
#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct FitArgs {
    /// The data file: .npy, .csv, .tsv, .mtx, IDX (.idx, *-ubyte) or AnnData (.h5ad, in builds with
    /// the h5ad feature); the text and IDX formats may be gzipped (.gz)
    pub input: PathBuf,
    /// The number of components
    #[arg(short = 'k', value_name = "K")]
    pub k: usize,
    /// The output directory (created if needed)
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DIR",
        default_value = "laepca-out"
    )]
    pub out: PathBuf,
    /// The iteration: auto, momentum, untied, sync, tied, exact (= exact-tied), exact-untied, exact-sync,
    /// exact-tied
    #[arg(long, value_name = "SOLVER", default_value = "auto")]
    pub solver: Solver,
    /// The L2 weight λ (on the scale of C = XᵀX; default: half the k-th Ritz value θ_k ≤ σ_k²)
    #[arg(long, value_name = "L", allow_hyphen_values = true)]
    pub lambda: Option<f64>,
    /// The step size α of the gradient solvers (default 0.1/‖C‖₂)
    #[arg(long, value_name = "A", allow_hyphen_values = true)]
    pub alpha: Option<f64>,
    /// The stopping threshold (its help, with the library's defaults, is set by [`command`])
    #[arg(long, value_name = "EPS", allow_hyphen_values = true)]
    pub tol: Option<f64>,
    /// The most iterations
    #[arg(long, value_name = "N", default_value_t = laepca::DEFAULT_MAX_ITER)]
    pub max_iter: usize,
    /// The seed of the initial weights
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Where to compute: auto (a hardware GPU if wgpu finds one, a software one only when named by
    /// --adapter or WGPU_ADAPTER_NAME, else the CPU; the library decides), gpu or cpu
    #[arg(long, value_name = "BACKEND", default_value = "auto")]
    pub backend: Backend,
    /// The arithmetic of a GPU loop: auto (f64 for an f64 file where the device has f64 shaders, else
    /// f32), f32, or f64 (an error on a device without f64 shaders); an f64 GPU fit accumulates C on
    /// the CPU in f64. The CPU computes in the file's precision
    #[arg(long, value_name = "PRECISION", default_value = "auto")]
    pub precision: laepca::GpuPrecision,
    /// The GPU adapter to use: the first whose name contains this text (see `laepca devices`)
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,
    /// Do not remove the features' means
    #[arg(long)]
    pub no_center: bool,
    /// How C is applied: auto (the library's choice from the shape, the density and the memory
    /// available), gram (C formed), gram-t (fewer samples than features: K = X_c X_cᵀ formed instead;
    /// a .npy file read by blocks of features, sparse input densified a block of features at a time,
    /// other files whole) or operator (sparse input: each product taken from the data, C never formed)
    #[arg(long, value_name = "METHOD", default_value = "auto")]
    pub method: Method,
    /// The file holds features in rows and samples in columns (the paper's layout; read whole)
    #[arg(long)]
    pub features_in_rows: bool,
    /// .h5ad input: the matrix to fit: X (the default), raw (raw.X) or a layer's name
    #[arg(long, value_name = "MATRIX")]
    pub layer: Option<H5adMatrix>,
    /// .h5ad input: fit only the features where this boolean column of the matrix's var table is
    /// true (e.g. highly_variable)
    #[arg(long, value_name = "COLUMN")]
    pub var_mask: Option<String>,
    /// Also write the scores (n x k) to DIR/scores.npy
    #[arg(long)]
    pub scores: bool,
    /// Also write DIR/convergence.svg and DIR/scree.svg
    #[arg(long)]
    pub plot: bool,
    /// Print the summary (summary.json) to stdout instead of the table
    #[arg(long)]
    pub json: bool,
}

/// The arguments of `laepca transform`.
#[derive(Args, Debug)]
pub struct TransformArgs {
    /// The directory `laepca fit` wrote (components.npy and mean.npy are read)
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// The data file (same formats as fit), samples in rows
    pub input: PathBuf,
    /// The scores file to write (.npy, n x k, float32)
    #[arg(short = 'o', long = "output", value_name = "SCORES.npy")]
    pub out: PathBuf,
    /// The file holds features in rows and samples in columns (read whole)
    #[arg(long)]
    pub features_in_rows: bool,
    /// .h5ad input: the matrix, as for fit
    #[arg(long, value_name = "MATRIX")]
    pub layer: Option<H5adMatrix>,
    /// .h5ad input: the feature mask the model was fitted with, as for fit
    #[arg(long, value_name = "COLUMN")]
    pub var_mask: Option<String>,
}

/// The `.h5ad` options of `--layer` and `--var-mask` for an `.h5ad` input (None for other formats,
/// which refuse the flags).
fn h5ad_options(
    input: &Path,
    layer: &Option<H5adMatrix>,
    var_mask: &Option<String>,
) -> Result<Option<H5adOptions>, Failure> {
    let is_h5ad = laepca::io::Format::from_path(input).ok() == Some(laepca::io::Format::H5ad);
    if !is_h5ad {
        return match (layer, var_mask) {
            (None, None) => Ok(None),
            _ => Err(Failure(format!(
                "{}: --layer and --var-mask apply to .h5ad files only",
                input.display()
            ))),
        };
    }
    Ok(Some(H5adOptions {
        matrix: layer.clone().unwrap_or_default(),
        var_mask: var_mask.clone(),
    }))
}

/// A row reader of the input: an `.h5ad` file on the matrix and mask of its options.
fn open_reader(input: &Path, h5ad: &Option<H5adOptions>) -> Result<Reader, Failure> {
    Ok(match h5ad {
        Some(options) => Reader::from_h5ad(H5adFile::open(input, options)?),
        None => Reader::open(input)?,
    })
}

/// A failure to report: one line on stderr and a non-zero exit.
#[derive(Debug)]
pub struct Failure(pub String);

impl Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<laepca::io::IoError> for Failure {
    fn from(e: laepca::io::IoError) -> Self {
        Failure(e.to_string())
    }
}

/// `result.context(what)`: a failure reading "what: error".
pub trait Context<T> {
    fn context(self, what: impl Display) -> Result<T, Failure>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, what: impl Display) -> Result<T, Failure> {
        self.map_err(|e| Failure(format!("{what}: {e}")))
    }
}

/// Prints to stdout, ignoring a closed pipe (`laepca fit ... --json | head`).
pub fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// A message made one printable line: control characters from the input (a newline in a file name, an
/// escape sequence in a field) are shown escaped, not sent to the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `--tol`'s help: the library's default tolerances.
fn tol_help() -> String {
    let defaults = |solver| {
        format!(
            "{:e} in f64, {:e} in f32 arithmetic",
            LaePca::default_tol::<f64>(solver),
            LaePca::default_tol::<f32>(solver)
        )
    };
    format!(
        "The stopping threshold (default: auto {}; momentum {}; the others {})",
        defaults(Solver::Auto),
        defaults(Solver::Momentum),
        defaults(Solver::ExactTied)
    )
}

/// The command line's description: the derived one, with the help texts that quote library values.
pub fn command() -> clap::Command {
    Cli::command().mut_subcommand("fit", |fit| fit.mut_arg("tol", |tol| tol.help(tol_help())))
}

/// The binary's entry point: parses the arguments, runs the subcommand, reports a failure in one line.
pub fn main() -> ExitCode {
    // First, before any thread exists: SIGINT, SIGTERM and SIGHUP then remove the temporary outputs.
    cleanup::install();
    // Mesa's device-select Vulkan layer connects to Wayland whenever an instance enables the Wayland
    // surface extension (wgpu always does), printing "XDG_RUNTIME_DIR is invalid" lines on machines
    // without a session, even when the fit ends on the CPU. It only reorders adapters, which wgpu picks
    // itself; a user's own setting wins. (Set here, before any thread exists.)
    if std::env::var_os("NODEVICE_SELECT").is_none()
        && std::env::var_os("MESA_VK_DEVICE_SELECT").is_none()
    {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // A bug must still read as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("laepca: internal error (a bug, please report it): {info}");
    }));
    let cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit());
    let result = match &cli.command {
        Command::Fit(args) => fit::run(args),
        Command::Transform(args) => transform::run(args),
        Command::Devices => devices::run(),
        Command::Demo => demo::run(),
    };
    match result {
        Ok(code) => code,
        Err(_) if cleanup::signalled() => {
            // The failure is the signal's removal of the outputs under this thread: the signal
            // thread ends the process by that signal; an error exit here would race it.
            loop {
                std::thread::park();
            }
        }
        Err(failure) => {
            eprintln!("laepca: error: {}", printable(&failure.0));
            ExitCode::FAILURE
        }
    }
}
