//! Temporary outputs that must not outlive the run: removed when the run drops them, when it is
//! stopped by SIGINT, SIGTERM or SIGHUP, and, for runs killed outright (kill -9, power loss), by the next
//! run, which removes the temporary files of processes that no longer exist.
//!
//! Every temporary name carries its process id: `.{name}.{tag}-{pid}-{n}`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The temporary paths of this process (directories or files), removed on a signal.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Set once a signal was received, before its removals begin.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Whether the process is ending by a signal: its temporary paths are being removed under the other
/// threads, so a failure to write into them is no error to report (the signal thread ends the
/// process by the signal itself).
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

/// A registered temporary path: removed (recursively) when dropped, unless [`Temp::keep`] took it.
pub struct Temp {
    path: Option<PathBuf>,
}

impl Temp {
    /// Registers `path` (not created here) for removal.
    pub fn register(path: PathBuf) -> Temp {
        if let Ok(mut p) = PENDING.lock() {
            p.push(path.clone());
        }
        Temp { path: Some(path) }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Forgets the path: it is no longer removed (it was renamed into place).
    pub fn keep(mut self) {
        if let Some(path) = self.path.take() {
            unregister(&path);
        }
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            remove(&path);
            unregister(&path);
        }
    }
}

fn unregister(path: &Path) {
    if let Ok(mut p) = PENDING.lock() {
        p.retain(|q| q != path);
    }
}

/// Removes a temporary file or directory, ignoring errors (it may be gone already). A directory is
/// first renamed to `{path}.dead`, so that no thread can create files in it any more, then emptied
/// entry by entry (another thread removing the same entries is no obstacle) and removed.
fn remove(path: &Path) {
    let mut dead = path.as_os_str().to_owned();
    dead.push(".dead");
    let dead = PathBuf::from(dead);
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            if std::fs::rename(path, &dead).is_err() {
                remove_tree(path);
            }
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
    // Also when another thread renamed it first.
    remove_tree(&dead);
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let p = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir_all(&p);
            } else {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A temporary name for `name` in `dir`: `.{name}.{tag}-{pid}-{n}`.
pub fn temp_name(dir: &Path, name: &str, tag: &str) -> PathBuf {
    use std::sync::atomic::AtomicUsize;
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{tag}-{}-{n}", std::process::id()))
}

/// The process id in a temporary name `.{name}.{tag}-{pid}-{n}` (None: not one of ours).
fn owner(file_name: &str, name: &str, tag: &str) -> Option<u32> {
    let rest = file_name.strip_prefix(&format!(".{name}.{tag}-"))?;
    let (pid, n) = rest.split_once('-')?;
    // The counter, possibly followed by a suffix (".old" of a directory moved aside).
    if !n.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether `file_name` is a temporary name of `name` with `tag` (any process).
pub fn is_temp_of(file_name: &str, name: &str, tag: &str) -> bool {
    owner(file_name, name, tag).is_some()
}

/// Whether a process exists (unix: `kill(pid, 0)`; elsewhere every process is taken as alive).
fn alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Removes the temporary files and directories of `name` with `tag` in `dir` whose process is gone;
/// returns how many.
pub fn remove_stale(dir: &Path, name: &str, tag: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = owner(&file_name.to_string_lossy(), name, tag) else {
            continue;
        };
        if pid != std::process::id() && !alive(pid) {
            log::info!(
                "removing {} (left by a run that was killed)",
                entry.path().display()
            );
            remove(&entry.path());
            removed += 1;
        }
    }
    removed
}

/// Installs the handling of SIGINT, SIGTERM and SIGHUP: the signals are blocked in every thread and
/// one thread waits for them, removes the registered temporary paths and ends the process by the same
/// signal (its exit status says which). Call it first, before any other thread starts.
pub fn install() {
    #[cfg(unix)]
    // SAFETY: plain libc calls on a sigset this function owns; the mask is set before other threads
    // exist, so they all inherit it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        let waiter = move || {
            let mut sig: libc::c_int = 0;
            if libc::sigwait(&set, &mut sig) != 0 {
                return;
            }
            SIGNALLED.store(true, Ordering::SeqCst);
            if let Ok(paths) = PENDING.lock() {
                for p in paths.iter() {
                    remove(p);
                }
            }
            // Die of the signal itself (the default action), as an uncaught signal would.
            libc::signal(sig, libc::SIG_DFL);
            let mut one: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut one);
            libc::sigaddset(&mut one, sig);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
            libc::raise(sig);
            libc::_exit(128 + sig);
        };
        let spawned = std::thread::Builder::new()
            .name("signals".to_string())
            .spawn(waiter);
        if spawned.is_err() {
            // No thread to take them: let the signals act as before.
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_and_stale_removal() {
        let dir = tempfile::tempdir().unwrap();
        let t = temp_name(dir.path(), "out", "laepca");
        let file = t.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(owner(&file, "out", "laepca"), Some(std::process::id()));
        assert!(!is_temp_of(&file, "other", "laepca"));
        assert!(!is_temp_of(".out.laepca-12-x", "out", "laepca"));
        // A dead process's directory goes, a live one's (ours) stays.
        let dead = dir.path().join(format!(".out.laepca-{}-0", u32::MAX - 1));
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("components.npy"), b"x").unwrap();
        std::fs::create_dir(&t).unwrap();
        assert_eq!(remove_stale(dir.path(), "out", "laepca"), 1);
        assert!(!dead.exists() && t.exists());
        // Dropping the registration removes the tree; keep() does not.
        let reg = Temp::register(t.clone());
        drop(reg);
        assert!(!t.exists());
        std::fs::create_dir(&t).unwrap();
        Temp::register(t.clone()).keep();
        assert!(t.exists());
    }
}
