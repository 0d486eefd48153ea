//! The benchmark still works: `cargo bench --bench compare -- --quick` runs (about half a minute on two
//! cores with lavapipe, plus building the bench) and writes the results it promises.
//!
//! LAEPCA_BENCH_BIN names a prebuilt bench binary to run instead of going through cargo.

use laepca::Solver;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn run_quick_bench(out: &Path) {
    let status = match std::env::var_os("LAEPCA_BENCH_BIN") {
        Some(bin) => Command::new(bin)
            .args(["--quick", "--out"])
            .arg(out)
            .status(),
        None => {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            Command::new(cargo)
                .args(["bench", "--bench", "compare", "--manifest-path"])
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
                .args(["--", "--quick", "--out"])
                .arg(out)
                .status()
        }
    }
    .expect("the benchmark starts");
    assert!(status.success(), "the quick benchmark failed: {status}");
}

fn rows(problem: &Value) -> &Vec<Value> {
    problem["rows"].as_array().expect("rows")
}

fn row<'a>(problem: &'a Value, name: &str) -> Option<&'a Value> {
    rows(problem).iter().find(|r| r["name"] == name)
}

#[test]
fn quick_benchmark_writes_every_problem_and_row() {
    let dir = tempfile::tempdir().unwrap();
    run_quick_bench(dir.path());

    let text = std::fs::read_to_string(dir.path().join("results.json")).expect("results.json");
    let report: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(report["quick"], true);
    let problems = report["problems"].as_array().expect("problems");
    let family = |f: &str| problems.iter().filter(|p| p["family"] == f).count();
    assert_eq!(family("paper"), 1, "the paper's problem");
    assert!(family("size-sweep") >= 2, "a sweep over m");
    assert!(family("k-sweep") >= 2, "a sweep over k");
    for gap in ["easy", "hard"] {
        assert!(
            problems.iter().any(|p| p["gap_name"] == gap),
            "a problem with the {gap} gap"
        );
    }
    let fashion_installed =
        Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists()
            || std::env::var_os("LAEPCA_FASHION_MNIST").is_some();
    let notices = report["notices"].as_array().expect("notices");
    if fashion_installed {
        assert_eq!(
            family("fashion"),
            1,
            "Fashion-MNIST is installed: its problem"
        );
    } else {
        assert!(
            notices
                .iter()
                .any(|n| n.as_str().unwrap().contains("Fashion-MNIST skipped")),
            "a notice for the skipped Fashion-MNIST"
        );
    }

    // Every problem has a CPU row per solver and both eigensolvers, all measured.
    for p in problems {
        let mut expected: Vec<String> = Solver::ALL
            .iter()
            .map(|s| format!("cpu {}", s.name()))
            .collect();
        expected.push("faer eigh".into());
        expected.push("nalgebra eigh".into());
        for name in &expected {
            let r = row(p, name).unwrap_or_else(|| panic!("{}: no row '{name}'", p["name"]));
            assert_eq!(r["status"], "ok", "{}: {name}: {}", p["name"], r["note"]);
            let total = r["times_s"]["total"].as_f64().unwrap();
            assert!(
                total > 0.0 && total.is_finite(),
                "{}: {name}: total {total}",
                p["name"]
            );
            let angle = r["accuracy"]["angle"].as_f64().expect("an accuracy");
            assert!(angle.is_finite() && angle >= 0.0);
            if r["implementation"] == "laepca" {
                assert!(r["iterations"].as_u64().unwrap() >= 1);
            }
        }
        // The eigensolvers and the default solver get the answer (the problems are small and
        // well separated; f32 data for all but the paper's problem).
        for name in [
            "faer eigh",
            format!("cpu {}", Solver::default().name()).as_str(),
        ] {
            let r = row(p, name).unwrap();
            if r["converged"] != false {
                let angle = r["accuracy"]["angle"].as_f64().unwrap();
                assert!(angle < 1e-3, "{}: {name}: angle {angle}", p["name"]);
            }
        }
    }

    // With an adapter (CI has lavapipe and sets LAEPCA_REQUIRE_GPU), GPU rows for every solver.
    let want_gpu =
        std::env::var_os("LAEPCA_REQUIRE_GPU").is_some() || !laepca::devices().is_empty();
    if want_gpu {
        assert!(report["adapter"].is_object(), "an adapter was probed");
        let paper = problems.iter().find(|p| p["family"] == "paper").unwrap();
        for s in Solver::ALL {
            let name = format!("gpu {}", s.name());
            let r = row(paper, &name).unwrap_or_else(|| panic!("paper: no row '{name}'"));
            assert_eq!(r["status"], "ok", "paper: {name}: {}", r["note"]);
            assert!(r["gpu_cpu_total"].as_f64().unwrap() > 0.0);
        }
    }

    // The plots and the markdown report.
    let plots: Vec<&str> = report["plots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for plot in ["error_paper.svg", "time_vs_m.svg"] {
        assert!(plots.contains(&plot), "plot {plot} in {plots:?}");
    }
    for plot in &plots {
        let svg = std::fs::read_to_string(dir.path().join(plot)).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("polyline"),
            "{plot} has lines"
        );
    }
    let curves = report["curves"].as_array().unwrap();
    assert!(
        curves.len() >= Solver::ALL.len(),
        "an error curve per solver on the paper's problem"
    );
    let md = std::fs::read_to_string(dir.path().join("results.md")).unwrap();
    assert!(md.contains("| row |") && md.contains("cpu exact-tied"));
}
