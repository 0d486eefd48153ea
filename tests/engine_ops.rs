//! Every `Engine` operation on every engine (the CPU engine in f64 and in f32, and the GPU engine on
//! whatever adapter wgpu finds: lavapipe in CI), on the same random inputs, against an independent f64
//! reference (nalgebra), and the engine limits on each. Without an adapter the GPU engine is left out,
//! unless LAEPCA_REQUIRE_GPU is set: then the tests fail.
//!
//! Tolerances. Every input is rounded to f32 first, so all engines get exactly the same numbers and the
//! reference sees what they see; what is left is the engines' arithmetic. Each f32 operation is taken
//! to err by at most ε = f32::EPSILON relatively (twice the unit roundoff: Vulkan rounds +, −, ×
//! correctly, and allows 2.5 ulps for a division; the kernels' divisions are counted separately where
//! they occur). A sum of n products then errs by at most γ_n·Σ|aᵢ||bᵢ| with γ_n = n·ε (to first order,
//! whatever the summation order: the GPU's tree sums and tiles are covered too), which gives the
//! element-wise bounds `(|A|·|B|)·n·ε` of the products below; the other operations' bounds are derived
//! where they are checked. A wrong kernel (a transposed operand, a wrong block, a lost term) errs by
//! O(1), far above every bound.

mod common;

use common::have_gpu;
use laepca::internals::{
    cpu_engine, gpu_engine, gpu_engine_in, gpu_engine_with_jacobi_budget, Coef, Engine, Scalar,
    Tall, MAX_COMBINE_TERMS, MAX_SCALARS, MAX_STOP_PAIRS, MAX_UNREAD_CHECKS, SEARCH_BLOCKS,
};
use laepca::{Arithmetic, EngineStats, Error, GpuDevice};
use nalgebra::{DMatrix, SymmetricEigen};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Features: not a multiple of 4, so the GPU's padded rows are exercised.
const M: usize = 13;
/// Components.
const K: usize = 3;
/// The GPU's row stride (M padded to a multiple of 4): its reductions run over MP·K elements.
const MP: usize = M.div_ceil(4) * 4;
/// The relative error of one f32 operation (see the module comment).
const EPS: f64 = f32::EPSILON as f64;

/// A rows x cols matrix of standard normal values rounded to f32 (seeded).
fn random(rows: usize, cols: usize, seed: u64) -> DMatrix<f64> {
    let mut rng = laepca::rng::Rng::new(seed);
    DMatrix::from_fn(rows, cols, |_, _| rng.normal() as f32 as f64)
}

/// A random symmetric m x m matrix (the engines' C).
fn random_c(m: usize) -> DMatrix<f64> {
    let a = random(m, m, 1);
    (&a + a.transpose()).map(|v| (v / 2.0) as f32 as f64)
}

/// Runs `f` on each engine (name, engine): CPU f64, CPU f32, and the GPU when there is one (in f32,
/// and in f64 where it has f64 shaders; the f32 bounds hold for both).
fn each_engine(check_every: usize, f: impl FnMut(&str, &mut dyn Engine)) {
    each_engine_sized(M, K, check_every, f)
}

/// [`each_engine`] with m features and blocks of k columns.
fn each_engine_sized(
    m: usize,
    k: usize,
    check_every: usize,
    mut f: impl FnMut(&str, &mut dyn Engine),
) {
    let c = random_c(m);
    let device = have_gpu().then(|| GpuDevice::open(None).expect("open the adapter"));
    let mut engines: Vec<(&str, Box<dyn Engine + '_>)> = vec![
        ("cpu f64", cpu_engine::<f64>(&c, k, check_every)),
        ("cpu f32", cpu_engine::<f32>(&c, k, check_every)),
    ];
    if let Some(device) = &device {
        let gpu = gpu_engine(device, &c, k, check_every).expect("the GPU engine");
        engines.push(("gpu", gpu));
        if device.info().shader_f64 {
            let gpu = gpu_engine_in(device, &c, k, check_every, Arithmetic::F64)
                .expect("the GPU engine in f64");
            engines.push(("gpu f64", gpu));
        }
    }
    for (name, engine) in &mut engines {
        f(name, engine.as_mut());
    }
}

/// A tall matrix uploaded from `values` (M x K).
fn tall(e: &mut dyn Engine, values: &DMatrix<f64>) -> Tall {
    let t = e.new_tall();
    e.upload(t, values.as_slice()).expect("upload");
    t
}

fn download(e: &mut dyn Engine, t: Tall) -> DMatrix<f64> {
    DMatrix::from_vec(M, K, e.download(t).expect("download"))
}

/// Asserts |got − want| ≤ bound element-wise, naming the worst element.
fn assert_within(
    what: &str,
    engine: &str,
    got: &DMatrix<f64>,
    want: &DMatrix<f64>,
    bound: &DMatrix<f64>,
) {
    assert_eq!(got.shape(), want.shape(), "{what} on {engine}: shape");
    let (worst, ratio) = got
        .iter()
        .zip(want.iter())
        .zip(bound.iter())
        .map(|((g, w), b)| (g - w).abs() / b.max(f64::MIN_POSITIVE))
        .enumerate()
        .fold(
            (0, 0.0),
            |acc, (i, r)| if r > acc.1 || r.is_nan() { (i, r) } else { acc },
        );
    assert!(
        ratio <= 1.0,
        "{what} on {engine}: element {worst} is {} instead of {} (error {:.3e}, bound {:.3e})",
        got[worst],
        want[worst],
        (got[worst] - want[worst]).abs(),
        bound[worst]
    );
}

/// The element-wise bound of a product with inner dimension n: (|a|·|b|)·n·ε.
fn product_bound(a: &DMatrix<f64>, b: &DMatrix<f64>, n: usize) -> DMatrix<f64> {
    a.abs() * b.abs() * (n as f64 * EPS)
}

/// Reads scalar `s` through `combine` (out = (s / one)·ones, then element 0): exact on every engine
/// but for the division by 1 (within 2.5 ulps), so the read adds at most 3ε|s|.
struct ScalarReader {
    one: Scalar,
    ones: Tall,
    out: Tall,
}

impl ScalarReader {
    fn new(e: &mut dyn Engine) -> Self {
        let mut unit = DMatrix::zeros(M, K);
        unit[(0, 0)] = 1.0;
        let unit = tall(e, &unit);
        let one = e.new_scalar();
        e.dot(unit, unit, one);
        let ones = tall(e, &DMatrix::from_element(M, K, 1.0));
        let out = e.new_tall();
        ScalarReader { one, ones, out }
    }

    fn read(&self, e: &mut dyn Engine, s: Scalar) -> f64 {
        e.combine(self.out, &[(Coef::Ratio(s, self.one), self.ones)]);
        e.download(self.out).expect("download")[0]
    }
}

#[test]
fn upload_and_download_round_trip_exactly() {
    let x = random(M, K, 2);
    each_engine(10, |name, e| {
        let t = tall(e, &x);
        assert_eq!(download(e, t), x, "{name}");
        assert_eq!(e.m(), M, "{name}");
        assert_eq!(e.k(), K, "{name}");
    });
}

#[test]
fn products_agree_within_their_rounding_bounds() {
    let c = random_c(M);
    let (x, b) = (random(M, K, 3), random(M, K, 4));
    // inner: aᵀb (k x k, sums of M products); seen through mul_small: x·(xᵀb), whose bound composes
    // both: |x|·(|x|ᵀ|b|)·(M + K + 1)ε (the product of two rounded factors, to first order).
    let inner = x.transpose() * &b;
    let through_small = &x * &inner;
    let small_bound = x.abs() * (x.abs().transpose() * b.abs()) * ((M + K + 1) as f64 * EPS);
    each_engine(10, |name, e| {
        let (tx, tb, out) = (tall(e, &x), tall(e, &b), e.new_tall());
        e.c_mul(tx, out);
        assert_within(
            "c_mul",
            name,
            &download(e, out),
            &(&c * &x),
            &product_bound(&c, &x, M),
        );
        assert_eq!(e.passes(), 1, "{name}: one product with C");
        let s = e.new_small();
        e.inner(tx, tb, s);
        e.mul_small(tx, s, out);
        assert_within(
            "inner, mul_small",
            name,
            &download(e, out),
            &through_small,
            &small_bound,
        );
    });
}

#[test]
fn inverse_spd_agrees_within_its_condition_bound() {
    let b = random(M, K, 5);
    let shift = 0.5;
    let a = b.transpose() * &b + DMatrix::identity(K, K) * shift;
    let inverse = a.clone().try_inverse().expect("SPD");
    let want = &b * &inverse;
    // (g + E + shift·I)⁻¹ with |E| ≤ γ_M |b|ᵀ|b| (the rounding of g), inverted by an elimination that
    // errs by about 4K·ε·κ relatively (Gauss–Jordan / Cholesky on an SPD matrix): the inverse errs by
    // at most κ(A)·(‖E‖_F/‖A‖₂ + 4K·ε)·‖A⁻¹‖₂, doubled for the first-order truncation; then the product
    // with b adds γ_K |b||A⁻¹|.
    let eig = SymmetricEigen::new(a.clone()).eigenvalues;
    let (hi, lo) = (eig.max(), eig.min());
    let kappa = hi / lo;
    let e_norm = (b.abs().transpose() * b.abs()).norm() * M as f64 * EPS;
    let inverse_error = 2.0 * kappa * (e_norm / hi + 4.0 * K as f64 * EPS) / lo;
    let bound =
        b.abs() * DMatrix::from_element(K, K, inverse_error) + product_bound(&b, &inverse, K + 1);
    each_engine(10, |name, e| {
        let (tb, out) = (tall(e, &b), e.new_tall());
        let (g, inv) = (e.new_small(), e.new_small());
        e.inner(tb, tb, g);
        e.inverse_spd(g, shift, inv);
        e.mul_small(tb, inv, out);
        assert_within("inverse_spd", name, &download(e, out), &want, &bound);
    });
}

/// `c_mul_inverse` (on the GPU over a formed C: `C x` with the parts of `xᵀ C x` in its epilogue,
/// then their sum inverted) against the f64 values: `C x` with the bits of `c_mul`, `xᵀ C x` within
/// the bound of two products, the inverse within its condition bound. At m = 600 the GPU sums ten
/// parts (one per 64 rows), in two dispatches; at m = 256, k = 40 three column groups of 16 write
/// four parts; at m = 128, k = 70 the two 70 x 70 parts would
/// exceed one tall matrix, and it runs as its three operations.
#[test]
fn c_mul_inverse_agrees_within_its_bounds() {
    for (m, k, gpu_dispatches) in [(M, K, 2), (600, K, 2), (256, 40, 2), (128, 70, 3)] {
        let c = random_c(m);
        let x = random(m, k, 40);
        let cx = &c * &x;
        let gram = x.transpose() * &cx;
        let eig = SymmetricEigen::new(gram.clone()).eigenvalues;
        // A shift that makes gram + shift·I positive definite with κ ≤ 3.
        let shift = 2.0 * eig.abs().max() + 1.0;
        let a = &gram + DMatrix::identity(k, k) * shift;
        let inverse = a.clone().try_inverse().expect("SPD");
        let eig = SymmetricEigen::new(a).eigenvalues;
        let (hi, lo) = (eig.max(), eig.min());
        let cx_bound = product_bound(&c, &x, m);
        // xᵀ(C x) with C x rounded: two products of inner dimension m.
        let gram_bound = x.abs().transpose() * (c.abs() * x.abs()) * (2.0 * m as f64 * EPS);
        let inverse_error = 2.0 * (hi / lo) * (gram_bound.norm() / hi + 4.0 * k as f64 * EPS) / lo;
        let inverse_bound = DMatrix::from_element(k, k, inverse_error);
        let unit = DMatrix::from_fn(m, k, |i, j| f64::from(i == j));
        let download =
            |e: &mut dyn Engine, t: Tall| DMatrix::from_vec(m, k, e.download(t).expect("download"));
        each_engine_sized(m, k, 10, |name, e| {
            let name = &format!("{name}, m = {m}, k = {k}");
            let (tx, out, single) = (e.new_tall(), e.new_tall(), e.new_tall());
            e.upload(tx, x.as_slice()).expect("upload");
            let (g, inv) = (e.new_small(), e.new_small());
            let before = e.stats();
            e.c_mul_inverse(tx, out, g, shift, inv);
            if name.starts_with("gpu") {
                let dispatches = (e.stats() - before).dispatches;
                assert_eq!(dispatches, gpu_dispatches, "dispatches on {name}");
            }
            e.c_mul(tx, single);
            let got = download(e, out);
            let bits = |m: &DMatrix<f64>| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&download(e, single)), "C x on {name}");
            assert_within("C x", name, &got, &cx, &cx_bound);
            // A k x k matrix seen through the unit columns (exact: products by 0 and 1).
            let tunit = e.new_tall();
            e.upload(tunit, unit.as_slice()).expect("upload");
            let small = |e: &mut dyn Engine, s| {
                e.mul_small(tunit, s, out);
                download(e, out).rows(0, k).into_owned()
            };
            assert_within("xᵀ C x", name, &small(e, g), &gram, &gram_bound);
            assert_within(
                "the inverse",
                name,
                &small(e, inv),
                &inverse,
                &inverse_bound,
            );
        });
    }
}

#[test]
fn projected_blocks_are_written_and_read_where_the_contract_says() {
    let (a, b, x) = (random(M, K, 6), random(M, K, 7), random(M, K, 8));
    // mul_block reads the block (i, 0): block (1, 0) written directly, block (2, 0) as the mirror of
    // (0, 2), block (0, 0) on the diagonal. Bound: as for x·(xᵀb) above.
    let inputs = [&a, &b];
    // (block written, its left and right factors in `inputs`, the row block read, what it holds).
    let cases = [
        ((1, 0), 0, 1, 1, a.transpose() * &b),
        ((0, 2), 0, 1, 2, b.transpose() * &a),
        ((0, 0), 1, 1, 0, b.transpose() * &b),
    ];
    each_engine(10, |name, e| {
        let handles = [tall(e, &a), tall(e, &b)];
        let (tx, out, h) = (tall(e, &x), e.new_tall(), e.new_projected());
        for (block, left, right, row, y) in &cases {
            e.inner_block(handles[*left], handles[*right], h, *block);
            e.mul_block(tx, h, *row, out);
            let factors = inputs[*left].abs().transpose() * inputs[*right].abs();
            let bound = x.abs() * factors * ((M + K + 1) as f64 * EPS);
            let what = format!("inner_block {block:?}, mul_block {row}");
            assert_within(&what, name, &download(e, out), &(&x * y), &bound);
        }
    });
}

/// The angle between two vectors, whatever their signs.
fn angle(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    (dot.abs() / (norm(a) * norm(b))).min(1.0).acos()
}

#[test]
fn ritz_vectors_agree_within_the_eigenvector_perturbation_bound() {
    ritz_vectors_agree(M, K);
}

/// At order 126: the GPU's Jacobi kernel runs as several dispatches (src/gpu/engine.rs, jacobi_plan);
/// in one dispatch llvmpipe cut it short and returned columns of zeros.
#[test]
fn ritz_vectors_agree_at_an_order_split_over_several_dispatches() {
    ritz_vectors_agree(130, 42);
}

/// The GPU's eigen kernels give the same bits however they are split into dispatches (src/gpu/
/// engine.rs, jacobi_plan): in one, in the default plan's, and in one round per dispatch.
#[test]
fn the_gpu_eigen_kernels_give_the_same_bits_however_they_are_split() {
    if !have_gpu() {
        return;
    }
    let device = GpuDevice::open(None).expect("open the adapter");
    let (m, k) = (70, 20);
    let n = SEARCH_BLOCKS * k;
    let c = random_c(m);
    let s = random(m, n, 12);
    let run = |budget: usize| -> Vec<u64> {
        let mut e = gpu_engine_with_jacobi_budget(&device, &c, k, 10, budget).expect("engine");
        let blocks: Vec<Tall> = (0..SEARCH_BLOCKS)
            .map(|i| {
                let t = e.new_tall();
                let block = s.columns(i * k, k).into_owned();
                e.upload(t, block.as_slice()).expect("upload");
                t
            })
            .collect();
        let (h, vectors, out) = (e.new_projected(), e.new_projected(), e.new_tall());
        for i in 0..SEARCH_BLOCKS {
            for j in i..SEARCH_BLOCKS {
                e.inner_block(blocks[i], blocks[j], h, (i, j));
            }
        }
        e.ritz_vectors(h, vectors);
        let (g, q) = (e.new_small(), e.new_small());
        e.inner(blocks[0], blocks[0], g);
        e.orthonormalizer(g, q);
        let mut bits = Vec::new();
        for i in 0..SEARCH_BLOCKS {
            e.mul_block(blocks[0], vectors, i, out);
            bits.extend(
                e.download(out)
                    .expect("download")
                    .iter()
                    .map(|v| v.to_bits()),
            );
        }
        e.mul_small(blocks[0], q, out);
        bits.extend(
            e.download(out)
                .expect("download")
                .iter()
                .map(|v| v.to_bits()),
        );
        bits
    };
    let whole = run(usize::MAX);
    assert_eq!(run(1), whole, "one round per dispatch");
    assert_eq!(run(2000), whole, "a few rounds per dispatch");
}

/// ritz_vectors on the n = SEARCH_BLOCKS·k projected problem of random blocks (m x k) with a
/// prescribed spectrum, against nalgebra's f64 eigenvectors.
fn ritz_vectors_agree(m: usize, k: usize) {
    let n = SEARCH_BLOCKS * k;
    // A basis S = Q·diag(d)·Vᵀ (Q orthonormal, V a random rotation): H = SᵀS has the eigenvalues d²
    // (n², ..., 4, 1: gaps of at least 3) and the eigenvectors V, rounded to f32 in S.
    let q = random(m, n, 9).qr().q();
    let v = random(n, n, 10).qr().q();
    let d = DMatrix::from_diagonal(&nalgebra::DVector::from_fn(n, |i, _| (n - i) as f64));
    let s = (q * d * v.transpose()).map(|x| x as f32 as f64);
    let blocks: Vec<DMatrix<f64>> = (0..SEARCH_BLOCKS)
        .map(|i| s.columns(i * k, k).into_owned())
        .collect();
    let h = s.transpose() * &s;
    let eig = SymmetricEigen::new(h.clone());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| eig.eigenvalues[j].total_cmp(&eig.eigenvalues[i]));
    // Davis–Kahan: eigenvector j turns by at most ‖E‖/gap_j, E = H's rounding (|E| ≤ γ_M |S|ᵀ|S|)
    // plus what Jacobi leaves: its stopping threshold (n·ε‖H‖_F off the diagonal) and the rounding of
    // its rotations (a few ε per rotation, 2(n − 1) rotations of each column per sweep, up to ~10
    // sweeps): 30·n·ε·‖H‖_F in all.
    let e_norm =
        (s.abs().transpose() * s.abs()).norm() * m as f64 * EPS + 30.0 * n as f64 * EPS * h.norm();
    each_engine_sized(m, k, 10, |name, e| {
        let talls: Vec<Tall> = blocks.iter().map(|b| tall(e, b)).collect();
        let (hp, vectors, out) = (e.new_projected(), e.new_projected(), e.new_tall());
        for i in 0..SEARCH_BLOCKS {
            for j in i..SEARCH_BLOCKS {
                e.inner_block(talls[i], talls[j], hp, (i, j));
            }
        }
        e.ritz_vectors(hp, vectors);
        // The first k eigenvectors (n x k), read block by block: U·Y_i with U = [I_k; 0] (exact) holds
        // the rows i·k..(i+1)·k of the first k columns.
        let unit = tall(e, &DMatrix::from_fn(m, k, |r, c| f64::from(r == c)));
        let mut y = DMatrix::zeros(n, k);
        for i in 0..SEARCH_BLOCKS {
            e.mul_block(unit, vectors, i, out);
            let got = DMatrix::from_vec(m, k, e.download(out).expect("download"));
            y.rows_mut(i * k, k).copy_from(&got.rows(0, k));
        }
        for j in 0..k {
            let value = eig.eigenvalues[order[j]];
            let gap = order
                .iter()
                .filter(|&&o| o != order[j])
                .map(|&o| (eig.eigenvalues[o] - value).abs())
                .fold(f64::INFINITY, f64::min);
            let want: Vec<f64> = eig.eigenvectors.column(order[j]).iter().copied().collect();
            let got: Vec<f64> = y.column(j).iter().copied().collect();
            let (theta, bound) = (angle(&got, &want), e_norm / gap);
            assert!(
                theta <= bound,
                "ritz_vectors on {name}: eigenvector {j} (of {value}) off by {theta:.3e} rad, bound {bound:.3e}"
            );
        }
    });
}

/// ‖QᵀQ − target‖_F for the downloaded Q = B·out.
fn orthonormality_error(q: &DMatrix<f64>, target: &DMatrix<f64>) -> f64 {
    (q.transpose() * q - target).norm()
}

#[test]
fn orthonormalizer_gives_orthonormal_columns_and_drops_missing_directions() {
    // Full rank: a random B. Rank K − 1: B = [b₁, b₂, b₁ + b₂] with entries multiples of 1/8, so that
    // every engine forms B and BᵀB exactly and the third direction is exactly missing.
    let full = random(M, K, 11);
    let mut deficient = random(M, K, 12).map(|v| (v * 8.0).round() / 8.0);
    for r in 0..M {
        deficient[(r, 2)] = deficient[(r, 0)] + deficient[(r, 1)];
    }
    let mut target_deficient = DMatrix::identity(K, K);
    target_deficient[(2, 2)] = 0.0;
    let cases = [
        ("full rank", &full, DMatrix::identity(K, K)),
        ("rank K - 1", &deficient, target_deficient),
    ];
    for (case, b, target) in &cases {
        // With D = diag(g)^{-1/2}: the rounding of g scaled by D is at most γ_M·K in Frobenius norm
        // (|b_i|ᵀ|b_j| ≤ ‖b_i‖‖b_j‖), Jacobi leaves 30·K·ε·‖DgD‖_F (as for ritz_vectors; ‖DgD‖_F ≤ K),
        // and B·out rounds by γ_K relatively twice in QᵀQ; each is amplified by 1/λ_min of the kept
        // part of DgD.
        let g = b.transpose() * *b;
        let dg = DMatrix::from_fn(K, K, |i, j| g[(i, j)] / (g[(i, i)] * g[(j, j)]).sqrt());
        let mut values: Vec<f64> = SymmetricEigen::new(dg)
            .eigenvalues
            .iter()
            .copied()
            .collect();
        values.sort_by(|x, y| y.total_cmp(x));
        let kept = target.trace() as usize;
        let lambda_min = values[kept - 1];
        let k = K as f64;
        let bound = (M as f64 * k + 30.0 * k * k + 2.0 * (k + 1.0)) * EPS / lambda_min;
        each_engine(10, |name, e| {
            let (tb, q) = (tall(e, b), e.new_tall());
            let (gs, out) = (e.new_small(), e.new_small());
            e.inner(tb, tb, gs);
            e.orthonormalizer(gs, out);
            e.mul_small(tb, out, q);
            let q = download(e, q);
            let error = orthonormality_error(&q, target);
            assert!(
                error <= bound,
                "orthonormalizer ({case}) on {name}: ‖QᵀQ − I‖ = {error:.3e}, bound {bound:.3e}"
            );
            for j in kept..K {
                assert!(
                    q.column(j).iter().all(|&v| v == 0.0),
                    "orthonormalizer ({case}) on {name}: dropped column {j} is not zero"
                );
            }
        });
    }
}

#[test]
fn combine_dot_and_copy_scalar_agree_within_their_rounding_bounds() {
    let (a, b, t) = (random(M, K, 13), random(M, K, 14), random(M, K, 15));
    let (sa, sb) = (a.norm_squared(), b.norm_squared());
    // A dot product of MP·K terms (padding included) errs by γ_{MP·K}·Σ|aᵢ||bᵢ|; ⟨a, a⟩ is a sum of
    // positive terms, so relatively by γ_{MP·K}; a ratio of two such by twice that plus its division
    // (2.5 ulps): `ratio_error`, relative.
    let len = (MP * K) as f64;
    let ratio_error = 2.0 * len * EPS + 3.0 * EPS;
    // out = 0.75·a + (sa/sb)·b − (sb/sa)·t + (sa/0)·a (= 0): four terms, one on the output itself, one
    // input twice, every kind of coefficient. Each term's product rounds by ε and the four-term sum by
    // γ_3 of Σ|cᵢtᵢ|: (coefficient error + 4ε)·|cᵢ||tᵢ| summed.
    let want = &a * 0.75 + &b * (sa / sb) - &t * (sb / sa);
    let bound = a.abs() * (0.75 * 4.0 * EPS)
        + b.abs() * ((sa / sb) * (ratio_error + 4.0 * EPS))
        + t.abs() * ((sb / sa) * (ratio_error + 4.0 * EPS));
    each_engine(10, |name, e| {
        let reader = ScalarReader::new(e);
        let (ta, tb, out) = (tall(e, &a), tall(e, &b), tall(e, &t));
        let zero = tall(e, &DMatrix::zeros(M, K));
        let (s_a, s_b, s_zero, copy) = (
            e.new_scalar(),
            e.new_scalar(),
            e.new_scalar(),
            e.new_scalar(),
        );
        e.dot(ta, ta, s_a);
        e.dot(tb, tb, s_b);
        e.dot(zero, zero, s_zero);
        let read_a = reader.read(e, s_a);
        let dot_bound = sa * (len * EPS + 3.0 * EPS);
        assert!(
            (read_a - sa).abs() <= dot_bound,
            "dot on {name}: {read_a} instead of {sa}"
        );
        assert_eq!(reader.read(e, s_zero), 0.0, "dot on {name}: ⟨0, 0⟩");
        e.copy_scalar(s_a, copy);
        assert_eq!(reader.read(e, copy), read_a, "copy_scalar on {name}");
        let terms = [
            (Coef::Const(0.75), ta),
            (Coef::Ratio(s_a, s_b), tb),
            (Coef::NegRatio(s_b, s_a), out),
            (Coef::Ratio(s_a, s_zero), ta),
        ];
        assert_eq!(terms.len(), MAX_COMBINE_TERMS);
        e.combine(out, &terms);
        assert_within("combine", name, &download(e, out), &want, &bound);
    });
}

#[test]
fn stopping_quantities_agree_and_come_back_in_order() {
    let (a, b, c, d) = (
        random(M, K, 16),
        random(M, K, 17),
        random(M, K, 18),
        random(M, K, 19),
    );
    // ‖a − b‖_F: each difference rounds by ε, the sum of squares by γ_{MP·K}, the square root (and for
    // a ratio, its division) by a few ulps: relatively (MP·K + 4)ε.
    let relative = ((MP * K) as f64 + 4.0) * EPS;
    let want = [
        (&a - &b).norm(),
        (&a - &b).norm() + (&c - &d).norm(),
        a.norm() / b.norm(),
        0.0,
        a.columns(0, 2).norm() / b.columns(0, 2).norm(),
    ];
    each_engine(10, |name, e| {
        let (ta, tb, tc, td) = (tall(e, &a), tall(e, &b), tall(e, &c), tall(e, &d));
        let zero = tall(e, &DMatrix::zeros(M, K));
        e.record_stop(&[(ta, tb)]);
        e.record_stop(&[(ta, tb), (tc, td)]);
        assert_eq!(MAX_STOP_PAIRS, 2);
        e.record_stop_ratio(ta, tb, K);
        e.record_stop_ratio(ta, zero, K);
        e.record_stop_ratio(ta, tb, 2);
        let got = e.check().expect("check");
        assert_eq!(got.len(), want.len(), "{name}: values since the last check");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= relative * w,
                "stopping quantity {i} on {name}: {g} instead of {w}"
            );
        }
        // The next check returns only what was recorded after this one.
        e.record_stop(&[(tc, td)]);
        let again = e.check().expect("check");
        assert_eq!(again.len(), 1, "{name}: values since the last check");
        assert!(
            (again[0] - (&c - &d).norm()).abs() <= relative * again[0],
            "{name}"
        );
    });
}

/// The default solver's fused operations give, on every engine, the bits of the operations they
/// stand for: `projected` those of six `inner_block`s (seen through the Ritz vectors of the result,
/// which depend on every entry), `mul_blocks` (for each of its two sets) those of three `mul_block`s
/// summed by two `combine`s, the pair operations those of the two single ones each stands for,
/// `mul_small_sub` those of `mul_small` and `combine`, in place and not.
#[test]
fn the_fused_operations_give_the_bits_of_the_ones_they_stand_for() {
    // M, and 600 features: more than a workgroup's threads, so that each thread's part of a sum
    // strides over several rows.
    for m in [M, 600] {
        fused_operations_match(m);
    }
}

fn fused_operations_match(m: usize) {
    let values: Vec<DMatrix<f64>> = (0..6).map(|i| random(m, K, 30 + i)).collect();
    let unit = DMatrix::from_fn(m, K, |i, j| f64::from(i == j));
    let bits = |m: &DMatrix<f64>| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let download =
        |e: &mut dyn Engine, t: Tall| DMatrix::from_vec(m, K, e.download(t).expect("download"));
    each_engine_sized(m, K, 10, |name, e| {
        let name = &format!("{name}, m = {m}");
        let t: Vec<Tall> = values.iter().map(|v| tall(e, v)).collect();
        let (basis, image) = ([t[0], t[1], t[2]], [t[3], t[4], t[5]]);
        let (fused, single) = (e.new_projected(), e.new_projected());
        e.projected(basis, image, fused);
        for (i, &a) in basis.iter().enumerate() {
            for (j, &b) in image.iter().enumerate().skip(i) {
                e.inner_block(a, b, single, (i, j));
            }
        }
        // The top Ritz vectors of each, block by block (the unit columns pick Y's rows).
        let (unit, out) = (tall(e, &unit), e.new_tall());
        let ritz = |e: &mut dyn Engine, h| {
            let y = e.new_projected();
            e.ritz_vectors(h, y);
            (0..SEARCH_BLOCKS)
                .map(|i| {
                    e.mul_block(unit, y, i, out);
                    bits(&download(e, out))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ritz(e, fused), ritz(e, single), "projected on {name}");

        // mul_blocks of the basis and of its image, each against three mul_blocks and two combines.
        let all = [e.new_tall(), e.new_tall()];
        let tail = [e.new_tall(), e.new_tall()];
        e.mul_blocks([basis, image], single, all, tail);
        let one = Coef::Const(1.0);
        for (set, blocks) in [basis, image].into_iter().enumerate() {
            let products = [e.new_tall(), e.new_tall(), e.new_tall()];
            for (i, &block) in blocks.iter().enumerate() {
                e.mul_block(block, single, i, products[i]);
            }
            let (all_single, tail_single) = (e.new_tall(), e.new_tall());
            let [p0, p1, p2] = products;
            e.combine(all_single, &[(one, p0), (one, p1), (one, p2)]);
            e.combine(tail_single, &[(one, p1), (one, p2)]);
            for (got, want, what) in [
                (all[set], all_single, "sum"),
                (tail[set], tail_single, "tail"),
            ] {
                let (got, want) = (download(e, got), download(e, want));
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "mul_blocks' {what} of set {set} on {name}"
                );
            }
        }

        // The pair operations against the single ones they stand for.
        let (s, s1) = (e.new_small(), e.new_small());
        e.inner(t[0], t[1], s);
        e.inner(t[4], t[1], s1);
        let pair_out = [e.new_tall(), e.new_tall()];
        e.mul_small_pair([t[2], t[5]], s1, pair_out);
        let single_out = [e.new_tall(), e.new_tall()];
        e.mul_small(t[2], s1, single_out[0]);
        e.mul_small(t[5], s1, single_out[1]);
        let pair_sub = [e.new_tall(), e.new_tall()];
        let single_sub = [e.new_tall(), e.new_tall()];
        for (i, source) in [t[1], t[3]].into_iter().enumerate() {
            for target in [pair_sub[i], single_sub[i]] {
                e.combine(target, &[(one, source)]);
            }
        }
        e.mul_small_sub_pair(pair_sub, [t[2], t[5]], s);
        e.mul_small_sub(single_sub[0], single_sub[0], t[2], s);
        e.mul_small_sub(single_sub[1], single_sub[1], t[5], s);
        for (got, want, what) in [
            (pair_out[0], single_out[0], "mul_small_pair's first"),
            (pair_out[1], single_out[1], "mul_small_pair's second"),
            (pair_sub[0], single_sub[0], "mul_small_sub_pair's first"),
            (pair_sub[1], single_sub[1], "mul_small_sub_pair's second"),
        ] {
            let (got, want) = (download(e, got), download(e, want));
            assert_eq!(bits(&got), bits(&want), "{what} on {name}");
            assert!(got.iter().any(|&v| v != 0.0), "{what} on {name}: all zero");
        }

        let s = e.new_small();
        e.inner(t[0], t[1], s);
        let (out, product) = (e.new_tall(), e.new_tall());
        e.mul_small_sub(out, t[2], t[3], s);
        e.mul_small(t[3], s, product);
        let minus = Coef::Const(-1.0);
        let single = e.new_tall();
        e.combine(single, &[(one, t[2]), (minus, product)]);
        let (got, want) = (download(e, out), download(e, single));
        assert_eq!(bits(&got), bits(&want), "mul_small_sub on {name}");
        // In place: t[2] −= t[3] s.
        e.mul_small_sub(t[2], t[2], t[3], s);
        let got = download(e, t[2]);
        assert_eq!(bits(&got), bits(&want), "mul_small_sub in place on {name}");
    });
}

/// Two checks submitted before either is read (the default solver's overlap on the GPU) come back in
/// order, each with its own values; work recorded after them waits for the next submission.
#[test]
fn submitted_checks_are_read_in_order() {
    let (a, b) = (random(M, K, 21), random(M, K, 22));
    let relative = ((MP * K) as f64 + 4.0) * EPS;
    each_engine(10, |name, e| {
        let (ta, tb) = (tall(e, &a), tall(e, &b));
        e.record_stop(&[(ta, tb)]);
        e.submit_check();
        e.record_stop_ratio(ta, tb, K);
        e.record_stop(&[(tb, ta)]);
        e.submit_check();
        e.record_stop_ratio(tb, ta, K);
        let first = e.read_check().expect("the first check");
        let second = e.read_check().expect("the second check");
        let third = e.check().expect("a third check");
        // The overlapped loop's steady state: a check submitted while the one before is unread,
        // then that one read, round the staging slots several times (each check's value its own:
        // the ratio over its first 1, 2, 3, 1, … columns).
        let columns = |i: usize| 1 + i % K;
        let ratio = |i: usize| a.columns(0, columns(i)).norm() / b.columns(0, columns(i)).norm();
        e.record_stop_ratio(ta, tb, columns(0));
        e.submit_check();
        for i in 1..=6 {
            e.record_stop_ratio(ta, tb, columns(i));
            e.submit_check();
            let got = e.read_check().expect("a steady check");
            assert_eq!(got.len(), 1, "{name}: {got:?}");
            let want = ratio(i - 1);
            assert!(
                (got[0] - want).abs() <= relative * want,
                "{name}, {i}: {got:?}"
            );
        }
        let last = e.read_check().expect("the last check");
        assert_eq!(last.len(), 1, "{name}");
        assert!(
            (last[0] - ratio(6)).abs() <= relative * ratio(6),
            "{name}: {last:?}"
        );
        let want = [
            vec![(&a - &b).norm()],
            vec![a.norm() / b.norm(), (&a - &b).norm()],
            vec![b.norm() / a.norm()],
        ];
        for (got, want) in [first, second, third].iter().zip(&want) {
            assert_eq!(got.len(), want.len(), "{name}: {got:?} for {want:?}");
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - w).abs() <= relative * w,
                    "{name}: {got:?} for {want:?}"
                );
            }
        }
    });
}

#[test]
fn the_gpu_engine_dispatches_once_per_operation_and_the_cpu_engine_counts_nothing() {
    let x = random(M, K, 20);
    each_engine(10, |name, e| {
        let (tx, out) = (tall(e, &x), e.new_tall());
        let (s, s2, h, v) = (
            e.new_small(),
            e.new_small(),
            e.new_projected(),
            e.new_projected(),
        );
        let scalar = e.new_scalar();
        let before = e.stats();
        e.c_mul(tx, out);
        e.inner(tx, out, s);
        e.mul_small(tx, s, out);
        e.inverse_spd(s, 1.0, s2);
        e.inner_block(tx, out, h, (0, 1));
        e.mul_block(tx, h, 1, out);
        e.ritz_vectors(h, v);
        e.orthonormalizer(s2, s);
        e.combine(out, &[(Coef::Const(1.0), tx)]);
        e.dot(tx, out, scalar);
        e.copy_scalar(scalar, scalar);
        e.record_stop(&[(tx, out)]);
        e.record_stop_ratio(tx, out, K);
        e.projected([tx, out, tx], [out, tx, out], h);
        let (other, third, fourth) = (e.new_tall(), e.new_tall(), e.new_tall());
        e.mul_blocks([[tx, tx, tx]; 2], h, [out, other], [third, fourth]);
        e.mul_small_sub(out, out, tx, s);
        e.mul_small_sub(out, other, tx, s);
        e.mul_small_pair([tx, tx], s, [out, other]);
        e.mul_small_sub_pair([out, other], [tx, tx], s);
        // Over a formed C, two dispatches: the product with the parts of xᵀ(C x), their inverse.
        e.c_mul_inverse(tx, out, s, 1.0, s2);
        let operations = 21;
        let counted = e.stats() - before;
        if name.starts_with("gpu") {
            assert_eq!(counted.dispatches, operations, "{name}: dispatches");
        } else {
            assert_eq!(e.stats(), EngineStats::default(), "{name}");
        }
        assert_eq!(e.check().expect("check").len(), 2, "{name}");
    });
}

/// The panic message of `f`, or None when it returns.
fn panic_message(f: impl FnOnce()) -> Option<String> {
    let payload = catch_unwind(AssertUnwindSafe(f)).err()?;
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    )
}

#[test]
fn every_engine_enforces_the_same_limits() {
    type Violation = (&'static str, fn(&mut dyn Engine));
    let violations: [Violation; 16] = [
        ("combine with one term too many", |e| {
            let t = e.new_tall();
            e.combine(t, &[(Coef::Const(1.0), t); MAX_COMBINE_TERMS + 1]);
        }),
        ("record_stop without a pair", |e| e.record_stop(&[])),
        ("record_stop with one pair too many", |e| {
            let t = e.new_tall();
            e.record_stop(&[(t, t); MAX_STOP_PAIRS + 1]);
        }),
        ("one scalar too many", |e| {
            for _ in 0..=MAX_SCALARS {
                e.new_scalar();
            }
        }),
        (
            "more stopping quantities than check_every + 1 between checks",
            |e| {
                let t = e.new_tall();
                for _ in 0..3 {
                    e.record_stop_ratio(t, t, K);
                }
                e.check().expect("check");
                for _ in 0..4 {
                    e.record_stop_ratio(t, t, K);
                }
            },
        ),
        ("c_mul in place", |e| {
            let t = e.new_tall();
            e.c_mul(t, t);
        }),
        ("inner_block past the basis", |e| {
            let (t, h) = (e.new_tall(), e.new_projected());
            e.inner_block(t, t, h, (0, SEARCH_BLOCKS));
        }),
        ("mul_block past the basis", |e| {
            let (t, out, h) = (e.new_tall(), e.new_tall(), e.new_projected());
            e.mul_block(t, h, SEARCH_BLOCKS, out);
        }),
        ("mul_blocks into one of its blocks", |e| {
            let (t, u, h) = (e.new_tall(), e.new_tall(), e.new_projected());
            let out = [e.new_tall(), e.new_tall(), e.new_tall()];
            e.mul_blocks([[u; 3], [u, t, u]], h, [out[0], out[1]], [out[2], t]);
        }),
        ("mul_blocks with one output for two", |e| {
            let (t, out, h) = (e.new_tall(), e.new_tall(), e.new_projected());
            let other = [e.new_tall(), e.new_tall()];
            e.mul_blocks([[t; 3]; 2], h, [out, other[0]], [other[1], out]);
        }),
        ("mul_small_pair into its other input", |e| {
            let (t, u, v, s) = (e.new_tall(), e.new_tall(), e.new_tall(), e.new_small());
            e.mul_small_pair([t, u], s, [u, v]);
        }),
        ("mul_small_sub_pair with one output for both", |e| {
            let (t, u, s) = (e.new_tall(), e.new_tall(), e.new_small());
            e.mul_small_sub_pair([u, u], [t, t], s);
        }),
        ("mul_small_sub into its factor", |e| {
            let (t, base, s) = (e.new_tall(), e.new_tall(), e.new_small());
            e.mul_small_sub(t, base, t, s);
        }),
        ("one submitted check unread too many", |e| {
            for _ in 0..=MAX_UNREAD_CHECKS {
                e.submit_check();
            }
        }),
        ("read_check without a submitted check", |e| {
            let _ = e.read_check();
        }),
        ("record_stop_ratio over more columns than k", |e| {
            let t = e.new_tall();
            e.record_stop_ratio(t, t, K + 1);
        }),
    ];
    for (what, violate) in violations {
        let mut messages = Vec::new();
        // check_every = 2: at most 3 stopping quantities between two checks.
        each_engine(2, |name, e| {
            let message = panic_message(|| violate(e));
            let message = message.unwrap_or_else(|| panic!("{what}: {name} accepted it"));
            messages.push((name.to_string(), message));
        });
        assert!(
            messages
                .iter()
                .all(|(_, m)| *m == messages[0].1 && !m.is_empty()),
            "{what}: the engines disagree: {messages:?}"
        );
    }
    each_engine(2, |name, e| {
        let t = e.new_tall();
        let short = e.upload(t, &[0.0; M * K - 1]);
        assert!(
            matches!(short, Err(Error::ShapeMismatch { .. })),
            "{name}: {short:?}"
        );
    });
}

/// The GPU engine in f64 computes in f64: its products, its k x k inverse and its stopping quantity are
/// within the f64 bounds (the module's bounds with f64's ε), which f32 arithmetic misses by ~10⁹.
#[test]
fn the_gpu_f64_engine_computes_in_f64() {
    if !have_gpu() {
        return;
    }
    let device = GpuDevice::open(None).unwrap();
    let eps64 = f64::EPSILON;
    // Inputs with all 53 bits (not rounded to f32), so that f32 arithmetic would show.
    let mut rng = laepca::rng::Rng::new(9);
    let c = {
        let a = DMatrix::from_fn(M, M, |_, _| rng.normal());
        (&a + a.transpose()) / 2.0
    };
    let x = DMatrix::from_fn(M, K, |_, _| rng.normal());
    if !device.info().shader_f64 {
        // (WGPU_BACKEND=gl: no f64 shaders) an f64 engine is refused, not run in f32.
        let e = gpu_engine_in(&device, &c, K, 1, Arithmetic::F64);
        assert!(matches!(e, Err(Error::Unsupported { .. })), "{:?}", e.err());
        return;
    }
    let mut e = gpu_engine_in(&device, &c, K, 1, Arithmetic::F64).expect("the GPU engine in f64");
    let e = e.as_mut();
    let (tx, out) = (tall(e, &x), e.new_tall());
    assert_eq!(download(e, tx), x, "the upload keeps every bit");
    e.c_mul(tx, out);
    let bound = c.abs() * x.abs() * (M as f64 * eps64);
    assert_within(
        "c_mul in f64",
        "gpu f64",
        &download(e, out),
        &(&c * &x),
        &bound,
    );
    // (xᵀx + shift·I)⁻¹ through mul_small: x·inverse, against the f64 reference; the shift has more
    // bits than f32 holds. Bound: the inverse's condition times a few ulps, generously.
    let shift = 0.1 + 1e-12;
    let g = x.transpose() * &x + DMatrix::identity(K, K) * shift;
    let inverse = g.clone().try_inverse().unwrap();
    let s = e.new_small();
    let inv = e.new_small();
    e.inner(tx, tx, s);
    e.inverse_spd(s, shift, inv);
    e.mul_small(tx, inv, out);
    let want = &x * &inverse;
    let eig = SymmetricEigen::new(g).eigenvalues;
    let cond = eig.max() / eig.min();
    let got = download(e, out);
    let error = (&got - &want).abs().max() / want.abs().max();
    assert!(
        error <= 1e3 * cond * eps64,
        "x (xᵀx + shift)⁻¹ in f64: relative error {error:e} (condition {cond:.1})"
    );
    // A constant coefficient with more bits than f32 holds: out = (1 + 2⁻⁴⁰)·x.
    let coefficient = 1.0 + 2f64.powi(-40);
    e.combine(out, &[(Coef::Const(coefficient), tx)]);
    let scaled = download(e, out);
    assert_within(
        "combine with an f64 constant",
        "gpu f64",
        &scaled,
        &(&x * coefficient),
        &(x.abs() * (2.0 * eps64)),
    );
    // The stopping quantity ‖out − x‖ = 2⁻⁴⁰‖x‖, read back in f64 (each element of out is rounded,
    // by at most 2⁻⁵³ of x's: 2⁻¹³ of the difference; in f32 out would be x and the quantity 0).
    e.record_stop(&[(out, tx)]);
    let q = e.check().expect("check")[0];
    let want = 2f64.powi(-40) * x.norm();
    assert!(
        (q - want).abs() <= 2f64.powi(-12) * want,
        "the stopping quantity in f64: {q:e} against {want:e}"
    );
}

/// Where the device has timestamp queries, the GPU engine times its compute passes; more passes than
/// its ring of 256 holds between two read-backs are read on the way, in a submission of their own
/// each time the ring is full. On the CPU there is no such time.
#[test]
fn gpu_pass_times_survive_a_full_ring() {
    let c = random_c(M);
    let cpu = cpu_engine::<f64>(&c, K, 1);
    assert_eq!(cpu.kernel_time(), None);
    if !have_gpu() {
        return;
    }
    let device = GpuDevice::open(None).unwrap();
    let mut gpu = gpu_engine(&device, &c, K, 1).expect("the GPU engine");
    let x = tall(gpu.as_mut(), &random(M, K, 5));
    let out = gpu.new_tall();
    // Each upload ends the open pass: 600 passes, one c_mul each, without a check.
    for _ in 0..600 {
        gpu.c_mul(x, out);
        gpu.upload(x, random(M, K, 5).as_slice()).unwrap();
    }
    let before = gpu.stats();
    gpu.c_mul(x, out);
    gpu.download(out).unwrap();
    let time = gpu.kernel_time();
    if device.info().timestamp_queries {
        assert!(
            time.is_some_and(|t| t > std::time::Duration::ZERO),
            "{time:?}"
        );
        // The ring filled twice (at the 257th and the 513th pass): two reads of their own.
        assert_eq!(before.submissions, 600 + 2, "{before:?}");
    } else {
        assert_eq!(time, None);
    }
}
