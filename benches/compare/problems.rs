//! The problems: their data, their f64 reference and their parameters.

use crate::args::{Args, Plan};
use crate::common;
use crate::measure::Outcome;
use laepca::synthetic::prescribed_spectrum;
use laepca::{GramAccumulator, GramStats, LaePca};
use nalgebra::DMatrix;
use std::time::Instant;

/// The data of a problem, row-major (samples in rows).
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Data {
    pub fn precision(&self) -> &'static str {
        match self {
            Data::F32(_) => "f32",
            Data::F64(_) => "f64",
        }
    }
    pub fn gram(&self, m: usize) -> GramStats {
        let mut acc = GramAccumulator::new(m, true).expect("C fits in memory");
        match self {
            Data::F32(d) => acc.push_rows(d),
            Data::F64(d) => acc.push_rows(d),
        }
        .expect("finite data");
        acc.finish().expect("non-empty data")
    }
    pub fn fit(&self, b: &LaePca, n: usize, m: usize) -> Result<Outcome, laepca::Error> {
        match self {
            Data::F32(d) => b.fit_slice(d, n, m).map(|f| Outcome::of(&f)),
            Data::F64(d) => b.fit_slice(d, n, m).map(|f| Outcome::of(&f)),
        }
    }
    pub fn fit_gram(&self, b: &LaePca, stats: &GramStats) -> Result<Outcome, laepca::Error> {
        match self {
            Data::F32(_) => b.fit_gram::<f32>(stats).map(|f| Outcome::of(&f)),
            Data::F64(_) => b.fit_gram::<f64>(stats).map(|f| Outcome::of(&f)),
        }
    }
    /// The data as f32 (a copy).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Data::F32(d) => d.clone(),
            Data::F64(d) => d.iter().map(|&v| v as f32).collect(),
        }
    }
    pub fn bytes_per_value(&self) -> f64 {
        match self {
            Data::F32(_) => 4.0,
            Data::F64(_) => 8.0,
        }
    }
}

/// The f64 answer a problem is measured against.
pub struct Reference {
    /// m x k, orthonormal columns, by decreasing variance.
    pub directions: DMatrix<f64>,
    pub sigma: Vec<f64>,
    pub evr: Vec<f64>,
    pub how: String,
}

pub struct Problem {
    pub name: String,
    pub family: &'static str,
    pub n: usize,
    pub m: usize,
    pub k: usize,
    pub gap: Option<(String, f64)>,
    pub lambda: Option<f64>,
    pub alpha: Option<f64>,
    pub tol: Option<f64>,
    pub max_iter: usize,
    pub curves: bool,
    pub note: String,
}

/// σ for the prescribed-spectrum problems: the top k fall linearly from 1000 to 700 (so the gradient
/// solvers' default step suits all of them), then `σ_{k+1} = gap · σ_k`, then a tail falling 3% per
/// index, r = min(m, k + 32) values in all: the data has rank r.
pub fn gap_spectrum(m: usize, k: usize, gap: f64) -> Vec<f64> {
    let r = m.min(k + 32);
    let mut s: Vec<f64> = (0..k)
        .map(|i| {
            1000.0
                - if k > 1 {
                    300.0 * i as f64 / (k - 1) as f64
                } else {
                    0.0
                }
        })
        .collect();
    let mut t = s[k - 1] * gap;
    while s.len() < r {
        s.push(t);
        t *= 0.97;
    }
    s
}

/// Top-k eigenpairs of C in f64 as a reference (nalgebra's SymmetricEigen, an independent solver).
pub fn reference_from_gram(c: &DMatrix<f64>, k: usize, how: &str) -> Reference {
    let (vals, vecs) = common::reference_eigen(c, k);
    let trace = c.trace();
    Reference {
        directions: vecs,
        sigma: vals.iter().map(|v| v.max(0.0).sqrt()).collect(),
        evr: vals.iter().map(|v| v / trace).collect(),
        how: how.to_string(),
    }
}

impl Problem {
    /// The builder of laepca's fit of this problem with `solver` (seed 0), with the problem's λ, α and tol
    /// where it sets them.
    pub fn builder(&self, solver: laepca::Solver) -> LaePca {
        LaePca::new(self.k)
            .solver(solver)
            .seed(0)
            .lambda(self.lambda)
            .alpha(self.alpha)
            .tol(self.tol)
    }
}

/// A problem with its data and its reference.
pub struct Case {
    pub problem: Problem,
    pub data: Data,
    pub reference: Reference,
}

/// The paper's problem: m = 10, n = 10000, k = 2, λ = 50, α = 1e-5, tol = 1e-8, f64 like NumPy.
pub fn paper(args: &Args) -> Case {
    let x = common::paper_problem();
    let (n, m) = x.shape();
    let rows: Vec<f64> = x.transpose().as_slice().to_vec();
    let data = Data::F64(rows);
    let stats = data.gram(m);
    let reference = reference_from_gram(&stats.c, 2, "f64 Gram, nalgebra SymmetricEigen");
    let problem = Problem {
        name: "paper".into(),
        family: "paper",
        n,
        m,
        k: 2,
        gap: None,
        lambda: Some(50.0),
        alpha: Some(1e-5),
        tol: Some(1e-8),
        max_iter: 100_000,
        curves: args.plots,
        note: "the paper's algorithms.py problem: NumPy seed 0, X ~ N(0,1), rows centred".into(),
    };
    Case {
        problem,
        data,
        reference,
    }
}

/// A prescribed-spectrum problem before its data is generated.
pub struct SpectrumSpec {
    pub family: &'static str,
    pub m: usize,
    pub k: usize,
    pub gap_name: String,
    pub gap: f64,
}

impl SpectrumSpec {
    pub fn name(&self) -> String {
        format!("spectrum m={} k={} {}", self.m, self.k, self.gap_name)
    }
}

/// Prescribed spectra: a sweep over m at k = 16 and a sweep over k at one m, each with both gaps.
pub fn spectrum_specs(plan: &Plan) -> Vec<SpectrumSpec> {
    let mut specs = Vec::new();
    for (gap_name, gap) in &plan.gaps {
        for &m in &plan.sizes {
            let k = plan.size_k.min(m / 2);
            specs.push(SpectrumSpec {
                family: "size-sweep",
                m,
                k,
                gap_name: gap_name.clone(),
                gap: *gap,
            });
        }
    }
    for (gap_name, gap) in &plan.gaps {
        for &k in &plan.ksweep_ks {
            if 2 * k <= plan.ksweep_m {
                specs.push(SpectrumSpec {
                    family: "k-sweep",
                    m: plan.ksweep_m,
                    k,
                    gap_name: gap_name.clone(),
                    gap: *gap,
                });
            }
        }
    }
    specs
}

/// Generates a prescribed-spectrum problem: n = 4m samples in f32, its exact directions as the reference.
pub fn spectrum(spec: &SpectrumSpec, plan: &Plan) -> Case {
    let SpectrumSpec { family, m, k, .. } = *spec;
    let g = spec.gap;
    let n = 4 * m;
    let sigma = gap_spectrum(m, k, g);
    let t = Instant::now();
    let pre = prescribed_spectrum(n, m, &sigma, 3.0, m as u64 * 100 + k as u64);
    let mut rows = vec![0f32; n * m];
    for (idx, &v) in pre.x.iter().enumerate() {
        // Column-major source, row-major destination.
        rows[(idx % n) * m + idx / n] = v as f32;
    }
    drop(pre.x);
    let total: f64 = sigma.iter().map(|s| s * s).sum();
    let reference = Reference {
        directions: pre.directions.columns(0, k).into_owned(),
        sigma: sigma[..k].to_vec(),
        evr: sigma[..k].iter().map(|s| s * s / total).collect(),
        how: "the prescribed spectrum (exact)".into(),
    };
    let problem = Problem {
        name: spec.name(),
        family,
        n,
        m,
        k,
        gap: Some((spec.gap_name.clone(), g)),
        lambda: None,
        alpha: None,
        tol: None,
        max_iter: plan.prescribed_max_iter,
        curves: false,
        note: format!(
            "n = 4m, rank {}, σ: top k linear 1000 → 700, σ_(k+1)/σ_k = {g}, tail ×0.97; generated in {:.1} s",
            sigma.len(),
            t.elapsed().as_secs_f64()
        ),
    };
    Case {
        problem,
        data: Data::F32(rows),
        reference,
    }
}

/// Fashion-MNIST, pixels / 255 in f32 (scikit-learn's usual preparation), k = 16, read through
/// laepca::io (only the rows the plan uses).
pub fn fashion(args: &Args, plan: &Plan) -> Result<Case, String> {
    let mut reader = laepca::io::Reader::open(&args.fashion).map_err(|e| e.to_string())?;
    let (n_all, m) = (reader.rows(), reader.cols());
    let n = plan.fashion_rows.map_or(n_all, |r| r.min(n_all));
    let mut rows = Vec::<f32>::new();
    let got = reader.read_rows(&mut rows, n).map_err(|e| e.to_string())?;
    if got != n {
        return Err(format!(
            "{}: {got} of {n} rows read",
            args.fashion.display()
        ));
    }
    rows.iter_mut().for_each(|v| *v /= 255.0);
    let wide: Vec<f64> = rows.iter().map(|&v| v as f64).collect();
    let mut acc = GramAccumulator::new(m, true).map_err(|e| e.to_string())?;
    acc.push_rows(&wide).map_err(|e| e.to_string())?;
    let stats = acc.finish().map_err(|e| e.to_string())?;
    drop(wide);
    let reference = reference_from_gram(
        &stats.c,
        16,
        "f64 Gram of the f32 pixels, nalgebra SymmetricEigen",
    );
    let problem = Problem {
        name: if n < n_all {
            format!("fashion-mnist (first {n})")
        } else {
            "fashion-mnist".into()
        },
        family: "fashion",
        n,
        m,
        k: 16,
        gap: None,
        lambda: None,
        alpha: None,
        tol: None,
        max_iter: plan.fashion_max_iter,
        curves: args.plots && plan.fashion_curves,
        note: format!("{}, pixels / 255 as f32", args.fashion.display()),
    };
    Ok(Case {
        problem,
        data: Data::F32(rows),
        reference,
    })
}
