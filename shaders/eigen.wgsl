// Eigen family: small symmetric eigenproblems (order n, column-major n x n), each in one workgroup, by
// the cyclic Jacobi method with the round-robin ordering: every round rotates n/2 disjoint pairs (p, q)
// at once (rotations of disjoint pairs commute, so a round is exact in parallel), n − 1 rounds a sweep,
// sweeps until the off-diagonal part is rounding noise. Two uses:
//
// ritz_vectors: out = the eigenvectors of a (the default solver's projected problem), by decreasing
//   eigenvalue.
// orthonormalizer: for a Gram matrix a = BᵀB, out = D V Λ^{-1/2} with D = diag(a)^{-1/2} and
//   D a D = V Λ Vᵀ, so that B·out has orthonormal columns (SVQB); columns whose Λ is at most `drop`
//   times the largest are zero (directions B does not have), and rows for a zero diagonal entry too.
//
// a is overwritten. work holds the eigenvectors V (n²), then the round's rotations (n + 1), then each
// eigenvalue's rank (n), then the diagonal scaling D (n), then the converged flag (1). A non-finite
// input gives a meaningless but finite-time result (the solver's next stopping check reports it).
//
// One eigenproblem is several dispatches of the same entry point, each running the rounds
// [round0, round_end) of the MAX_SWEEPS·(np − 1) rounds there may be (np = n rounded up to even): the
// first also initialises, the last also writes `out`; the state between them is a and work. The split
// changes no arithmetic, only where the dispatches end, and it keeps each dispatch's loop iterations
// per invocation bounded (llvmpipe, the software driver of CI, silently ends every loop of an
// invocation after 65535 iterations in all: a whole eigenproblem of order 126 in one dispatch needs
// more). Once converged, the remaining rounds do nothing. The plan: jacobi_plan in src/gpu/engine.rs.

// The Rust twin: EigenParams in src/gpu/contract.rs (tests/shaders.rs compares the layouts).
struct EigenParams {
    n: u32,
    // orthonormalizer: the relative eigenvalue floor
    drop: f32,
    // The rounds this dispatch runs: [round0, round_end).
    round0: u32,
    round_end: u32,
}

@group(0) @binding(0) var<storage, read> p: EigenParams;
@group(0) @binding(1) var<storage, read_write> a: array<Real>;
@group(0) @binding(2) var<storage, read_write> out: array<Real>;
@group(0) @binding(3) var<storage, read_write> work: array<Real>;

override WG: u32 = 256u;

// Sweeps before giving up (Jacobi converges quadratically: about 6 to 10 suffice). The Rust
// twin: JACOBI_MAX_SWEEPS in src/gpu/engine.rs.
const MAX_SWEEPS: u32 = 30u;

var<workgroup> converged: u32;

fn sync() {
    storageBarrier();
    workgroupBarrier();
}

// tree_sum (a fixed-order workgroup sum): shaders/prelude/tree_sum.wgsl.

// 1/sqrt(h) refined by `steps` (at most 3) Newton steps y ← y (3/2 − h y²/2), each doubling its
// correct digits: inverseSqrt may be 2 ulp off in f32 (Vulkan's bound), and in f64 Vulkan asks no
// more of it than f32's accuracy. EXTRA_NEWTON_STEPS (src/gpu/kernels.rs) is 0 in f32, 2 in f64 (from
// f32's ~1e-7 to f64's rounding). Written out, not as a loop: llvmpipe bounds an invocation's loop
// iterations (see the top of this file).
fn refined_inverse_sqrt(h: Real, steps: u32) -> Real {
    var y = inverseSqrt(h);
    if (steps >= 1u) {
        y = y * (1.5 - 0.5 * h * y * y);
    }
    if (steps >= 2u) {
        y = y * (1.5 - 0.5 * h * y * y);
    }
    if (steps >= 3u) {
        y = y * (1.5 - 0.5 * h * y * y);
    }
    return y;
}

// The work offsets of the rotations, the ranks, the scaling and the converged flag.
fn rotations_at(n: u32) -> u32 {
    return n * n;
}
fn ranks_at(n: u32) -> u32 {
    return n * n + n + 1u;
}
fn scaling_at(n: u32) -> u32 {
    return ranks_at(n) + n;
}
fn flag_at(n: u32) -> u32 {
    return scaling_at(n) + n;
}

// Whether this dispatch is the eigenproblem's last (it writes `out`).
fn is_last_dispatch() -> bool {
    let np = p.n + (p.n & 1u);
    return p.round_end == MAX_SWEEPS * (np - 1u);
}

// The pair i (of np / 2) of round r (of np − 1) of the round-robin tournament on np (even) indices:
// index np − 1 stays, the others turn. An index ≥ n is padding (n odd): its pair is skipped.
fn pair(r: u32, i: u32, np: u32) -> vec2<u32> {
    let turning = np - 1u;
    var x: u32;
    var y: u32;
    if (i == 0u) {
        x = r;
        y = turning;
    } else {
        x = (r + i) % turning;
        y = (r + turning - i) % turning;
    }
    return vec2<u32>(min(x, y), max(x, y));
}

// Applies round r's rotations to the pairs of columns (pair_stride = n, other_stride = 1: A ← A J,
// and with `vectors` V ← V J) or of rows (pair_stride = 1, other_stride = n: A ← Jᵀ A) of a.
fn apply_rotations(lid: u32, r: u32, np: u32, pair_stride: u32, other_stride: u32, vectors: bool) {
    let n = p.n;
    let rot = rotations_at(n);
    for (var e = lid; e < (np / 2u) * n; e += WG) {
        let i = e / n;
        let other = e % n;
        let pq = pair(r, i, np);
        if (pq.y < n) {
            let c = work[rot + 2u * i];
            let s = work[rot + 2u * i + 1u];
            let ix = pq.x * pair_stride + other * other_stride;
            let iy = pq.y * pair_stride + other * other_stride;
            let x = a[ix];
            let y = a[iy];
            a[ix] = c * x - s * y;
            a[iy] = s * x + c * y;
            if (vectors) {
                let vx = work[ix];
                let vy = work[iy];
                work[ix] = c * vx - s * vy;
                work[iy] = s * vx + c * vy;
            }
        }
    }
}

// Runs this dispatch's rounds of the diagonalisation of a (A ← Jᵀ A J over all rotations J),
// accumulating V = Π J in work[0..n²]. The first round of each sweep first checks convergence.
fn jacobi_rounds(lid: u32) {
    let n = p.n;
    let np = n + (n & 1u);
    let rot = rotations_at(n);
    let flag = flag_at(n);
    if (p.round0 == 0u) {
        for (var e = lid; e < n * n; e += WG) {
            work[e] = select(Real(0.0), Real(1.0), e % n == e / n);
        }
        if (lid == 0u) {
            work[flag] = 0.0;
        }
        sync();
    }
    if (lid == 0u) {
        converged = u32(work[flag]);
    }
    if (workgroupUniformLoad(&converged) == 1u) {
        return;
    }
    for (var g = p.round0; g < p.round_end; g++) {
        let r = g % (np - 1u);
        if (r == 0u) {
            var off: Real = 0.0;
            var diag: Real = 0.0;
            for (var e = lid; e < n * n; e += WG) {
                let v = a[e];
                if (e % n == e / n) {
                    diag += v * v;
                } else {
                    off += v * v;
                }
            }
            let off_total = tree_sum(lid, off);
            let diag_total = tree_sum(lid, diag);
            if (lid == 0u) {
                // Off-diagonal below (n ulps)² of the diagonal: rounding noise.
                let tol = Real(n) * EPSILON;
                converged = select(0u, 1u, off_total <= tol * tol * diag_total);
                work[flag] = Real(converged);
            }
            if (workgroupUniformLoad(&converged) == 1u) {
                break;
            }
        }
        // The rotation zeroing a[p, q] (Golub & Van Loan, sym.schur2).
        for (var i = lid; i < np / 2u; i += WG) {
            let pq = pair(r, i, np);
            var c: Real = 1.0;
            var s: Real = 0.0;
            if (pq.y < n) {
                let apq = a[pq.y * n + pq.x];
                if (apq != 0.0) {
                    let tau = (a[pq.y * n + pq.y] - a[pq.x * n + pq.x]) / (2.0 * apq);
                    var t: Real;
                    if (abs(tau) > 1e18) {
                        t = 0.5 / tau;
                    } else {
                        t = select(Real(-1.0), Real(1.0), tau >= 0.0) / (abs(tau) + sqrt(1.0 + tau * tau));
                    }
                    // c = 1/sqrt(1 + t²), to the working precision's rounding: a rotation with
                    // c² + s² ≠ 1 is no similarity transform (over a sweep's rotations the
                    // eigenvectors drift: pbmc68k_reduced's k = 50 floored at an angle of 1.5e-3 with
                    // f32's inverseSqrt alone, up to 2 ulp off by Vulkan's bound).
                    c = refined_inverse_sqrt(1.0 + t * t, 1u + EXTRA_NEWTON_STEPS);
                    s = t * c;
                }
            }
            work[rot + 2u * i] = c;
            work[rot + 2u * i + 1u] = s;
        }
        sync();
        // Columns p and q of A and V: A ← A J; then rows p and q: A ← Jᵀ A.
        apply_rotations(lid, r, np, n, 1u, true);
        sync();
        apply_rotations(lid, r, np, 1u, n, false);
        sync();
    }
}

// work[rank + i] = the position of eigenvalue i in decreasing order (ties by index).
fn rank_eigenvalues(lid: u32, rank: u32) {
    let n = p.n;
    for (var i = lid; i < n; i += WG) {
        let v = a[i * n + i];
        var before = 0u;
        for (var j = 0u; j < n; j++) {
            let w = a[j * n + j];
            if (w > v || (w == v && j < i)) {
                before++;
            }
        }
        work[rank + i] = Real(before);
    }
    sync();
}

@compute @workgroup_size(WG)
fn ritz_vectors(@builtin(local_invocation_id) lid: vec3<u32>) {
    jacobi_rounds(lid.x);
    if (!is_last_dispatch()) {
        return;
    }
    let n = p.n;
    let rank = ranks_at(n);
    rank_eigenvalues(lid.x, rank);
    for (var e = lid.x; e < n * n; e += WG) {
        let i = e / n;
        let row = e % n;
        out[u32(work[rank + i]) * n + row] = work[e];
    }
}

@compute @workgroup_size(WG)
fn orthonormalizer(@builtin(local_invocation_id) lid: vec3<u32>) {
    let n = p.n;
    let rank = ranks_at(n);
    let scale = scaling_at(n);
    if (p.round0 == 0u) {
        for (var i = lid.x; i < n; i += WG) {
            let d = a[i * n + i];
            // Any scale works here (the same D scales back below): no refinement.
            work[scale + i] = select(Real(0.0), inverseSqrt(d), d > 0.0);
        }
        sync();
        for (var e = lid.x; e < n * n; e += WG) {
            a[e] *= work[scale + e % n] * work[scale + e / n];
        }
        sync();
    }
    jacobi_rounds(lid.x);
    if (!is_last_dispatch()) {
        return;
    }
    rank_eigenvalues(lid.x, rank);
    var largest: Real = 0.0;
    for (var j = 0u; j < n; j++) {
        largest = max(largest, a[j * n + j]);
    }
    let floor = Real(p.drop) * largest;
    for (var e = lid.x; e < n * n; e += WG) {
        let i = e / n;
        let row = e % n;
        let value = a[i * n + i];
        let inv = select(
            Real(0.0),
            refined_inverse_sqrt(value, EXTRA_NEWTON_STEPS),
            value > floor && value > 0.0
        );
        out[u32(work[rank + i]) * n + row] = work[scale + row] * work[e] * inv;
    }
}
