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
    // inverse_spd_of_parts: the k x k parts in s that sum to the matrix.
    parts: u32,
}

@group(0) @binding(0) var<storage, read> p: SmallParams;
@group(0) @binding(1) var<storage, read> s: array<Real>;
@group(0) @binding(2) var<storage, read_write> out: array<Real>;
// inverse_spd_of_parts: the summed matrix (before the shift).
@group(0) @binding(3) var<storage, read_write> gram: array<Real>;

override WG: u32 = 64u;

var<workgroup> pivot: Real;

@compute @workgroup_size(WG)
fn inverse_spd(@builtin(local_invocation_id) lid: vec3<u32>) {
    let k = p.k;
    for (var e = lid.x; e < k * k; e += WG) {
        out[e] = shifted(e, s[e]);
    }
    eliminate(lid);
}

// inverse_spd_of_parts: inverse_spd of the sum of the p.parts k x k matrices in s (matmul.wgsl's
// c_mul_gram writes them), added in order; the sum also goes to gram.
@compute @workgroup_size(WG)
fn inverse_spd_of_parts(@builtin(local_invocation_id) lid: vec3<u32>) {
    let k = p.k;
    for (var e = lid.x; e < k * k; e += WG) {
        var v: Real = 0.0;
        for (var part = 0u; part < p.parts; part++) {
            v += s[part * k * k + e];
        }
        gram[e] = v;
        out[e] = shifted(e, v);
    }
    eliminate(lid);
}

// Entry e of the matrix v belongs to, plus the shift on the diagonal.
fn shifted(e: u32, v: Real) -> Real {
    if (e % p.k == e / p.k) {
        return v + (Real(p.shift_hi) + Real(p.shift_lo));
    }
    return v;
}

// out ← out⁻¹ (out holds the shifted matrix), by Gauss–Jordan elimination.
fn eliminate(lid: vec3<u32>) {
    let k = p.k;
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
