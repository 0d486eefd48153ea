//! Writing results: all-or-nothing staging of the output files, the input-overwrite guard, the summary.

use super::{Context, Failure};
use laepca::io::StagedFile;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Whether two paths name the same existing file (through links and `..`).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                x.dev() == y.dev() && x.ino() == y.ino()
            }
            #[cfg(not(unix))]
            {
                let _ = (x, y);
                matches!((a.canonicalize(), b.canonicalize()), (Ok(p), Ok(q)) if p == q)
            }
        }
        _ => false,
    }
}

/// Refuses to write `output` when it is one of `inputs`.
pub fn guard_inputs(output: &Path, inputs: &[&Path]) -> Result<(), Failure> {
    for input in inputs {
        if same_file(output, input) {
            return Err(Failure(format!(
                "refusing to overwrite the input {} with the output {}: choose another output",
                input.display(),
                output.display()
            )));
        }
    }
    Ok(())
}

/// Output files written to temporary names, renamed into place together by [`Outputs::commit`]. Dropped
/// before (a failed run), the temporary files are deleted, and a directory this run created is removed
/// again when it is empty.
pub struct Outputs {
    dir: PathBuf,
    created_dir: bool,
    staged: Vec<StagedFile>,
    committed: bool,
}

impl Outputs {
    /// Creates `dir` if needed.
    pub fn new(dir: &Path) -> Result<Self, Failure> {
        if dir.exists() && !dir.is_dir() {
            return Err(Failure(format!(
                "the output {} exists and is not a directory",
                dir.display()
            )));
        }
        let created_dir = !dir.exists();
        std::fs::create_dir_all(dir).context(format!("cannot create {}", dir.display()))?;
        Ok(Outputs {
            dir: dir.to_path_buf(),
            created_dir,
            staged: Vec::new(),
            committed: false,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn add(&mut self, staged: StagedFile) {
        self.staged.push(staged);
    }

    pub fn bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), Failure> {
        let staged = laepca::io::stage_bytes(self.path(name), bytes)?;
        self.add(staged);
        Ok(())
    }

    pub fn npy(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<(), Failure> {
        let staged = laepca::io::stage_npy(self.path(name), shape, values)?;
        self.add(staged);
        Ok(())
    }

    /// The file names, in the order they were staged.
    pub fn names(&self) -> Vec<String> {
        self.staged
            .iter()
            .filter_map(|s| s.dest().file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    /// Renames every staged file into place.
    pub fn commit(mut self) -> Result<(), Failure> {
        self.committed = true;
        for s in std::mem::take(&mut self.staged) {
            s.commit()?;
        }
        Ok(())
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        if !self.committed {
            self.staged.clear(); // deletes the temporary files
            if self.created_dir {
                let _ = std::fs::remove_dir(&self.dir); // only if empty
            }
        }
    }
}

/// The adapter a fit ran on.
#[derive(Serialize, Debug)]
pub struct AdapterJson {
    pub name: String,
    pub backend: String,
    pub device_type: String,
}

/// Where each phase of the fit ran ("gpu" or "cpu"): the library decides the backend once and runs
/// the Gram accumulation and the loop on that one device; λ's setup and the finish run on the CPU.
#[derive(Serialize, Debug)]
pub struct PhasesJson {
    pub gram: &'static str,
    pub setup: &'static str,
    pub iterate: &'static str,
    pub finish: &'static str,
}

impl PhasesJson {
    pub fn of(backend: laepca::Backend) -> Self {
        PhasesJson {
            gram: backend.name(),
            setup: "cpu",
            iterate: backend.name(),
            finish: "cpu",
        }
    }
}

/// Wall-clock times in milliseconds.
#[derive(Serialize, Debug, Default)]
pub struct TimingsMs {
    /// Reading and decoding the file (on streamed inputs, overlapped with `gram`).
    pub load: f64,
    /// Accumulating the Gram matrix C and the mean.
    pub gram: f64,
    /// Choosing λ and α.
    pub setup: f64,
    /// Moving C to the device and reading the weights back (zero on the CPU).
    pub upload: f64,
    pub readback: f64,
    /// The solver loop.
    pub iterate: f64,
    /// The small SVD, Rayleigh quotients and variances.
    pub finish: f64,
    /// Computing and writing the outputs (the scores' second pass included).
    pub write: f64,
    /// The whole command.
    pub total: f64,
}

/// summary.json.
#[derive(Serialize, Debug)]
pub struct Summary {
    pub laepca_version: &'static str,
    pub input: String,
    pub format: &'static str,
    pub dtype: String,
    pub n_samples: usize,
    pub n_features: usize,
    pub k: usize,
    pub layout: &'static str,
    pub center: bool,
    /// The float type of the fit on the CPU (the GPU computes in f32).
    pub precision: &'static str,
    pub solver: String,
    pub solver_requested: String,
    /// The backend that ran every device phase ("gpu" or "cpu"; see `phases`) and the one asked for.
    pub backend: String,
    pub backend_requested: String,
    pub phases: PhasesJson,
    pub adapter: Option<AdapterJson>,
    pub lambda: f64,
    /// Null for the exact solvers (no step size).
    pub alpha: Option<f64>,
    pub tol: f64,
    pub max_iter: usize,
    pub seed: u64,
    pub iterations: usize,
    pub converged: bool,
    pub stalled: bool,
    pub final_stopping_quantity: Option<f64>,
    pub singular_values: Vec<f64>,
    pub explained_variance: Vec<f64>,
    pub explained_variance_ratio: Vec<f64>,
    pub timings_ms: TimingsMs,
    pub files: Vec<String>,
}

/// Milliseconds with microsecond resolution.
pub fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
