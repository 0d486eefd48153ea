//! The CPU engine: each [`Engine`] call runs at once with nalgebra, in the working precision `T`.

use crate::engine::{Coef, Engine, EngineStats, Scalar, Small, Tall};
use crate::error::Result;
use crate::real::Real;
use nalgebra::DMatrix;

/// Executes solver steps on the CPU. Owns C (m x m) in `T`.
pub(crate) struct CpuEngine<T: Real> {
    c: DMatrix<T>,
    k: usize,
    talls: Vec<DMatrix<T>>,
    smalls: Vec<DMatrix<T>>,
    scalars: Vec<T>,
    pending: Vec<f64>,
    /// Reused by `combine` (its output may be one of its inputs), so the loop allocates nothing.
    scratch: Vec<T>,
}

impl<T: Real> CpuEngine<T> {
    pub fn new(c: &DMatrix<f64>, k: usize) -> Self {
        CpuEngine {
            c: c.map(T::of_f64),
            k,
            talls: Vec::new(),
            smalls: Vec::new(),
            scalars: Vec::new(),
            pending: Vec::new(),
            scratch: Vec::new(),
        }
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

impl<T: Real> Engine for CpuEngine<T> {
    fn m(&self) -> usize {
        self.c.nrows()
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
        self.scalars.push(T::zero());
        Scalar(self.scalars.len() - 1)
    }

    fn upload(&mut self, dst: Tall, values: &[f64]) -> Result<()> {
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
        debug_assert_ne!(x, out);
        let mut o = std::mem::take(&mut self.talls[out.0]);
        o.gemm(T::one(), &self.c, &self.talls[x.0], T::zero());
        self.talls[out.0] = o;
    }
    fn inner(&mut self, a: Tall, b: Tall, out: Small) {
        let s = &mut self.smalls[out.0];
        s.gemm_tr(T::one(), &self.talls[a.0], &self.talls[b.0], T::zero());
    }
    fn mul_small(&mut self, a: Tall, s: Small, out: Tall) {
        debug_assert_ne!(a, out);
        let mut o = std::mem::take(&mut self.talls[out.0]);
        o.gemm(T::one(), &self.talls[a.0], &self.smalls[s.0], T::zero());
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
    fn combine(&mut self, out: Tall, terms: &[(Coef, Tall)]) {
        let len = self.m() * self.k;
        let mut o = std::mem::take(&mut self.scratch);
        o.clear();
        o.resize(len, T::zero());
        for &(c, t) in terms {
            let c = self.coef(c);
            for (acc, v) in o.iter_mut().zip(self.talls[t.0].iter()) {
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
        let q: f64 = pairs
            .iter()
            .map(|(a, b)| (&self.talls[a.0] - &self.talls[b.0]).norm().as_f64())
            .sum();
        self.pending.push(q);
    }
    fn check(&mut self) -> Result<Vec<f64>> {
        Ok(std::mem::take(&mut self.pending))
    }
    fn stats(&self) -> EngineStats {
        EngineStats::default()
    }
}
