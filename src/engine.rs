//! The operations a solver loop needs, as a trait with two executors: one algorithm, two engines.
//!
//! Every solver in [`crate::solver`] is written once against [`Engine`]. The CPU engine runs each call at
//! once; the GPU engine records it into a command encoder and only submits and reads back at
//! [`Engine::check`]. All matrices inside the loop are tall m x k ([`Tall`]) or small k x k ([`Small`]);
//! C (m x m) is owned by the engine and only ever multiplied, so a step costs O(m²k).
//!
//! The encoder W1 (k x m) is stored transposed, as the m x k matrix `V = W1ᵀ`, so that both weights are
//! tall and every product is one of the few below.

use crate::error::Result;

/// The most terms [`Engine::combine`] takes (the GPU kernel has four input bindings).
pub const MAX_COMBINE_TERMS: usize = 4;
/// The most pairs [`Engine::record_stop`] takes (it takes at least one).
pub const MAX_STOP_PAIRS: usize = 2;
/// The most scalars an engine holds (the conjugate-gradient steps use three).
pub const MAX_SCALARS: usize = 16;

/// The most submitted checks an engine holds unread ([`Engine::submit_check`]): the one being read
/// and the next iteration's.
pub const MAX_UNREAD_CHECKS: usize = 2;

/// Handle of an m x k matrix held by an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tall(pub(crate) usize);
/// Handle of a k x k matrix held by an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Small(pub(crate) usize);
/// Handle of a (3k) x (3k) matrix held by an engine: the projection of C on a search basis of three
/// k-wide blocks `[X, R, P]` (block `(i, j)` is `Sᵢᵀ C Sⱼ`), or the eigenvectors of one, for the
/// Rayleigh–Ritz step of [`Solver::Auto`](crate::Solver::Auto).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Projected(pub(crate) usize);
/// The number of k-wide blocks of a search basis (the order of a [`Projected`] matrix is this times k).
pub const SEARCH_BLOCKS: usize = 3;
/// Handle of a scalar held by an engine (device-side on the GPU: never read back inside the loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scalar(pub(crate) usize);

/// A coefficient of [`Engine::combine`]: a constant known when the step is recorded, or a ratio of two
/// engine scalars (conjugate-gradient steps), taken as 0 when the denominator is 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Coef {
    /// A constant.
    Const(f64),
    /// `num / den` of two engine scalars (0 when `den` is 0).
    Ratio(Scalar, Scalar),
    /// `−num / den` of two engine scalars (0 when `den` is 0).
    NegRatio(Scalar, Scalar),
}

/// What an engine has done so far: the counts that show whether a loop keeps the device busy without
/// host round trips or allocations. The CPU engine submits, waits for and creates nothing: all zeros.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Command buffers submitted to the device queue.
    pub submissions: usize,
    /// Times the host blocked until the device finished (each read-back: checks, the final weights).
    pub host_waits: usize,
    /// Compute dispatches recorded (one per engine operation on the GPU; the small eigenproblems from
    /// order ~45 on (at a workgroup of 256) take several, see `jacobi_plan` in src/gpu/engine.rs).
    pub dispatches: usize,
    /// Device buffers created (parameter buffers included).
    pub buffers_created: usize,
    /// Bind groups created.
    pub bind_groups_created: usize,
}

impl std::ops::Sub for EngineStats {
    type Output = EngineStats;
    /// The counts between two snapshots (`later - earlier`).
    fn sub(self, earlier: EngineStats) -> EngineStats {
        EngineStats {
            submissions: self.submissions - earlier.submissions,
            host_waits: self.host_waits - earlier.host_waits,
            dispatches: self.dispatches - earlier.dispatches,
            buffers_created: self.buffers_created - earlier.buffers_created,
            bind_groups_created: self.bind_groups_created - earlier.bind_groups_created,
        }
    }
}

/// The counts of one fit's solver loop (see [`EngineStats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// The whole loop: the initial weights' upload, every block and check, the final read-back.
    pub total: EngineStats,
    /// The last block of `check_every` iterations from the third on (the first ones create the bind
    /// groups of each call site and of the swapped handles): what each further block costs. None when
    /// the loop ran fewer than three full blocks.
    pub steady_block: Option<EngineStats>,
    /// Iterations in one such block (`check_every`).
    pub block_iterations: usize,
    /// Passes over C run ahead of a check and discarded because that check ended the loop (the
    /// default solver on the GPU: at most 1; counted in `total`, not in `Fit::passes`).
    pub discarded_passes: usize,
}

/// The executor of a solver loop. Handles come from the `new_*` functions of the same engine.
///
/// Both engines check the same limits through the same checks (`CallCheck`): [`MAX_COMBINE_TERMS`],
/// [`MAX_STOP_PAIRS`], [`MAX_SCALARS`], at most `check_every + 1` stopping quantities between two
/// checks, distinct input and output where a call says so, block indices below [`SEARCH_BLOCKS`]; so
/// a solver that runs on one engine runs on the other. A call that breaks one is a bug of the
/// solver, never a property of the data: it panics, naming the rule.
pub trait Engine {
    /// The number of features m (rows of C).
    fn m(&self) -> usize;
    /// The number of components k (columns of every tall matrix).
    fn k(&self) -> usize;

    /// A new m x k matrix, zero.
    fn new_tall(&mut self) -> Tall;
    /// A new k x k matrix, zero.
    fn new_small(&mut self) -> Small;
    /// A new scalar, zero.
    fn new_scalar(&mut self) -> Scalar;
    /// A new (3k) x (3k) matrix, zero.
    fn new_projected(&mut self) -> Projected;

    /// Sets an m x k matrix from column-major f64 values (m·k of them, else [`Error::ShapeMismatch`]).
    ///
    /// [`Error::ShapeMismatch`]: crate::Error::ShapeMismatch
    fn upload(&mut self, dst: Tall, values: &[f64]) -> Result<()>;
    /// Reads an m x k matrix back as column-major f64 values (the one read-back of the weights).
    fn download(&mut self, src: Tall) -> Result<Vec<f64>>;

    /// `out = C x`. `out` must differ from `x`.
    fn c_mul(&mut self, x: Tall, out: Tall);
    /// `out = aᵀ b` (k x k).
    fn inner(&mut self, a: Tall, b: Tall, out: Small);
    /// `out = C x`, `gram = xᵀ out` and `inv = (gram + shift·I)⁻¹`, as [`c_mul`](Engine::c_mul),
    /// [`inner`](Engine::inner) and [`inverse_spd`](Engine::inverse_spd) give them, in fewer
    /// operations where the engine can (the GPU over a formed C: two dispatches, `gram` summed by
    /// blocks of C's rows in the product's epilogue, so its bits are not `inner`'s; one dispatch
    /// more per further row panel of C). `out` must differ from `x`, `inv` from `gram`.
    fn c_mul_inverse(&mut self, x: Tall, out: Tall, gram: Small, shift: f64, inv: Small) {
        assert_ne!(gram, inv, "c_mul_inverse: inv must differ from gram");
        c_mul_inverse_unfused(self, x, out, gram, shift, inv);
    }
    /// `out = a s` (m x k). `out` must differ from `a`.
    fn mul_small(&mut self, a: Tall, s: Small, out: Tall);
    /// `out = (s + shift·I)⁻¹` for a symmetric positive definite `s + shift·I` (Cholesky on the CPU,
    /// Gauss–Jordan without pivoting on the GPU). An indefinite matrix is the caller's error: the CPU
    /// returns NaN, the GPU a meaningless (possibly finite) matrix.
    fn inverse_spd(&mut self, s: Small, shift: f64, out: Small);
    /// Block `(i, j)` (k x k, i, j < [`SEARCH_BLOCKS`]) of `out` becomes `aᵀ b`, and block `(j, i)` its
    /// transpose (so that `out` stays symmetric).
    fn inner_block(&mut self, a: Tall, b: Tall, out: Projected, block: (usize, usize));
    /// `out = a Y_i` with `Y_i` the k x k block of rows `i·k..(i+1)·k` and the first k columns of `y`.
    /// `out` must differ from `a`.
    fn mul_block(&mut self, a: Tall, y: Projected, i: usize, out: Tall);
    /// The projected matrix `out = Sᵀ (C S)` of a search basis `S = [basis…]` whose image under C is
    /// `C S = [image…]`: block `(i, j)` with `i ≤ j` becomes `basisᵢᵀ imageⱼ` and block `(j, i)` its
    /// transpose, as [`inner_block`](Engine::inner_block) writes them (the same bits), in one
    /// operation.
    fn projected(
        &mut self,
        basis: [Tall; SEARCH_BLOCKS],
        image: [Tall; SEARCH_BLOCKS],
        out: Projected,
    );
    /// For each of the two sets `a = sets[s]`: `all[s] = Σᵢ aᵢ Yᵢ` and `tail[s] = Σ_{i ≥ 1} aᵢ Yᵢ`,
    /// with `Yᵢ` as in [`mul_block`](Engine::mul_block): the terms summed in order from zero, as
    /// [`combine`](Engine::combine) sums the products `mul_block` gives (the same bits), in one
    /// operation (the default solver's new iterate and its image under C, from the basis and its
    /// image). The four outputs must differ from each other and from every input.
    fn mul_blocks(
        &mut self,
        sets: [[Tall; SEARCH_BLOCKS]; 2],
        y: Projected,
        all: [Tall; 2],
        tail: [Tall; 2],
    );
    /// `out = base − a s` (m x k), as [`mul_small`](Engine::mul_small) then
    /// [`combine`](Engine::combine) give it (the same bits), in one operation. `out` may be `base`;
    /// it must differ from `a`.
    fn mul_small_sub(&mut self, out: Tall, base: Tall, a: Tall, s: Small);
    /// `outᵢ = aᵢ s` for both i, as two [`mul_small`](Engine::mul_small) calls give them (the same
    /// bits), in one operation (a block and its image under C transformed alike). The outputs must
    /// differ from each other and from both inputs.
    fn mul_small_pair(&mut self, a: [Tall; 2], s: Small, out: [Tall; 2]) {
        check_outputs(&out, &a, "mul_small_pair");
        for i in 0..2 {
            self.mul_small(a[i], s, out[i]);
        }
    }
    /// `vᵢ ← vᵢ − aᵢ s` for both i, as two in-place [`mul_small_sub`](Engine::mul_small_sub) calls
    /// give them (the same bits), in one operation. The `vᵢ` must differ from each other and from
    /// both `aᵢ`.
    fn mul_small_sub_pair(&mut self, v: [Tall; 2], a: [Tall; 2], s: Small) {
        check_outputs(&v, &a, "mul_small_sub_pair");
        for i in 0..2 {
            self.mul_small_sub(v[i], v[i], a[i], s);
        }
    }
    /// `out` = the eigenvectors of the symmetric `h` (columns, by decreasing eigenvalue). `h` is
    /// overwritten (or not). CPU: nalgebra's symmetric QR algorithm; GPU: cyclic Jacobi in one
    /// workgroup. A non-finite `h` gives a meaningless `out`, which the next stopping check reports.
    fn ritz_vectors(&mut self, h: Projected, out: Projected);
    /// For the Gram matrix `g = BᵀB` of a block B, the k x k `out` such that `B·out` has orthonormal
    /// columns, or zero columns where B has no further direction (SVQB, Stathopoulos & Wu 2002: the
    /// eigenvalue form of Cholesky-QR): with `D = diag(g)^{-1/2}` and `D g D = V Λ Vᵀ`,
    /// `out = D V Λ^{-1/2}`, the columns with `Λⱼ ≤ ORTHO_DROP_ULPS · ε · max Λ` (ε of the working
    /// precision) set to zero, and rows for a zero diagonal of `g` too. `g` is overwritten (or not).
    fn orthonormalizer(&mut self, g: Small, out: Small);
    /// `out = Σ cᵢ tᵢ`, element-wise; `out` may be one of the `tᵢ`. At most [`MAX_COMBINE_TERMS`]
    /// terms.
    fn combine(&mut self, out: Tall, terms: &[(Coef, Tall)]);
    /// `out = ⟨a, b⟩_F = trace(aᵀ b)`.
    fn dot(&mut self, a: Tall, b: Tall, out: Scalar);
    /// `dst = src`.
    fn copy_scalar(&mut self, src: Scalar, dst: Scalar);
    /// Records this iteration's stopping quantity `Σⱼ ‖aⱼ − bⱼ‖_F`, over 1 to [`MAX_STOP_PAIRS`] pairs.
    fn record_stop(&mut self, pairs: &[(Tall, Tall)]);
    /// Records this iteration's stopping quantity `‖num‖_F / ‖den‖_F` (0 when `den` is zero) over
    /// the first `columns` columns of each (1 to k).
    fn record_stop_ratio(&mut self, num: Tall, den: Tall, columns: usize);
    /// Products of C with a block of k columns so far (the calls of [`Engine::c_mul`]).
    fn passes(&self) -> usize;
    /// Runs everything recorded and returns the stopping quantities recorded since the last check, in
    /// order. With its two halves, the only synchronisation inside the loop on the GPU.
    fn check(&mut self) -> Result<Vec<f64>> {
        self.submit_check();
        self.read_check()
    }
    /// The first half of [`check`](Engine::check): runs everything recorded, with the stopping
    /// quantities recorded since the last submitted check, whose values [`read_check`] returns later
    /// (at most [`MAX_UNREAD_CHECKS`] submitted checks unread).
    ///
    /// [`read_check`]: Engine::read_check
    fn submit_check(&mut self);
    /// The second half of [`check`](Engine::check): the stopping quantities of the oldest submitted
    /// check not yet read. The GPU waits for that check's submission only, so that work submitted
    /// after it keeps the device busy meanwhile.
    fn read_check(&mut self) -> Result<Vec<f64>>;
    /// Whether a solver that checks every iteration should record and submit its next iteration
    /// before it reads a check: true on the GPU (so that the device never waits for the host), false
    /// on the CPU (where nothing would run meanwhile and the extra pass would be lost time).
    fn overlaps_checks(&self) -> bool {
        false
    }
    /// The counts so far (see [`EngineStats`]).
    fn stats(&self) -> EngineStats;
    /// The GPU time of what ran so far, measured by timestamp queries and read back with the checks and
    /// downloads: None on the CPU, on devices without them, and while some of it is unread.
    fn kernel_time(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Relative size, in ulps of the working precision, of the largest eigenvalue of a column-scaled Gram
/// matrix below which [`Engine::orthonormalizer`] drops a direction: a Gram matrix formed in precision
/// ε carries noise of a few ε times its largest eigenvalue, so a direction that small is rounding.
pub const ORTHO_DROP_ULPS: f64 = 100.0;

/// The rule of the operations that write several outputs at once ([`Engine::mul_blocks`] and the
/// pair operations): every output differs from every other and from every input, so that no thread
/// of a fused kernel reads what another writes. Called by both engines (the pair operations' default
/// bodies and the GPU's kernels).
pub(crate) fn check_outputs(outputs: &[Tall], inputs: &[Tall], operation: &str) {
    for (i, out) in outputs.iter().enumerate() {
        assert!(
            !outputs[..i].contains(out),
            "{operation}: its outputs must differ from each other"
        );
        assert!(
            !inputs.contains(out),
            "{operation}: its outputs must differ from its inputs"
        );
    }
}

/// [`Engine::c_mul_inverse`] as its three operations (the trait's default, and the GPU's where it
/// cannot fuse them).
pub(crate) fn c_mul_inverse_unfused<E: Engine + ?Sized>(
    e: &mut E,
    x: Tall,
    out: Tall,
    gram: Small,
    shift: f64,
    inv: Small,
) {
    e.c_mul(x, out);
    e.inner(x, out, gram);
    e.inverse_spd(gram, shift, inv);
}

/// [`Engine::mul_blocks`]'s rule: its four outputs differ from each other and from its six inputs.
pub(crate) fn check_mul_blocks(sets: &[[Tall; SEARCH_BLOCKS]; 2], all: [Tall; 2], tail: [Tall; 2]) {
    let outputs = [all[0], all[1], tail[0], tail[1]];
    check_outputs(&outputs, sets.as_flattened(), "mul_blocks");
}

/// The engine limits, checked by both engines through these calls (each rule written once). An engine
/// calls the check that goes with each of its operations before doing anything else.
#[derive(Clone, Debug)]
pub(crate) struct CallCheck {
    scalars: usize,
    recorded: usize,
    record_capacity: usize,
    unread: usize,
}

impl CallCheck {
    /// The checks of an engine whose loop checks at most every `check_every` iterations: then at most
    /// `check_every + 1` stopping quantities come between two checks.
    pub fn new(check_every: usize) -> Self {
        CallCheck {
            scalars: 0,
            recorded: 0,
            record_capacity: check_every.saturating_add(1),
            unread: 0,
        }
    }

    /// The most stopping quantities recorded between two checks.
    pub fn record_capacity(&self) -> usize {
        self.record_capacity
    }

    /// [`Engine::new_scalar`]: the new scalar's index, below [`MAX_SCALARS`].
    pub fn new_scalar(&mut self) -> usize {
        assert!(
            self.scalars < MAX_SCALARS,
            "an engine holds at most {MAX_SCALARS} scalars"
        );
        self.scalars += 1;
        self.scalars - 1
    }

    /// [`Engine::upload`]: `len` values for an m x k matrix.
    pub fn upload(&self, len: usize, m: usize, k: usize) -> Result<()> {
        if len != m * k {
            return Err(crate::Error::ShapeMismatch {
                what: format!("{len} values uploaded into an {m} x {k} matrix"),
            });
        }
        Ok(())
    }

    /// [`Engine::c_mul`], [`Engine::mul_small`], [`Engine::mul_block`], [`Engine::mul_small_sub`]:
    /// the output is not the input.
    pub fn distinct(&self, input: Tall, out: Tall, operation: &str) {
        assert_ne!(
            input, out,
            "{operation}: the output must differ from the input"
        );
    }

    /// [`Engine::inner_block`], [`Engine::mul_block`]: a block index of a search basis.
    pub fn block(&self, i: usize, operation: &str) {
        assert!(
            i < SEARCH_BLOCKS,
            "{operation}: block {i} of a basis of {SEARCH_BLOCKS} blocks"
        );
    }

    /// [`Engine::combine`]: at most [`MAX_COMBINE_TERMS`] terms.
    pub fn combine(&self, terms: &[(Coef, Tall)]) {
        assert!(
            terms.len() <= MAX_COMBINE_TERMS,
            "combine takes at most {MAX_COMBINE_TERMS} terms, not {}",
            terms.len()
        );
    }

    /// [`Engine::record_stop`]: 1 to [`MAX_STOP_PAIRS`] pairs, and room for one more value.
    pub fn record_stop(&mut self, pairs: &[(Tall, Tall)]) {
        assert!(
            (1..=MAX_STOP_PAIRS).contains(&pairs.len()),
            "record_stop takes 1 to {MAX_STOP_PAIRS} pairs, not {}",
            pairs.len()
        );
        self.record();
    }

    /// [`Engine::record_stop_ratio`]: 1 to k columns, and room for one more value.
    pub fn record_stop_ratio(&mut self, columns: usize, k: usize) {
        assert!(
            (1..=k).contains(&columns),
            "record_stop_ratio takes 1 to {k} columns, not {columns}"
        );
        self.record();
    }

    /// [`Engine::record_stop`], [`Engine::record_stop_ratio`]: room for one more value before the next
    /// check.
    pub fn record(&mut self) {
        assert!(
            self.recorded < self.record_capacity,
            "at most {} stopping quantities between two checks",
            self.record_capacity
        );
        self.recorded += 1;
    }

    /// [`Engine::submit_check`]: room for one more unread check; the values recorded since the last
    /// submitted check (the count is then reset).
    pub fn submitted(&mut self) -> usize {
        assert!(
            self.unread < MAX_UNREAD_CHECKS,
            "at most {MAX_UNREAD_CHECKS} submitted checks unread"
        );
        self.unread += 1;
        std::mem::take(&mut self.recorded)
    }

    /// [`Engine::read_check`]: a submitted check to read.
    pub fn read(&mut self) {
        assert!(self.unread > 0, "read_check follows a submit_check");
        self.unread -= 1;
    }
}
