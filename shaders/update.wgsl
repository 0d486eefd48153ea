// Update family: the fused element-wise updates of every solver, out = Σ cᵢ tᵢ (up to four terms), and
// scalar copies.
//
// A coefficient is a constant or a ratio of two scalars kept on the device (conjugate-gradient steps),
// taken as 0 when the denominator is 0. A term can read `out` itself (source 4), so that updates in
// place need no second binding of the same buffer.

// The Rust twin: CombineTerm in src/gpu/contract.rs.
struct CombineTerm {
    // 0: the constant value_hi + value_lo (two f32 values: f64 kernels add them in f64, ~48 bits);
    // 1: scalars[num] / scalars[den]; 2: −scalars[num] / scalars[den]
    kind: u32,
    value_hi: f32,
    num: u32,
    den: u32,
    // 0..3: the bindings t0..t3; 4: out
    source: u32,
    value_lo: f32,
    _pad0: u32,
    _pad1: u32,
}

// The Rust twin: UpdateParams in src/gpu/contract.rs (tests/shaders.rs compares the layouts).
struct UpdateParams {
    len: u32,
    terms: u32,
    src: u32,
    dst: u32,
    term: array<CombineTerm, 4>,
}

@group(0) @binding(0) var<storage, read> p: UpdateParams;
@group(0) @binding(1) var<storage, read> t0: array<Real>;
@group(0) @binding(2) var<storage, read> t1: array<Real>;
@group(0) @binding(3) var<storage, read> t2: array<Real>;
@group(0) @binding(4) var<storage, read> t3: array<Real>;
@group(0) @binding(5) var<storage, read_write> out: array<Real>;
@group(0) @binding(6) var<storage, read_write> scalars: array<Real>;

override WG: u32 = 256u;

fn coefficient(t: CombineTerm) -> Real {
    if (t.kind == 0u) {
        return Real(t.value_hi) + Real(t.value_lo);
    }
    let den = scalars[t.den];
    var r: Real = 0.0;
    if (den != 0.0) {
        r = scalars[t.num] / den;
    }
    if (t.kind == 2u) {
        r = -r;
    }
    return r;
}

fn term_value(source: u32, e: u32) -> Real {
    switch source {
        case 0u: { return t0[e]; }
        case 1u: { return t1[e]; }
        case 2u: { return t2[e]; }
        case 3u: { return t3[e]; }
        default: { return out[e]; }
    }
}

@compute @workgroup_size(WG)
fn combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG;
    if (e >= p.len) {
        return;
    }
    var acc: Real = 0.0;
    for (var i = 0u; i < p.terms; i++) {
        let t = p.term[i];
        acc += coefficient(t) * term_value(t.source, e);
    }
    out[e] = acc;
}

// scalars[dst] = scalars[src].
@compute @workgroup_size(1)
fn copy_scalar() {
    scalars[p.dst] = scalars[p.src];
}
