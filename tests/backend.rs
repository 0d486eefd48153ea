//! The backend decision: the command line takes the library's (one decision, one device for every
//! phase), a bogus adapter name is an error or a CPU fall-back and never a panic, and a fit that ends on
//! the CPU prints no driver noise and each warning once.

use laepca::synthetic::{geometric_spectrum, prescribed_spectrum};
use laepca::{Backend, LaePca};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;

/// Held by each test: one of them sets WGPU_ADAPTER_NAME in this process, which the other reads.
static ENV: Mutex<()> = Mutex::new(());

fn laepca() -> Command {
    Command::new(env!("CARGO_BIN_EXE_laepca"))
}

/// 200 x 6 f32 samples, as a matrix and as a .npy file in `dir`.
fn data(dir: &Path) -> (nalgebra::DMatrix<f32>, String) {
    let x = prescribed_spectrum(200, 6, &geometric_spectrum(6, 20.0, 0.7), 2.0, 3)
        .x
        .map(|v| v as f32);
    let rows: Vec<f32> = x.transpose().iter().copied().collect();
    let path = dir.join("x.npy");
    laepca::io::write_npy(&path, &[200, 6], &rows).unwrap();
    (x, path.to_string_lossy().into_owned())
}

/// `laepca fit FILE -k 2 --json` with `--backend backend` and the environment `env`.
fn cli_fit(file: &str, out: &Path, backend: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = laepca();
    cmd.args(["fit", file, "-k", "2", "--json", "--backend", backend, "-o"])
        .arg(out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cli_and_library_take_the_same_decision() {
    let _env = ENV.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (x, file) = data(dir.path());
    for backend in [Backend::Auto, Backend::Cpu] {
        let output = cli_fit(&file, &dir.path().join("out"), backend.name(), &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
        // The library's decision, in this process (same environment).
        let decided = LaePca::new(2).backend(backend).choose_device().unwrap();
        let fit = LaePca::new(2).backend(backend).fit(&x).unwrap();
        assert_eq!(fit.backend.name(), summary["backend"], "{backend:?}");
        assert_eq!(
            decided.as_ref().map(|d| d.info().name.clone()),
            fit.adapter.as_ref().map(|a| a.name.clone())
        );
        assert_eq!(
            summary["adapter"]["name"].as_str(),
            fit.adapter.as_ref().map(|a| a.name.as_str()),
            "{backend:?}"
        );
        // Every device phase on that one backend.
        for phase in ["gram", "iterate"] {
            assert_eq!(summary["phases"][phase], summary["backend"], "{phase}");
        }
        assert_eq!(summary["backend_requested"], backend.name());
        // Ending on the CPU: no Mesa Wayland noise on stderr.
        if fit.backend == Backend::Cpu {
            assert!(
                !stderr(&output).contains("XDG_RUNTIME_DIR"),
                "{}",
                stderr(&output)
            );
        }
    }
}

#[test]
fn bogus_adapter_name_never_panics() {
    let _env = ENV.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (x, file) = data(dir.path());
    let bogus = [("WGPU_ADAPTER_NAME", "bogus-adapter-xyz")];
    // auto and cpu fit on the CPU; gpu is one clear error line.
    for (backend, ok) in [("auto", true), ("cpu", true), ("gpu", false)] {
        let output = cli_fit(&file, &dir.path().join(backend), backend, &bogus);
        let err = stderr(&output);
        assert!(
            !err.contains("panicked") && !err.contains("internal error"),
            "{backend}: {err}"
        );
        assert_eq!(output.status.success(), ok, "{backend}: {err}");
        if ok {
            let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(summary["backend"], "cpu", "{backend}");
            // One warning at most (auto's fall-back), not one per phase.
            assert!(err.matches("WARN").count() <= 1, "{backend}: {err}");
        } else {
            assert_eq!(output.status.code(), Some(1), "{err}");
            assert!(
                err.contains("bogus-adapter-xyz") && err.lines().count() == 1,
                "{err}"
            );
        }
    }
    let output = laepca().arg("demo").envs(bogus).output().unwrap();
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The library: an error with Gpu, the CPU with Auto.
    std::env::set_var("WGPU_ADAPTER_NAME", "bogus-adapter-xyz");
    let gpu = LaePca::new(2).backend(Backend::Gpu).fit(&x);
    let auto = LaePca::new(2).backend(Backend::Auto).fit(&x);
    std::env::remove_var("WGPU_ADAPTER_NAME");
    assert!(matches!(gpu, Err(laepca::Error::NoAdapter(_))), "{gpu:?}");
    assert_eq!(auto.unwrap().backend, Backend::Cpu);
}
