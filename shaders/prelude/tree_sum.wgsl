// Prelude, not a kernel family: the registry (src/gpu/kernels.rs) appends it to the families that use
// it (matmul, reduce, eigen). It needs the family's `override WG` (a power of two).

var<workgroup> partial: array<Real, WG>;

// The sum of every thread's v over the workgroup, by a fixed-order tree (so that the same input gives
// the same bits); every thread gets the total, and `partial` is free again on return.
fn tree_sum(lid: u32, v: Real) -> Real {
    partial[lid] = v;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}
