// Reduce family: Frobenius inner products and the stopping quantity, each in one workgroup with a
// fixed-order tree reduction, so that the same input gives the same bits.

// The Rust twin: ReduceParams in src/gpu/contract.rs (tests/shaders.rs compares the layouts).
struct ReduceParams {
    // the elements of a tall matrix (mp · k); stop_ratio: of its first columns, those counted
    len: u32,
    // dot: the scalar to write; stop_quantity: the number of pairs (1 or 2); stop_ratio: unused
    slot: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> p: ReduceParams;
@group(0) @binding(1) var<storage, read> a0: array<Real>;
@group(0) @binding(2) var<storage, read> b0: array<Real>;
@group(0) @binding(3) var<storage, read> a1: array<Real>;
@group(0) @binding(4) var<storage, read> b1: array<Real>;
@group(0) @binding(5) var<storage, read_write> scalars: array<Real>;
// history[0] counts the values recorded since the last read-back; they follow it.
@group(0) @binding(6) var<storage, read_write> history: array<Real>;

override WG: u32 = 256u;

// tree_sum and its workgroup array `partial`: shaders/prelude/tree_sum.wgsl.

// scalars[slot] = ⟨a0, b0⟩.
@compute @workgroup_size(WG)
fn dot(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s: Real = 0.0;
    for (var e = lid.x; e < p.len; e += WG) {
        s += a0[e] * b0[e];
    }
    let total = tree_sum(lid.x, s);
    if (lid.x == 0u) {
        scalars[p.slot] = total;
    }
}

// Appends ‖a0 − b0‖ (+ ‖a1 − b1‖ when slot = 2) to the history.
@compute @workgroup_size(WG)
fn stop_quantity(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s0: Real = 0.0;
    var s1: Real = 0.0;
    for (var e = lid.x; e < p.len; e += WG) {
        let d0 = a0[e] - b0[e];
        s0 += d0 * d0;
        if (p.slot == 2u) {
            let d1 = a1[e] - b1[e];
            s1 += d1 * d1;
        }
    }
    let n0 = tree_sum(lid.x, s0);
    let n1 = tree_sum(lid.x, s1);
    if (lid.x == 0u) {
        let count = u32(history[0]);
        history[count + 1u] = sqrt(n0) + sqrt(n1);
        history[0] = Real(count + 1u);
    }
}

// Appends ‖a0‖ / ‖b0‖ (0 when b0 is zero) to the history, over their first p.len entries (the
// leading columns of column-major tall matrices).
@compute @workgroup_size(WG)
fn stop_ratio(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s0: Real = 0.0;
    var s1: Real = 0.0;
    for (var e = lid.x; e < p.len; e += WG) {
        s0 += a0[e] * a0[e];
        s1 += b0[e] * b0[e];
    }
    let num = tree_sum(lid.x, s0);
    let den = tree_sum(lid.x, s1);
    if (lid.x == 0u) {
        let count = u32(history[0]);
        var q: Real = 0.0;
        if (den > 0.0) {
            q = sqrt(num / den);
        }
        history[count + 1u] = q;
        history[0] = Real(count + 1u);
    }
}
