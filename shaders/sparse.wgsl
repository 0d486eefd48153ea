// Sparse family: the operator route's product C·W = X_cᵀ (X_c W) from a sparse X held on the device,
// never forming C (src/gpu/engine.rs: SparseOnDevice). With μ the column means, t = μᵀW and s = 1ᵀY:
//   Y = X W − 1 tᵀ          (spmm over X's rows; Y is n x k)
//   Z = Xᵀ Y − μ sᵀ          (spmm over Xᵀ's rows, that is X's columns; Z is the m x k product)
// which is X_cᵀ X_c W whatever rounding t carries (the s term takes it back out), so t only keeps Y
// small. The host scales X's values and μ by 1/√c before upload (c the loop's scale of C, ≥ ‖C‖₂),
// so that Z is the loop's C / c times W and no intermediate leaves f32's range.
//
// A sparse matrix is held in row panels, one storage buffer each, of u32 words: the panel's row
// offsets (rows + 1, from 0), then its column indices (entries), then its values' f32 bits (entries).
// Each output entry is one workgroup's fixed-order tree sum over its row's entries, so the same input
// gives the same bits. Tall matrices are column-major (column stride ld_b, ld_out).

// The Rust twin: SparseParams in src/gpu/contract.rs (tests/shaders.rs compares the layouts).
struct SparseParams {
    // spmm: rows of the panel; column_sums: rows of b summed
    rows: u32,
    // spmm: the first row of the panel in the output (a feature index for Xᵀ's panels)
    row0: u32,
    // spmm: the entries of the panel
    entries: u32,
    // columns of b and of the output
    k: u32,
    // b's column stride
    ld_b: u32,
    // out's column stride
    ld_out: u32,
    // spmm: 0 subtracts sums[c] from every row (Y); 1 subtracts mean[row0 + r]·sums[c] (Z).
    // column_sums: 0 sums the rows, 1 weighs row i by mean[i].
    weighted: u32,
    // spmm: rows of out written, the panel's and zeros after them (the padding of a tall matrix)
    rows_out: u32,
}

@group(0) @binding(0) var<storage, read> p: SparseParams;
@group(0) @binding(1) var<storage, read> panel: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> sums: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> sums_out: array<f32>;

override WG: u32 = 256u;

// tree_sum and its workgroup array `partial`: shaders/prelude/tree_sum.wgsl.

// spmm: row r of the panel (one workgroup each, the grid folded over two dimensions) times b, less
// the centring term, for every column c: out[c·ld_out + row0 + r].
@compute @workgroup_size(WG)
fn spmm(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let r = wg.x + wg.y * nwg.x;
    if (r >= p.rows_out) {
        return;
    }
    let i = p.row0 + r;
    if (r >= p.rows) {
        for (var c = lid.x; c < p.k; c += WG) {
            out[c * p.ld_out + i] = 0.0;
        }
        return;
    }
    let start = panel[r];
    let end = panel[r + 1u];
    let indices = p.rows + 1u;
    let values = indices + p.entries;
    var a = 1.0;
    if (p.weighted != 0u) {
        a = mean[i];
    }
    for (var c = 0u; c < p.k; c++) {
        var s = 0.0;
        for (var e = start + lid.x; e < end; e += WG) {
            s += bitcast<f32>(panel[values + e]) * b[c * p.ld_b + panel[indices + e]];
        }
        let total = tree_sum(lid.x, s);
        if (lid.x == 0u) {
            out[c * p.ld_out + i] = total - a * sums[c];
        }
    }
}

// column_sums: sums_out[c] = Σᵢ wᵢ b[c·ld_b + i] over the first `rows` rows, wᵢ = 1 or mean[i]; one
// workgroup per column.
@compute @workgroup_size(WG)
fn column_sums(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wg.x;
    var s = 0.0;
    for (var i = lid.x; i < p.rows; i += WG) {
        var w = 1.0;
        if (p.weighted != 0u) {
            w = mean[i];
        }
        s += w * b[c * p.ld_b + i];
    }
    let total = tree_sum(lid.x, s);
    if (lid.x == 0u) {
        sums_out[c] = total;
    }
}
