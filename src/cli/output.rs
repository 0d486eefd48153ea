//! Writing results: all-or-nothing staging of the output files, the input-overwrite guard, the summary.

use super::cleanup::Temp;
use super::{Context, Failure};
use laepca::io::StagedFile;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The run's result set, written into a fresh staging directory next to the output directory and
/// switched in by [`Outputs::commit`] at once: the output directory then holds this run's files and only
/// them (an earlier run's scores.npy or plots do not survive beside new components), and a reader, a
/// crash or a concurrent run never sees a mix of two runs. Dropped before the commit (a failed run), the
/// staging directory is removed, as it is on SIGINT, SIGTERM and SIGHUP (see [`super::cleanup`]).
pub struct Outputs {
    dest: PathBuf,
    staging: Temp,
    names: Vec<String>,
}

/// The tag of staging directories: `.{DIR}.laepca-{pid}-{n}` beside DIR.
const STAGING_TAG: &str = "laepca";

/// Whether `name` is something `laepca fit` leaves in its directory: an output, or a temporary file of
/// an older version that staged files inside it.
fn is_ours(name: &str, outputs: &[&str]) -> bool {
    outputs
        .iter()
        .any(|o| name == *o || super::cleanup::is_temp_of(name, o, "tmp"))
}

impl Outputs {
    /// Prepares the switch of `dir` (created if needed, with its parents): `dir` must be new, empty or
    /// hold only `outputs` (a directory with other files is refused, since its whole content is
    /// replaced). Stale staging directories of killed runs are removed.
    pub fn new(dir: &Path, outputs: &[&str]) -> Result<Self, Failure> {
        let (name, dest) = check_destination(dir, outputs)?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).context(format!("cannot create {}", parent.display()))?;
        super::cleanup::remove_stale(&parent, &name, STAGING_TAG);
        let staging = Temp::register(super::cleanup::temp_name(&parent, &name, STAGING_TAG));
        std::fs::create_dir(staging.path())
            .context(format!("cannot create a directory in {}", parent.display()))?;
        Ok(Outputs {
            dest,
            staging,
            names: Vec::new(),
        })
    }

    /// Where the file `name` is written (in the staging directory).
    pub fn path(&self, name: &str) -> PathBuf {
        self.staging.path().join(name)
    }

    /// A file written into the staging directory; its (atomic) rename there is harmless.
    pub fn add(&mut self, staged: StagedFile) -> Result<(), Failure> {
        let name = staged
            .dest()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        staged.commit()?;
        self.names.push(name);
        Ok(())
    }

    pub fn bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), Failure> {
        let staged = laepca::io::stage_bytes(self.path(name), bytes)?;
        self.add(staged)
    }

    pub fn npy(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<(), Failure> {
        let staged = laepca::io::stage_npy(self.path(name), shape, values)?;
        self.add(staged)
    }

    /// The file names, in the order they were written.
    pub fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// Switches the output directory to the staged results.
    pub fn commit(self) -> Result<(), Failure> {
        self.commit_with(&Rename)
    }

    /// [`commit`](Self::commit) through `fs` (a seam for the failure tests).
    fn commit_with(self, fs: &dyn Switch) -> Result<(), Failure> {
        let failed = |e: std::io::Error| {
            Failure(format!(
                "cannot put the results into {}: {e} (its previous content is unchanged)",
                self.dest.display()
            ))
        };
        sync_dir(self.staging.path());
        let staging = self.staging.path().to_path_buf();
        // A new (or empty) directory: one rename. It fails when the directory exists and is not empty
        // (another run got there first): then exchange.
        if fs.rename(&staging, &self.dest).is_ok() {
            self.staging.keep();
        } else {
            fs.exchange(&staging, &self.dest).map_err(failed)?;
            // The staging path now holds the previous results: dropping it removes them.
            drop(self.staging);
        }
        if let Some(parent) = self.dest.parent() {
            sync_dir(parent);
        }
        Ok(())
    }
}

/// Checks that `dir` may receive the results (see [`Outputs::new`]): returns its name and its path
/// (links followed).
pub fn check_destination(dir: &Path, outputs: &[&str]) -> Result<(String, PathBuf), Failure> {
    if dir.file_name().is_none() {
        return Err(Failure(format!(
            "the output {} must name a directory (not . or ..)",
            dir.display()
        )));
    }
    // A link is followed: its target's content is switched.
    let dest = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if dest.exists() {
        if !dest.is_dir() {
            return Err(Failure(format!(
                "the output {} exists and is not a directory",
                dir.display()
            )));
        }
        let entries = std::fs::read_dir(&dest).context(format!("cannot read {}", dir.display()))?;
        for entry in entries.flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            if !is_ours(&n, outputs) {
                return Err(Failure(format!(
                    "the output directory {} holds {n}, which `laepca fit` did not write: its \
                     whole content is replaced by the results, so choose a new or empty \
                     directory",
                    dir.display()
                )));
            }
        }
    }
    Ok((name, dest))
}

/// Makes a directory's entries durable (best effort: not every platform syncs directories).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The two directory operations of a commit.
trait Switch {
    /// Renames `from` to `to` (which may exist only as an empty directory).
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    /// Swaps two existing directories atomically where the system can (Linux's renameat2 with
    /// RENAME_EXCHANGE); elsewhere `to` is moved aside and `from` renamed in its place (a moment
    /// without `to`, never a mix), and `to`'s old content ends at `from`.
    fn exchange(&self, from: &Path, to: &Path) -> std::io::Result<()>;
}

struct Rename;

impl Switch for Rename {
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn exchange(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::ffi::CString;
            use std::os::unix::ffi::OsStrExt;
            let a = CString::new(from.as_os_str().as_bytes())?;
            let b = CString::new(to.as_os_str().as_bytes())?;
            // SAFETY: two valid NUL-terminated paths; renameat2 only reads them.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            if r == 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            // Only a file system without the exchange falls back to the two renames.
            if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
                return Err(e);
            }
        }
        move_aside(self, from, to)
    }
}

/// The portable exchange: `to` to a temporary name, `from` to `to`, the old content to `from`; a
/// failure of the second step puts `to` back.
fn move_aside(fs: &dyn Switch, from: &Path, to: &Path) -> std::io::Result<()> {
    let mut aside = from.as_os_str().to_owned();
    aside.push(".old");
    let aside = PathBuf::from(aside);
    fs.rename(to, &aside)?;
    if let Err(e) = fs.rename(from, to) {
        let _ = fs.rename(&aside, to);
        return Err(e);
    }
    // The switch is done; the old content goes with `from` (or, failing that, directly).
    if fs.rename(&aside, from).is_err() {
        let _ = std::fs::remove_dir_all(&aside);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const NAMES: [&str; 2] = ["components.npy", "summary.json"];

    /// Renames that fail from the `fail_at`-th call on (counted from 1), and no exchange syscall.
    struct Failing {
        calls: Cell<usize>,
        fail_at: usize,
    }

    impl Switch for Failing {
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            self.calls.set(self.calls.get() + 1);
            if self.calls.get() == self.fail_at {
                return Err(std::io::Error::other("injected failure"));
            }
            std::fs::rename(from, to)
        }
        fn exchange(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            move_aside(self, from, to)
        }
    }

    fn run(dest: &Path, text: &str, fs: &dyn Switch) -> Result<(), Failure> {
        let mut out = Outputs::new(dest, &NAMES)?;
        for n in NAMES {
            out.bytes(n, text.as_bytes())?;
        }
        out.commit_with(fs)
    }

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// (name, text) of each file in `dest`, sorted.
    fn content(dest: &Path) -> Vec<(String, String)> {
        let with_text = |n: String| {
            let text = std::fs::read_to_string(dest.join(&n)).unwrap();
            (n, text)
        };
        names(dest).into_iter().map(with_text).collect()
    }

    /// The hidden entries (staging directories, temporary files) in `parent`.
    fn litter(parent: &Path) -> Vec<String> {
        names(parent)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    #[test]
    fn failing_renames_leave_the_old_results_and_no_litter() {
        let parent = tempfile::tempdir().unwrap();
        let dest = parent.path().join("out");
        run(&dest, "old", &Rename).unwrap();
        let old = content(&dest);
        assert_eq!(old.len(), 2);
        // The steps of the portable exchange fail in turn (call 1 is the plain rename onto the
        // non-empty directory, which fails anyway): 2 = moving the old content aside, 3 = moving the
        // new in (the old one is put back). Both leave the old results and no litter.
        for fail_at in [2, 3] {
            let fs = Failing {
                calls: Cell::new(0),
                fail_at,
            };
            let e = run(&dest, "new", &fs).unwrap_err();
            assert!(e.0.contains("previous content is unchanged"), "{e}");
            assert_eq!(content(&dest), old, "fail_at {fail_at}");
            assert!(
                litter(parent.path()).is_empty(),
                "{:?}",
                litter(parent.path())
            );
        }
        // 4 = moving the old content to the staging name, after the switch: the new results are in
        // place and the old ones removed all the same. (1: the plain rename fails, the exchange runs.)
        for (fail_at, text) in [(4, "newer"), (1, "new")] {
            let fs = Failing {
                calls: Cell::new(0),
                fail_at,
            };
            run(&dest, text, &fs).unwrap();
            assert!(
                content(&dest).iter().all(|(_, t)| t == text),
                "fail_at {fail_at}"
            );
            assert!(
                litter(parent.path()).is_empty(),
                "{:?}",
                litter(parent.path())
            );
        }
        // The real switch: the whole set is replaced, a stale file of the old set included.
        std::fs::write(dest.join(".summary.json.tmp-1-0"), "litter").unwrap();
        run(&dest, "new", &Rename).unwrap();
        assert!(content(&dest).iter().all(|(_, t)| t == "new"));
        assert_eq!(content(&dest).len(), 2);
        assert!(litter(parent.path()).is_empty());
        // A directory with someone else's file is refused, untouched.
        std::fs::write(dest.join("notes.txt"), "mine").unwrap();
        let e = run(&dest, "x", &Rename).unwrap_err();
        assert!(e.0.contains("holds notes.txt"), "{e}");
        assert_eq!(content(&dest).len(), 3);
    }
}

/// The adapter a fit ran on.
#[derive(Serialize, Debug)]
pub struct AdapterJson {
    /// The adapter's name.
    pub name: String,
    /// The graphics API ("vulkan", "metal", "dx12", "gl").
    pub backend: String,
    /// "discrete", "integrated", "cpu", "virtual" or "other".
    pub device_type: String,
}

impl AdapterJson {
    /// The fields of `info` that the summary reports.
    pub fn of(info: &laepca::DeviceInfo) -> Self {
        AdapterJson {
            name: info.name.clone(),
            backend: info.backend.clone(),
            device_type: info.device_type.clone(),
        }
    }
}

/// Where each phase of the fit ran ("gpu" or "cpu"): the library decides the backend once and runs
/// the Gram accumulation and the loop on that one device; λ's setup and the finish run on the CPU.
#[derive(Serialize, Debug)]
pub struct PhasesJson {
    /// Accumulating C.
    pub gram: &'static str,
    /// Choosing λ and α.
    pub setup: &'static str,
    /// The solver loop.
    pub iterate: &'static str,
    /// The small SVD and the variances.
    pub finish: &'static str,
}

impl PhasesJson {
    /// The phases of a fit whose Gram matrix was accumulated on `gram` and whose loop ran on `iterate`
    /// (they differ when the auto solver's GPU loop hands a too large k to the CPU).
    pub fn of(gram: laepca::Backend, iterate: laepca::Backend) -> Self {
        PhasesJson {
            gram: gram.name(),
            setup: "cpu",
            iterate: iterate.name(),
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
    /// The GPU time of the Gram kernels (timestamp queries), where C was accumulated on a device
    /// that has them; else null.
    pub gram_kernels: Option<f64>,
    /// Choosing λ and α.
    pub setup: f64,
    /// Moving C to the device (zero on the CPU).
    pub upload: f64,
    /// Reading the weights back (zero on the CPU).
    pub readback: f64,
    /// The solver loop.
    pub iterate: f64,
    /// The GPU time of the loop's compute passes (timestamp queries), where it ran on a device that
    /// has them; else null.
    pub iterate_kernels: Option<f64>,
    /// The small SVD, Rayleigh quotients and variances.
    pub finish: f64,
    /// Computing and writing the outputs (the scores' second pass included).
    pub write: f64,
    /// The whole command.
    pub total: f64,
}

impl TimingsMs {
    /// The library's phase times of a fit, with the command's own: `load` and `gram` (measured
    /// around the library when it streams the file), `write` and `total`.
    pub fn of(
        fit: &laepca::Timings,
        load: Duration,
        gram: Duration,
        write: Duration,
        total: Duration,
    ) -> Self {
        TimingsMs {
            load: ms(load),
            gram: ms(gram),
            gram_kernels: fit.gram_kernels.map(ms),
            setup: ms(fit.setup),
            upload: ms(fit.upload),
            readback: ms(fit.readback),
            iterate: ms(fit.iterate),
            iterate_kernels: fit.iterate_kernels.map(ms),
            finish: ms(fit.finish),
            write: ms(write),
            total: ms(total),
        }
    }
}

/// summary.json: one flat object, its keys in the order of these fields and sections.
#[derive(Serialize, Debug)]
pub struct Summary {
    /// The version of laepca that wrote it.
    pub laepca_version: &'static str,
    /// What was fitted.
    #[serde(flatten)]
    pub data: DataJson,
    /// How the fit ran.
    #[serde(flatten)]
    pub run: RunJson,
    /// The spectrum it found.
    #[serde(flatten)]
    pub spectrum: SpectrumJson,
    /// The phases' times.
    pub timings_ms: TimingsMs,
    /// The files written, summary.json last.
    pub files: Vec<String>,
}

/// The summary's description of the data.
#[derive(Serialize, Debug)]
pub struct DataJson {
    /// The input file as given.
    pub input: String,
    /// Its format ("npy", "csv", ...).
    pub format: &'static str,
    /// Its element type as stored.
    pub dtype: String,
    /// Samples.
    pub n_samples: usize,
    /// Features.
    pub n_features: usize,
    /// Components fitted.
    pub k: usize,
    /// "samples-in-rows" or "features-in-rows".
    pub layout: &'static str,
    /// Whether the means were removed.
    pub center: bool,
    /// The file's float type: the CPU's arithmetic (`run.arithmetic` says the loop's).
    pub precision: &'static str,
}

/// The summary's description of the run: what was asked, what ran, how it ended.
#[derive(Serialize, Debug)]
pub struct RunJson {
    /// The solver that ran.
    pub solver: String,
    /// The solver asked for (`exact` is reported as `exact-tied`).
    pub solver_requested: String,
    /// The backend that ran the solver loop ("gpu" or "cpu"; `phases` says where each phase ran).
    pub backend: String,
    /// The backend asked for.
    pub backend_requested: String,
    /// The solver loop's arithmetic, "f32" or "f64" (on the GPU by --precision and the device).
    pub arithmetic: &'static str,
    /// The GPU precision asked for (--precision).
    pub precision_requested: &'static str,
    /// How C was applied: "gram" (formed) or "operator" (from the sparse data at each product).
    pub method: String,
    /// The method asked for (--method).
    pub method_requested: String,
    /// Why that method: "asked for", or the automatic choice's reason.
    pub method_reason: String,
    /// Where each phase ran.
    pub phases: PhasesJson,
    /// The GPU adapter (null on the CPU).
    pub adapter: Option<AdapterJson>,
    /// The λ used.
    pub lambda: f64,
    /// The step size; null for the solvers without a gradient step.
    pub alpha: Option<f64>,
    /// The tolerance used.
    pub tol: f64,
    /// The most iterations allowed.
    pub max_iter: usize,
    /// The seed of the initial weights.
    pub seed: u64,
    /// Iterations run.
    pub iterations: usize,
    /// Products of C with a block of k columns (setup included).
    pub passes: usize,
    /// Whether the stopping quantity fell below `tol`.
    pub converged: bool,
    /// Whether the loop stopped at the rounding floor of its precision.
    pub stalled: bool,
    /// The last stopping quantity (null if none was finite).
    pub final_stopping_quantity: Option<f64>,
}

/// The summary's spectrum: the arrays of the .npy files, in f64.
#[derive(Serialize, Debug)]
pub struct SpectrumJson {
    /// σ_i of the centred data.
    pub singular_values: Vec<f64>,
    /// σ_i² / (n − 1).
    pub explained_variance: Vec<f64>,
    /// σ_i² / trace(C).
    pub explained_variance_ratio: Vec<f64>,
}

/// Milliseconds with microsecond resolution.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
