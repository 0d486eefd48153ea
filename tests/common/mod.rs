//! Shared test helpers: independent f64 references, principal angles, and the paper's exact data.
#![allow(dead_code)]

pub mod files;

use nalgebra::{DMatrix, SymmetricEigen};

/// Whether a GPU adapter exists; panics when none does and LAEPCA_REQUIRE_GPU is set.
pub fn have_gpu() -> bool {
    if !laepca::devices().is_empty() {
        return true;
    }
    if std::env::var_os("LAEPCA_REQUIRE_GPU").is_some() {
        panic!("LAEPCA_REQUIRE_GPU is set but wgpu finds no adapter (is mesa-vulkan-drivers installed?)");
    }
    eprintln!("no GPU adapter: skipping");
    false
}

/// The top-k eigenpairs of C in f64 (nalgebra's SymmetricEigen): (values descending, vectors m x k).
pub fn reference_eigen(c: &DMatrix<f64>, k: usize) -> (Vec<f64>, DMatrix<f64>) {
    let eig = SymmetricEigen::new(c.clone());
    let mut order: Vec<usize> = (0..c.nrows()).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let vals = order[..k].iter().map(|&i| eig.eigenvalues[i]).collect();
    let vecs = DMatrix::from_fn(c.nrows(), k, |r, j| eig.eigenvectors[(r, order[j])]);
    (vals, vecs)
}

/// The centred Gram matrix of samples-in-rows data, in f64, the plain two-pass way.
pub fn centred_gram(x: &DMatrix<f64>) -> DMatrix<f64> {
    let mut xc = x.clone();
    for mut col in xc.column_iter_mut() {
        let mean = col.mean();
        col.add_scalar_mut(-mean);
    }
    xc.transpose() * xc
}

/// Orthonormal basis of the columns of `a` (thin QR).
pub fn orthonormal(a: &DMatrix<f64>) -> DMatrix<f64> {
    a.clone().qr().q()
}

/// The largest principal angle (radians) between span(a) and span(b), both m x k with orthonormal
/// columns: `asin ‖(I − AAᵀ) B‖₂`, accurate for small angles (unlike `acos` of the cosines).
pub fn largest_principal_angle(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    let residual = b - a * (a.transpose() * b);
    let s = residual.singular_values();
    s.max().min(1.0).asin()
}

/// The angle between two unit vectors, sign-blind.
pub fn vector_angle(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let sa: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| if dot >= 0.0 { y - x } else { y + x })
        .collect();
    let d = sa.iter().map(|v| v * v).sum::<f64>().sqrt();
    2.0 * (0.5 * d).min(1.0).asin()
}

/// scikit-learn's sign convention: the entry of largest magnitude of each component (row) is positive.
pub fn assert_sign_convention<T: laepca::Real>(components: &DMatrix<T>) {
    for (i, row) in components.row_iter().enumerate() {
        let big =
            row.iter().map(|v| v.as_f64()).fold(
                0.0f64,
                |a, v| {
                    if v.abs() > a.abs() {
                        v
                    } else {
                        a
                    }
                },
            );
        assert!(big > 0.0, "component {i} has a negative largest entry");
    }
}

/// Components (k x m, any float) as an m x k f64 matrix of columns.
pub fn columns<T: laepca::Real>(components: &DMatrix<T>) -> DMatrix<f64> {
    components.transpose().map(|v| v.as_f64())
}

/// NumPy's legacy MT19937 generator with its polar-method normals, so that the paper's problem
/// (`np.random.seed(0); X = np.random.normal(size=(10, 10000))`) is rebuilt bit for bit.
pub struct NumpyLegacy {
    mt: [u32; 624],
    idx: usize,
    cached: Option<f64>,
}

impl NumpyLegacy {
    pub fn new(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = seed;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        NumpyLegacy {
            mt,
            idx: 624,
            cached: None,
        }
    }

    fn next_u32(&mut self) -> u32 {
        if self.idx >= 624 {
            for i in 0..624 {
                let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.mt[i] = v;
            }
            self.idx = 0;
        }
        let mut y = self.mt[self.idx];
        self.idx += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn next_double(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    pub fn normal(&mut self) -> f64 {
        if let Some(g) = self.cached.take() {
            return g;
        }
        loop {
            let x1 = 2.0 * self.next_double() - 1.0;
            let x2 = 2.0 * self.next_double() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.cached = Some(f * x1);
                return f * x2;
            }
        }
    }
}

/// The paper's error measure: Σ_i min ‖u_i ± û_i‖ over the columns.
pub fn paper_error(u: &DMatrix<f64>, reference: &DMatrix<f64>) -> f64 {
    (0..u.ncols())
        .map(|i| {
            let (a, b) = (u.column(i), reference.column(i));
            (a - b).norm().min((a + b).norm())
        })
        .sum()
}

/// The paper's problem as its `algorithms.py` builds it: X (m = 10 x n = 10000, features in rows, rows
/// centred), returned as n x m samples in rows.
pub fn paper_problem() -> DMatrix<f64> {
    let (m, n) = (10, 10000);
    let mut rng = NumpyLegacy::new(0);
    let mut x = DMatrix::from_fn(n, m, |_, _| 0.0);
    for f in 0..m {
        for s in 0..n {
            x[(s, f)] = rng.normal();
        }
    }
    for mut col in x.column_iter_mut() {
        let mean = col.mean();
        col.add_scalar_mut(-mean);
    }
    x
}

/// scikit-learn's digits (1797 x 64, pixels 0..16): `tests/data/digits.csv.gz`, a copy of the file
/// scikit-learn ships (the test set of the UCI optical-digits data; one image a line, the label last).
pub fn digits() -> DMatrix<f64> {
    use std::io::Read;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/digits.csv.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("tests/data/digits.csv.gz"))
        .read_to_string(&mut text)
        .expect("digits.csv.gz is gzip text");
    let rows: Vec<Vec<f64>> = text
        .lines()
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    DMatrix::from_fn(rows.len(), 64, |i, j| rows[i][j])
}

/// Fashion-MNIST train images (60000 x 784, pixels / 255) when the Debian package is installed, read
/// through laepca::io.
pub fn fashion_mnist() -> Option<DMatrix<f32>> {
    let path = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
    if !std::path::Path::new(path).exists() {
        return None;
    }
    let x = laepca::io::read_matrix::<f32>(path).expect("the installed Fashion-MNIST reads");
    Some(x.to_dmatrix().map(|v| v / 255.0))
}

/// An orthonormal basis of the columns of `a` that carry more than `1e-10` of its largest singular
/// value (the others are dropped).
fn orthonormal_dropping(a: &DMatrix<f64>) -> DMatrix<f64> {
    let svd = a.clone().svd(true, false);
    let u = svd.u.expect("asked for U");
    let top = svd.singular_values.max();
    let keep: Vec<usize> = (0..svd.singular_values.len())
        .filter(|&i| svd.singular_values[i] > 1e-10 * top)
        .collect();
    DMatrix::from_fn(a.nrows(), keep.len(), |r, j| u[(r, keep[j])])
}

/// A reference LOBPCG in f64 (Knyazev 2001, block k, no locking): X ← the top-k Ritz vectors of C on
/// span[X, CX − X(XᵀCX), X_prev], the basis orthonormalised by an SVD. Returns the iterate after each
/// pass over C: `out[t]` after t + 1 passes (the first is `C X₀`; LOBPCG needs one per iteration, C X
/// and C P following from the small Ritz coefficients; this reference multiplies the whole basis by C
/// for simplicity, which changes no iterate).
pub fn reference_lobpcg(c: &DMatrix<f64>, k: usize, passes: usize, seed: u64) -> Vec<DMatrix<f64>> {
    let m = c.nrows();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut uniform = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64 - 0.5
    };
    let ritz = |s: &DMatrix<f64>| {
        let h = s.transpose() * c * s;
        let eig = SymmetricEigen::new(h);
        let mut order: Vec<usize> = (0..s.ncols()).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let y = DMatrix::from_fn(s.ncols(), k, |r, j| eig.eigenvectors[(r, order[j])]);
        s * y
    };
    let mut x = ritz(&orthonormal_dropping(&DMatrix::from_fn(m, k, |_, _| {
        uniform()
    })));
    let mut prev: Option<DMatrix<f64>> = None;
    let mut out = vec![x.clone()];
    while out.len() < passes {
        let cx = c * &x;
        let r = &cx - &x * (x.transpose() * &cx);
        let mut blocks = vec![x.clone(), r];
        blocks.extend(prev.take());
        let s = DMatrix::from_columns(
            &blocks
                .iter()
                .flat_map(|b| b.column_iter().map(|c| c.into_owned()))
                .collect::<Vec<_>>(),
        );
        let next = ritz(&orthonormal_dropping(&s));
        prev = Some(x);
        x = next;
        out.push(x.clone());
    }
    out
}

/// The first pass count after which `angles` (indexed by passes − 1) stays at or below `target`.
pub fn passes_to(angles: &[f64], target: f64) -> Option<usize> {
    (0..angles.len())
        .find(|&i| angles[i..].iter().all(|&a| a <= target))
        .map(|i| i + 1)
}

/// The benchmark's hard-gap spectrum (benches/compare/problems.rs, `gap_spectrum` with gap 0.98): the top k
/// falling linearly from 1000 to 700, `σ_{k+1} = 0.98 σ_k`, then a tail falling 3% per index, rank
/// min(m, k + 32).
pub fn hard_gap_spectrum(m: usize, k: usize) -> Vec<f64> {
    let r = m.min(k + 32);
    let mut s: Vec<f64> = (0..k)
        .map(|i| 1000.0 - 300.0 * i as f64 / (k.max(2) - 1) as f64)
        .collect();
    let mut t = s[k - 1] * 0.98;
    while s.len() < r {
        s.push(t);
        t *= 0.97;
    }
    s
}

/// (resident, peak resident) memory of this process in bytes, from /proc/self/status.
pub fn resident() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
