//! Shared test helpers: independent f64 references, principal angles, and the paper's exact data.
#![allow(dead_code)]

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
