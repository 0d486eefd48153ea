// Gram family: C += (X − s)ᵀ (X − s) for one chunk of samples, and the column sums Σ (x − s).
//
// X is a chunk of `rows` samples, row-major, each row padded to `mp` features (a multiple of 4, zeros
// beyond m), as the host copied them. The shift s (the first chunk's mean when centring, else zero, or
// zero when the host already shifted the rows) is subtracted here as tiles are loaded. `gram_columns`
// runs first on each chunk: on the first one (`first` = 1) it sets s to the chunk's column means, then it
// adds the chunk's Σ (x − s) to the compensated column sums. Only the tiles on or above the diagonal are
// computed (the host mirrors the upper triangle when it reads C back). C may exceed one storage binding,
// so it is held in row panels (c_hi, c_lo are one panel: its rows row0 .. row0 + rows, each of mp
// values); `gram_chunk` is dispatched once per panel, over that panel's tile rows. The chunk's partial sum is added
// to the running total (c_hi, c_lo) with Knuth's TwoSum, so that the total over many chunks keeps the
// digits a plain f32 sum would lose: c_hi + c_lo carries about twice f32's precision.

// The Rust twin: GramParams in src/gpu/contract.rs (tests/shaders.rs compares the layouts).
struct GramParams {
    rows: u32,
    mp: u32,
    first: u32,
    _pad0: u32,
}

// The Rust twin: GramPanel in src/gpu/contract.rs. Panel rows are a multiple of TILE (but the last's).
struct GramPanel {
    row0: u32,
    rows: u32,
}

@group(0) @binding(0) var<storage, read> p: GramParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c_hi: array<f32>;
@group(0) @binding(3) var<storage, read_write> c_lo: array<f32>;
@group(0) @binding(4) var<storage, read_write> shift: array<f32>;
@group(0) @binding(5) var<storage, read_write> sums_hi: array<f32>;
@group(0) @binding(6) var<storage, read_write> sums_lo: array<f32>;
@group(0) @binding(7) var<storage, read> panel: GramPanel;

// Threads of `gram_columns`, chosen per adapter.
override WG: u32 = 256u;

// One thread per feature j: on the first chunk s_j = mean of x_j; then Σ (x_j − s_j) over the chunk,
// in sample order, added to (sums_hi, sums_lo) with TwoSum.
@compute @workgroup_size(WG)
fn gram_columns(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= p.mp) {
        return;
    }
    let mp4 = p.mp / 4u;
    let q = j / 4u;
    let lane = j % 4u;
    if (p.first == 1u) {
        var total = 0.0;
        for (var r = 0u; r < p.rows; r++) {
            total += x[r * mp4 + q][lane];
        }
        shift[j] = total / f32(p.rows);
    }
    let s = shift[j];
    var part = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        part += x[r * mp4 + q][lane] - s;
    }
    let a = sums_hi[j];
    let sum = a + part;
    let bb = sum - a;
    sums_lo[j] += (a - (sum - bb)) + (part - bb);
    sums_hi[j] = sum;
}

// The shift of the four features of vec4 column c.
fn shift4(c: u32) -> vec4<f32> {
    return vec4<f32>(shift[4u * c], shift[4u * c + 1u], shift[4u * c + 2u], shift[4u * c + 3u]);
}

// Output tile: 64 x 64 per workgroup of 16 x 16 threads, 4 x 4 outputs per thread; 16 samples per step.
const TILE: u32 = 64u;
const STEP: u32 = 16u;

var<workgroup> a_tile: array<vec4<f32>, 256>; // STEP samples x 16 vec4 (64 features of the tile's rows)
var<workgroup> b_tile: array<vec4<f32>, 256>; // STEP samples x 16 vec4 (64 features of the tile's columns)

@compute @workgroup_size(16, 16)
fn gram_chunk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // The tile's row in C: wg.x counts the panel's tile rows.
    let tile_row = panel.row0 / TILE + wg.x;
    // Tiles below the diagonal are the mirror of tiles above it.
    if (wg.y < tile_row) {
        return;
    }
    let mp4 = p.mp / 4u;
    let i4 = tile_row * (TILE / 4u); // first vec4 column of the tile's rows
    let j4 = wg.y * (TILE / 4u); // first vec4 column of the tile's columns
    let t = lid.y * 16u + lid.x;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var r0 = 0u; r0 < p.rows; r0 += STEP) {
        // Each thread loads one vec4 of each tile: sample r0 + t / 16, vec4 column t % 16.
        let r = r0 + t / 16u;
        let ca = i4 + t % 16u;
        let cb = j4 + t % 16u;
        var va = vec4<f32>(0.0);
        var vb = vec4<f32>(0.0);
        if (r < p.rows && ca < mp4) {
            va = x[r * mp4 + ca] - shift4(ca);
        }
        if (r < p.rows && cb < mp4) {
            vb = x[r * mp4 + cb] - shift4(cb);
        }
        a_tile[t] = va;
        b_tile[t] = vb;
        workgroupBarrier();
        for (var s = 0u; s < STEP; s++) {
            let a = a_tile[s * 16u + lid.y];
            let b = b_tile[s * 16u + lid.x];
            acc0 += a.x * b;
            acc1 += a.y * b;
            acc2 += a.z * b;
            acc3 += a.w * b;
        }
        workgroupBarrier();
    }
    let i0 = (i4 + lid.y) * 4u;
    let j0 = (j4 + lid.x) * 4u;
    add_row(i0, j0, acc0);
    add_row(i0 + 1u, j0, acc1);
    add_row(i0 + 2u, j0, acc2);
    add_row(i0 + 3u, j0, acc3);
}

// c[i, j..j+4] += v with a compensated (TwoSum) update (row i of C is row i − row0 of the panel).
fn add_row(i: u32, j: u32, v: vec4<f32>) {
    if (i >= panel.row0 + panel.rows || j >= p.mp) {
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        let idx = (i - panel.row0) * p.mp + j + c;
        let a = c_hi[idx];
        let b = v[c];
        let s = a + b;
        let bb = s - a;
        let err = (a - (s - bb)) + (b - bb);
        c_hi[idx] = s;
        c_lo[idx] += err;
    }
}
