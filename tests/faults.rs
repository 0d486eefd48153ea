//! Faults around the result directory: a child killed (SIGKILL) while it writes, SIGTERM, SIGINT and
//! SIGHUP in the write phase and in the fit, concurrent fits into one directory, stale temporary
//! directories of dead runs, and a run without --scores after one with it. After each, the output
//! directory holds one run's complete result set (old or new, never a mix) and no temporary litter
//! is left beside it. (A rename that fails is injected in the unit tests of src/cli/output.rs.)
#![cfg(unix)]

mod common;

use common::files::*;
use laepca::io::read_npy;
use nalgebra::DMatrix;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn laepca(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_laepca"));
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// A scratch directory with `n x m` float32 data in it (x.npy) and an empty `results/` for the
/// output `results/out`: (scratch, input, results, out).
fn setup(n: usize, m: usize) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let x = DMatrix::from_fn(n, m, |i, j| {
        (((i * 7919 + j * 104_729 + i * j) % 1000) as f64) * (1.0 + j as f64)
    });
    let input = dir.path().join("x.npy");
    write_f32_npy(&input, &x);
    let parent = dir.path().join("results");
    std::fs::create_dir(&parent).unwrap();
    let out = parent.join("out");
    (dir, input, parent, out)
}

fn fit_args<'a>(input: &'a str, out: &'a str, k: &'a str) -> Vec<&'a str> {
    vec![
        "fit",
        input,
        "-k",
        k,
        "-o",
        out,
        "--backend",
        "cpu",
        "--scores",
    ]
}

/// The k of a complete, consistent result set in `dir` (every file of summary.json there and no
/// other, every array of that k); panics otherwise.
fn result_set(dir: &Path) -> usize {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let k = summary["k"].as_u64().unwrap() as usize;
    let mut listed: Vec<String> = summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    let mut present: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    present.sort();
    assert_eq!(listed, present, "{}", dir.display());
    let comps = read_npy::<f64>(dir.join("components.npy")).unwrap();
    assert_eq!(comps.shape[0], k);
    let sv = read_npy::<f64>(dir.join("singular_values.npy")).unwrap();
    let from_summary: Vec<f64> = summary["singular_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(sv.data.len(), k);
    for (a, b) in sv.data.iter().zip(&from_summary) {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs(),
            "{a} vs {b}: two runs mixed"
        );
    }
    if dir.join("scores.npy").exists() {
        assert_eq!(read_npy::<f32>(dir.join("scores.npy")).unwrap().shape[1], k);
    }
    k
}

/// Hidden entries beside the output (staging directories, temporary files).
fn litter(parent: &Path) -> Vec<String> {
    std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// Waits until the child's staging directory appears beside `out` (its write phase began); false
/// if the child ended first.
fn wait_for_write_phase(child: &mut Child, parent: &Path) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if !litter(parent).is_empty() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    panic!("the fit did not reach its write phase in 60 s");
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sends a signal to our own child.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(r, 0);
}

#[test]
fn killed_and_signalled_runs_leave_a_complete_set_and_no_litter() {
    use std::os::unix::process::ExitStatusExt;
    // An input whose --scores pass takes a while: 400000 x 8 float32 (12.8 MB).
    let (_dir, input, parent, out) = setup(400_000, 8);
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    assert!(laepca(&fit_args(i, o, "2")).status().unwrap().success());
    assert_eq!(result_set(&out), 2);

    // SIGKILL in the write phase: the old set stays whole; the staging directory is left (nothing
    // can remove it) and the next run removes it.
    let mut child = laepca(&fit_args(i, o, "3")).spawn().unwrap();
    let reached = wait_for_write_phase(&mut child, &parent);
    signal(&child, libc::SIGKILL);
    let status = child.wait().unwrap();
    // The old set, unless the kill came after the switch (then the new one, complete).
    let k = result_set(&out);
    assert!(k == 2 || k == 3, "k = {k}");
    if reached && status.signal() == Some(libc::SIGKILL) {
        assert!(litter(&parent).len() <= 1, "{:?}", litter(&parent));
    }
    assert!(laepca(&fit_args(i, o, "4")).status().unwrap().success());
    assert_eq!(result_set(&out), 4);
    assert!(litter(&parent).is_empty(), "{:?}", litter(&parent));

    // SIGTERM, SIGINT, SIGHUP in the write phase: the run dies of the signal and removes its staging
    // directory; the old set stays.
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let mut child = laepca(&fit_args(i, o, "1")).spawn().unwrap();
        let reached = wait_for_write_phase(&mut child, &parent);
        signal(&child, sig);
        let status = child.wait().unwrap();
        assert!(
            status.signal() == Some(sig) || status.success(),
            "signal {sig}: {status:?} (reached the write phase: {reached})"
        );
        assert!(
            litter(&parent).is_empty(),
            "signal {sig}: {:?}",
            litter(&parent)
        );
        // The old set, or (a signal after the switch, or a run that had ended) the new one.
        match result_set(&out) {
            4 => {}
            1 => assert!(laepca(&fit_args(i, o, "4")).status().unwrap().success()),
            k => panic!("signal {sig}: k = {k}"),
        }
    }

    // A signal during the fit itself (before any output exists).
    let mut child = laepca(&fit_args(i, o, "5")).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    assert!(status.signal() == Some(libc::SIGTERM) || status.success());
    result_set(&out);
    assert!(litter(&parent).is_empty(), "{:?}", litter(&parent));
}

#[test]
fn concurrent_fits_into_one_directory_never_mix() {
    let (_dir, input, parent, out) = setup(3000, 10);
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    for round in 0..3 {
        let ks = ["1", "2", "3", "4", "5", "6"];
        let children: Vec<Child> = ks
            .iter()
            .map(|k| laepca(&fit_args(i, o, k)).spawn().unwrap())
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success(), "round {round}");
        }
        let k = result_set(&out);
        assert!((1..=6).contains(&k));
        assert!(
            litter(&parent).is_empty(),
            "round {round}: {:?}",
            litter(&parent)
        );
    }
}

#[test]
fn stale_temporaries_are_removed_and_old_extras_do_not_survive() {
    let (_dir, input, parent, out) = setup(200, 6);
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let mut with_plots = fit_args(i, o, "2");
    with_plots.push("--plot");
    assert!(laepca(&with_plots).status().unwrap().success());
    assert!(out.join("scores.npy").exists() && out.join("scree.svg").exists());
    // Litter of killed runs: a staging directory and a temporary file of an older version inside
    // the output (process 4000000000 does not exist); a live process's staging directory stays.
    let dead = parent.join(".out.laepca-4000000000-0");
    std::fs::create_dir(&dead).unwrap();
    std::fs::write(dead.join("components.npy"), b"half").unwrap();
    std::fs::write(out.join(".mean.npy.tmp-4000000000-3"), b"half").unwrap();
    let live = parent.join(format!(".out.laepca-{}-0", std::process::id()));
    std::fs::create_dir(&live).unwrap();
    // Without --scores and --plot: the earlier scores and plots are gone with the earlier set.
    assert!(laepca(&["fit", i, "-k", "3", "-o", o, "--backend", "cpu"])
        .status()
        .unwrap()
        .success());
    assert_eq!(result_set(&out), 3);
    assert!(!out.join("scores.npy").exists() && !out.join("scree.svg").exists());
    assert!(!dead.exists());
    assert!(live.exists());
    std::fs::remove_dir(&live).unwrap();
    assert!(litter(&parent).is_empty(), "{:?}", litter(&parent));
    // A directory holding a file fit did not write is refused before anything is computed.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let o2 = laepca(&["fit", i, "-k", "3", "-o", o, "--backend", "cpu"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(o2.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o2.stderr).contains("holds notes.txt"));
    assert!(out.join("notes.txt").exists());
}
