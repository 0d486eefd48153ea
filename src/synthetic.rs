//! Matrices with a prescribed spectrum, for tests, the demo and the benchmark.
//!
//! As LAPACK's test generators do, `X = U diag(σ) Vᵀ + 1 μᵀ` with U and V drawn uniformly (Haar) from the
//! orthonormal matrices. U is drawn orthogonal to the all-ones vector, so that the *centred* data has
//! exactly the singular values σ and right singular vectors V: the answer is known before any solver runs.

use crate::rng::Rng;
use crate::sparse::CsrMatrix;
use nalgebra::DMatrix;

/// A data matrix with a known answer.
#[derive(Clone, Debug)]
pub struct Prescribed {
    /// The data, n_samples x n_features (samples in rows).
    pub x: DMatrix<f64>,
    /// The principal directions, n_features x r, in the order of `sigma`.
    pub directions: DMatrix<f64>,
    /// The singular values of the centred data, as given.
    pub sigma: Vec<f64>,
}

/// An n x r matrix with orthonormal columns, Haar-distributed (QR of a Gaussian matrix with the signs of
/// R's diagonal moved into Q); with `orthogonal_to_ones`, also orthogonal to the all-ones vector.
pub fn random_orthonormal(
    n: usize,
    r: usize,
    orthogonal_to_ones: bool,
    rng: &mut Rng,
) -> DMatrix<f64> {
    let mut g = DMatrix::from_vec(n, r, rng.normals(n * r));
    if orthogonal_to_ones {
        for mut col in g.column_iter_mut() {
            let mean = col.mean();
            col.add_scalar_mut(-mean);
        }
    }
    let qr = g.qr();
    let (mut q, rmat) = (qr.q(), qr.r());
    for j in 0..r {
        if rmat[(j, j)] < 0.0 {
            q.column_mut(j).neg_mut();
        }
    }
    q
}

/// `n_samples x n_features` data whose centred form has singular values `sigma` (r = sigma.len() values,
/// r ≤ min(n_samples − 1, n_features)), plus the constant row `mean` (every feature's mean, e.g. 1000.0
/// to test centring).
///
/// # Panics
/// If `sigma.len() > min(n_samples - 1, n_features)`: this is a test generator, not a user-input path.
pub fn prescribed_spectrum(
    n_samples: usize,
    n_features: usize,
    sigma: &[f64],
    mean: f64,
    seed: u64,
) -> Prescribed {
    let r = sigma.len();
    assert!(
        r < n_samples && r <= n_features,
        "need sigma.len() <= min(n - 1, m)"
    );
    let mut rng = Rng::new(seed);
    let u = random_orthonormal(n_samples, r, true, &mut rng);
    let v = random_orthonormal(n_features, r, false, &mut rng);
    let mut us = u;
    for (j, &s) in sigma.iter().enumerate() {
        us.column_mut(j).scale_mut(s);
    }
    let mut x = us * v.transpose();
    x.add_scalar_mut(mean);
    Prescribed {
        x,
        directions: v,
        sigma: sigma.to_vec(),
    }
}

/// σ_i = σ_1 · ratio^(i−1): a geometric spectrum with a constant gap σ_{i+1}/σ_i = ratio.
pub fn geometric_spectrum(r: usize, sigma1: f64, ratio: f64) -> Vec<f64> {
    (0..r).map(|i| sigma1 * ratio.powi(i as i32)).collect()
}

/// A sparse count matrix like single-cell data, n x m in f32: each row stores about `density·m` entries,
/// in columns drawn with a popularity that falls like `1/sqrt(j + 1)` (as genes' expression does),
/// values 1 + a geometric count, and one in ten rows of a second kind that prefers the last tenth of the
/// columns, so that the spectrum has structure. The same `seed` gives the same matrix.
///
/// # Panics
/// If `m == 0` or `m > 2³²`: this is a test generator, not a user-input path.
pub fn sparse_counts(n: usize, m: usize, density: f64, seed: u64) -> CsrMatrix<f32> {
    assert!(m > 0 && m <= 1 << 32, "need 0 < m <= 2^32");
    let mut rng = Rng::new(seed);
    let per_row = (density * m as f64).max(1.0);
    let mut indptr = Vec::with_capacity(n + 1);
    let mut indices: Vec<u32> = Vec::with_capacity((n as f64 * per_row * 1.05) as usize);
    let mut values: Vec<f32> = Vec::with_capacity(indices.capacity());
    indptr.push(0);
    let mut row: Vec<u32> = Vec::new();
    for i in 0..n {
        let count = (per_row * (0.5 + rng.uniform())).round() as usize;
        row.clear();
        for _ in 0..count {
            // Inverse CDF of a density ∝ 1/sqrt(j + 1) on [0, m): j = m·u².
            let u = rng.uniform();
            let mut j = ((m as f64) * u * u) as usize;
            if i % 10 == 0 {
                j = m - 1 - j / 10;
            }
            row.push(j.min(m - 1) as u32);
        }
        row.sort_unstable();
        row.dedup();
        for &j in &row {
            let mut v = 1.0f32;
            while rng.uniform() < 0.4 {
                v += 1.0;
            }
            indices.push(j);
            values.push(v);
        }
        indptr.push(indices.len());
    }
    CsrMatrix::try_new(n, m, indptr, indices, values).expect("a valid CSR matrix")
}
