//! The CPU engine: each [`Engine`] call runs at once, in the working precision `T` (the products through
//! [`crate::cpu_kernels`], the k x k solves with nalgebra). C is a formed matrix in `T`, or an operator
//! applied in f64 (the sparse operator route).

use crate::cpu_kernels::{parallelism, product, product_tn};
use crate::engine::{
    check_mul_blocks, CallCheck, Coef, Engine, EngineStats, Projected, Scalar, Small, Tall,
    ORTHO_DROP_ULPS, SEARCH_BLOCKS,
};
use crate::error::Result;
use crate::operator::GramOperator;
use crate::real::Real;
use nalgebra::{DMatrix, SymmetricEigen};

/// C as the CPU engine multiplies by it.
enum CpuGram<'a, T: Real> {
    /// A formed C (m x m), converted to `T`.
    Dense(DMatrix<T>),
    /// `op / scale`, applied in f64 and rounded to `T`.
    Operator {
        op: &'a dyn GramOperator,
        scale: f64,
    },
}

/// Executes solver steps on the CPU, with C formed (in `T`) or applied as an operator.
pub(crate) struct CpuEngine<'a, T: Real> {
    c: CpuGram<'a, T>,
    m: usize,
    k: usize,
    talls: Vec<DMatrix<T>>,
    smalls: Vec<DMatrix<T>>,
    projected: Vec<DMatrix<T>>,
    scalars: Vec<T>,
    pending: Vec<f64>,
    /// The values of submitted checks not yet read, oldest first.
    submitted: std::collections::VecDeque<Vec<f64>>,
    passes: usize,
    /// Reused by `combine` (its output may be one of its inputs) and `mul_small_sub`, so the loop
    /// allocates nothing.
    scratch: Vec<T>,
    /// `mul_blocks`' products (made on its first call).
    block_products: Vec<DMatrix<T>>,
    /// A k x k block (column-major) of a projected matrix, contiguous for the products.
    block_scratch: Vec<T>,
    /// What [`Engine::overlaps_checks`] says: false, but for the tests of a solver's overlap.
    overlaps_checks: bool,
    /// The engine limits, the same as the GPU engine's.
    checks: CallCheck,
}

impl<'a, T: Real> CpuEngine<'a, T> {
    /// This engine, overlapping its checks as the GPU does (the tests of the solvers' overlap).
    #[cfg(test)]
    pub fn overlapping(mut self) -> Self {
        self.overlaps_checks = true;
        self
    }

    /// An engine over C (m x m, converted to `T`) for k components, checking at most every
    /// `check_every` iterations.
    pub fn new(c: &DMatrix<f64>, k: usize, check_every: usize) -> Self {
        Self::with(CpuGram::Dense(c.map(T::of_f64)), c.nrows(), k, check_every)
    }

    /// An engine over `op / scale` (applied in f64 at each product, never formed).
    pub fn over_operator(
        op: &'a dyn GramOperator,
        scale: f64,
        k: usize,
        check_every: usize,
    ) -> Self {
        let m = op.n_features();
        Self::with(CpuGram::Operator { op, scale }, m, k, check_every)
    }

    fn with(c: CpuGram<'a, T>, m: usize, k: usize, check_every: usize) -> Self {
        CpuEngine {
            c,
            m,
            k,
            talls: Vec::new(),
            smalls: Vec::new(),
            projected: Vec::new(),
            scalars: Vec::new(),
            pending: Vec::new(),
            submitted: std::collections::VecDeque::new(),
            block_products: Vec::new(),
            block_scratch: Vec::new(),
            overlaps_checks: false,
            passes: 0,
            scratch: Vec::new(),
            checks: CallCheck::new(check_every),
        }
    }

    /// `out = A · Y_i`, with Y_i the k x k block of `y` at rows `i·k..` (A m x k, out m x k).
    fn times_row_block(&mut self, a: Tall, y: Projected, i: usize, out: &mut [T]) {
        let (m, k) = (self.m, self.k);
        let mut block = std::mem::take(&mut self.block_scratch);
        block.clear();
        block.extend(self.projected[y.0].view((i * k, 0), (k, k)).iter());
        product(
            self.talls[a.0].as_slice(),
            &block,
            out,
            (m, k, k),
            parallelism(),
        );
        self.block_scratch = block;
    }

    fn coef(&self, c: Coef) -> T {
        let ratio = |n: Scalar, d: Scalar| {
            let den = self.scalars[d.0];
            if den == T::zero() {
                T::zero()
            } else {
                self.scalars[n.0] / den
            }
        };
        match c {
            Coef::Const(v) => T::of_f64(v),
            Coef::Ratio(n, d) => ratio(n, d),
            Coef::NegRatio(n, d) => -ratio(n, d),
        }
    }
}

impl<T: Real> Engine for CpuEngine<'_, T> {
    fn m(&self) -> usize {
        self.m
    }

    fn k(&self) -> usize {
        self.k
    }

    fn new_tall(&mut self) -> Tall {
        self.talls.push(DMatrix::zeros(self.m(), self.k));
        Tall(self.talls.len() - 1)
    }
    fn new_small(&mut self) -> Small {
        self.smalls.push(DMatrix::zeros(self.k, self.k));
        Small(self.smalls.len() - 1)
    }
    fn new_scalar(&mut self) -> Scalar {
        let index = self.checks.new_scalar();
        self.scalars.push(T::zero());
        Scalar(index)
    }

    fn new_projected(&mut self) -> Projected {
        let n = SEARCH_BLOCKS * self.k;
        self.projected.push(DMatrix::zeros(n, n));
        Projected(self.projected.len() - 1)
    }

    fn upload(&mut self, dst: Tall, values: &[f64]) -> Result<()> {
        self.checks.upload(values.len(), self.m(), self.k)?;
        let t = &mut self.talls[dst.0];
        for (d, &v) in t.iter_mut().zip(values) {
            *d = T::of_f64(v);
        }
        Ok(())
    }
    fn download(&mut self, src: Tall) -> Result<Vec<f64>> {
        Ok(self.talls[src.0].iter().map(|v| v.as_f64()).collect())
    }

    fn c_mul(&mut self, x: Tall, out: Tall) {
        self.checks.distinct(x, out, "c_mul");
        self.passes += 1;
        let (m, k) = (self.m(), self.k);
        let mut o = std::mem::take(&mut self.talls[out.0]);
        match &self.c {
            CpuGram::Dense(c) => product(
                c.as_slice(),
                self.talls[x.0].as_slice(),
                o.as_mut_slice(),
                (m, m, k),
                parallelism(),
            ),
            CpuGram::Operator { op, scale } => {
                let product = op.apply(&self.talls[x.0].map(|v| v.as_f64()));
                for (d, &v) in o.iter_mut().zip(product.iter()) {
                    *d = T::of_f64(v / scale);
                }
            }
        }
        self.talls[out.0] = o;
    }
    fn inner(&mut self, a: Tall, b: Tall, out: Small) {
        let (m, k) = (self.m(), self.k);
        let (a, b) = (self.talls[a.0].as_slice(), self.talls[b.0].as_slice());
        product_tn(
            a,
            b,
            self.smalls[out.0].as_mut_slice(),
            (k, m, k),
            parallelism(),
        );
    }
    fn mul_small(&mut self, a: Tall, s: Small, out: Tall) {
        self.checks.distinct(a, out, "mul_small");
        let (m, k) = (self.m(), self.k);
        let mut o = std::mem::take(&mut self.talls[out.0]);
        let (a, s) = (self.talls[a.0].as_slice(), self.smalls[s.0].as_slice());
        product(a, s, o.as_mut_slice(), (m, k, k), parallelism());
        self.talls[out.0] = o;
    }
    fn inverse_spd(&mut self, s: Small, shift: f64, out: Small) {
        let mut a = self.smalls[s.0].clone();
        for i in 0..self.k {
            a[(i, i)] += T::of_f64(shift);
        }
        // A matrix that is not numerically positive definite only arises from a diverging iterate: the
        // NaN result is caught by the next stopping check as a divergence.
        self.smalls[out.0] = match a.cholesky() {
            Some(ch) => ch.inverse(),
            None => DMatrix::from_element(self.k, self.k, T::of_f64(f64::NAN)),
        };
    }
    fn inner_block(&mut self, a: Tall, b: Tall, out: Projected, (i, j): (usize, usize)) {
        self.checks.block(i, "inner_block");
        self.checks.block(j, "inner_block");
        let (m, k) = (self.m(), self.k);
        let mut block = std::mem::take(&mut self.block_scratch);
        block.clear();
        block.resize(k * k, T::zero());
        let (a, b) = (self.talls[a.0].as_slice(), self.talls[b.0].as_slice());
        product_tn(a, b, &mut block, (k, m, k), parallelism());
        let block_view = nalgebra::DMatrixView::from_slice(&block, k, k);
        let h = &mut self.projected[out.0];
        h.view_mut((i * k, j * k), (k, k)).copy_from(&block_view);
        if i != j {
            h.view_mut((j * k, i * k), (k, k))
                .copy_from(&block_view.transpose());
        }
        self.block_scratch = block;
    }
    fn mul_block(&mut self, a: Tall, y: Projected, i: usize, out: Tall) {
        self.checks.distinct(a, out, "mul_block");
        self.checks.block(i, "mul_block");
        let mut o = std::mem::take(&mut self.talls[out.0]);
        self.times_row_block(a, y, i, o.as_mut_slice());
        self.talls[out.0] = o;
    }
    fn projected(
        &mut self,
        basis: [Tall; SEARCH_BLOCKS],
        image: [Tall; SEARCH_BLOCKS],
        out: Projected,
    ) {
        for (i, &a) in basis.iter().enumerate() {
            for (j, &b) in image.iter().enumerate().skip(i) {
                self.inner_block(a, b, out, (i, j));
            }
        }
    }
    fn mul_blocks(
        &mut self,
        sets: [[Tall; SEARCH_BLOCKS]; 2],
        y: Projected,
        all: [Tall; 2],
        tail: [Tall; 2],
    ) {
        check_mul_blocks(&sets, all, tail);
        let (m, k) = (self.m(), self.k);
        // Each product as mul_block computes it (beta = 0: the old values are not read).
        let mut products = std::mem::take(&mut self.block_products);
        products.resize_with(SEARCH_BLOCKS, || DMatrix::zeros(m, k));
        for (s, a) in sets.iter().enumerate() {
            for (i, (&block, t)) in a.iter().zip(products.iter_mut()).enumerate() {
                self.times_row_block(block, y, i, t.as_mut_slice());
            }
            for (out, first) in [(all[s], 0), (tail[s], 1)] {
                let o = &mut self.talls[out.0];
                o.fill(T::zero());
                for t in &products[first..] {
                    o.as_mut_slice()
                        .iter_mut()
                        .zip(t.as_slice())
                        .for_each(|(acc, v)| *acc += *v);
                }
            }
        }
        self.block_products = products;
    }
    fn mul_small_sub(&mut self, out: Tall, base: Tall, a: Tall, s: Small) {
        self.checks.distinct(a, out, "mul_small_sub");
        let (m, k) = (self.m(), self.k);
        let mut t = std::mem::take(&mut self.scratch);
        t.clear();
        t.resize(m * k, T::zero());
        let (a, s) = (self.talls[a.0].as_slice(), self.smalls[s.0].as_slice());
        product(a, s, &mut t, (m, k, k), parallelism());
        let mut o = std::mem::take(&mut self.talls[out.0]);
        if out != base {
            o.copy_from(&self.talls[base.0]);
        }
        o.as_mut_slice()
            .iter_mut()
            .zip(&t)
            .for_each(|(v, p)| *v -= *p);
        self.talls[out.0] = o;
        self.scratch = t;
    }
    fn ritz_vectors(&mut self, h: Projected, out: Projected) {
        if !self.projected[h.0].iter().all(|v| v.is_finite()) {
            self.projected[out.0].fill(T::of_f64(f64::NAN));
            return;
        }
        let eig = SymmetricEigen::new(self.projected[h.0].clone());
        let order = descending(eig.eigenvalues.as_slice());
        let o = &mut self.projected[out.0];
        for (dst, &src) in order.iter().enumerate() {
            o.set_column(dst, &eig.eigenvectors.column(src));
        }
    }
    fn orthonormalizer(&mut self, g: Small, out: Small) {
        let k = self.k;
        if !self.smalls[g.0].iter().all(|v| v.is_finite()) {
            self.smalls[out.0].fill(T::of_f64(f64::NAN));
            return;
        }
        let g = &self.smalls[g.0];
        // D = diag(g)^{-1/2}, zero for a zero column.
        let d: Vec<T> = (0..k)
            .map(|i| {
                let v = g[(i, i)];
                if v > T::zero() {
                    T::one() / v.sqrt()
                } else {
                    T::zero()
                }
            })
            .collect();
        let scaled = DMatrix::from_fn(k, k, |i, j| g[(i, j)] * d[i] * d[j]);
        let eig = SymmetricEigen::new(scaled);
        let order = descending(eig.eigenvalues.as_slice());
        let largest = eig.eigenvalues[order[0]];
        let floor = largest * T::of_f64(ORTHO_DROP_ULPS * T::EPSILON);
        let o = &mut self.smalls[out.0];
        for (dst, &src) in order.iter().enumerate() {
            let value = eig.eigenvalues[src];
            let scale = if value > floor && value > T::zero() {
                T::one() / value.sqrt()
            } else {
                T::zero()
            };
            for i in 0..k {
                o[(i, dst)] = d[i] * eig.eigenvectors[(i, src)] * scale;
            }
        }
    }
    fn combine(&mut self, out: Tall, terms: &[(Coef, Tall)]) {
        self.checks.combine(terms);
        let len = self.m() * self.k;
        let mut o = std::mem::take(&mut self.scratch);
        o.clear();
        o.resize(len, T::zero());
        for &(c, t) in terms {
            let c = self.coef(c);
            for (acc, v) in o.iter_mut().zip(self.talls[t.0].as_slice()) {
                *acc += c * *v;
            }
        }
        self.talls[out.0].copy_from_slice(&o);
        self.scratch = o;
    }
    fn dot(&mut self, a: Tall, b: Tall, out: Scalar) {
        self.scalars[out.0] = self.talls[a.0].dot(&self.talls[b.0]);
    }
    fn copy_scalar(&mut self, src: Scalar, dst: Scalar) {
        self.scalars[dst.0] = self.scalars[src.0];
    }
    fn record_stop(&mut self, pairs: &[(Tall, Tall)]) {
        self.checks.record_stop(pairs);
        let q: f64 = pairs
            .iter()
            .map(|(a, b)| (&self.talls[a.0] - &self.talls[b.0]).norm().as_f64())
            .sum();
        self.pending.push(q);
    }
    fn record_stop_ratio(&mut self, num: Tall, den: Tall, columns: usize) {
        self.checks.record_stop_ratio(columns, self.k);
        let den = self.talls[den.0].columns(0, columns).norm().as_f64();
        let num = self.talls[num.0].columns(0, columns).norm().as_f64();
        self.pending.push(if den == 0.0 { 0.0 } else { num / den });
    }
    fn passes(&self) -> usize {
        self.passes
    }
    fn submit_check(&mut self) {
        self.checks.submitted();
        self.submitted.push_back(std::mem::take(&mut self.pending));
    }
    fn read_check(&mut self) -> Result<Vec<f64>> {
        self.checks.read();
        Ok(self.submitted.pop_front().expect("counted by the checks"))
    }
    fn overlaps_checks(&self) -> bool {
        self.overlaps_checks
    }
    fn stats(&self) -> EngineStats {
        EngineStats::default()
    }
}

/// The indices of `values` by decreasing value (ties in index order, so the result is deterministic).
fn descending<T: Real>(values: &[T]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].as_f64().total_cmp(&values[a].as_f64()));
    order
}
