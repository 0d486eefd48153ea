// Small family: k x k solves for the exact solvers.
//
// inverse_spd: out = (s + shift·I)⁻¹ for a symmetric positive definite matrix, by Gauss–Jordan
// elimination without pivoting (stable for SPD matrices), in one workgroup, rows shared among threads.
// The solvers only pass VᵀCV + λI and WᵀW, positive definite by construction; a zero pivot (a singular
// matrix, e.g. from a diverging iterate) gives non-finite entries, which the next stopping check reports
// as a divergence. An indefinite, non-singular matrix would give a finite but meaningless result.

// The Rust twin: SmallParams in src/gpu/contract.rs (tests/shaders.rs compares the layouts).
struct SmallParams {
    k: u32,
    // The shift as the sum of two f32 values (f64 kernels add them in f64: ~48 bits).
    shift_hi: f32,
    shift_lo: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> p: SmallParams;
@group(0) @binding(1) var<storage, read> s: array<Real>;
@group(0) @binding(2) var<storage, read_write> out: array<Real>;

override WG: u32 = 64u;

var<workgroup> pivot: Real;

@compute @workgroup_size(WG)
fn inverse_spd(@builtin(local_invocation_id) lid: vec3<u32>) {
    let k = p.k;
    for (var e = lid.x; e < k * k; e += WG) {
        var v = s[e];
        if (e % k == e / k) {
            v += Real(p.shift_hi) + Real(p.shift_lo);
        }
        out[e] = v;
    }
    storageBarrier();
    workgroupBarrier();
    for (var q = 0u; q < k; q++) {
        if (lid.x == 0u) {
            pivot = out[q * k + q];
        }
        storageBarrier();
        workgroupBarrier();
        let piv = pivot;
        // Row q divided by the pivot; its diagonal entry becomes 1 / pivot.
        for (var j = lid.x; j < k; j += WG) {
            if (j == q) {
                out[j * k + q] = 1.0 / piv;
            } else {
                out[j * k + q] = out[j * k + q] / piv;
            }
        }
        storageBarrier();
        workgroupBarrier();
        // Every other row i loses f = a[i, q] times row q; its q-th entry becomes −f / pivot.
        for (var i = lid.x; i < k; i += WG) {
            if (i != q) {
                let f = out[q * k + i];
                for (var j = 0u; j < k; j++) {
                    if (j == q) {
                        out[j * k + i] = -f * out[q * k + q];
                    } else {
                        out[j * k + i] -= f * out[j * k + q];
                    }
                }
            }
        }
        storageBarrier();
        workgroupBarrier();
    }
}
