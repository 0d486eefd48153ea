// Gram family: C += (X − s)ᵀ (X − s) for one chunk of samples, and the column sums Σ (x − s).
//
// X is a chunk of `rows` samples, row-major, each row padded to `mp` features (a multiple of 4, zeros
// beyond m), as the host copied them. The shift s (the first chunk's mean when centring, else zero, or
// zero when the host already shifted the rows) is subtracted here as tiles are loaded. `gram_columns`
// runs first on each chunk: on the first one (`first` = 1) it sets s to the chunk's column means, then it
// adds the chunk's Σ (x − s) to the compensated column sums (both summed slice by slice with TwoSum,
// as C is).
//
// `gram_chunk` computes only the tiles on or above the diagonal (the host mirrors the upper triangle
// when it reads C back), one workgroup per tile and split. The chunk is cut into slices of `slice`
// samples; a workgroup sums one slice in f32 and adds that partial sum to its running total with Knuth's
// TwoSum (hi + lo carries about twice f32's precision), so accuracy does not depend on the chunk's size.
// With `splits` = S > 1 (split-K, for an m too small to fill the GPU with tiles alone), slices
// s, s + S, s + 2S, ... of each chunk go to the workgroups of split s, each with its own running total;
// `gram_fold` adds the S totals in split order before C is read. Which slice goes to which total depends
// only on the chunk's size, so the bits do not depend on the GPU's scheduling.
//
// C may exceed one storage binding, so it is held in row panels: c_hi and c_lo are one panel, its rows
// row0 .. row0 + rows, each of mp values, and then the same for splits 1 .. S − 1 (S > 1 only when all of
// C is one panel). `gram_chunk` and `gram_fold` are dispatched once per panel.
//
// Once every chunk is added and folded, the loop's C is made in place in c_hi, so that C need not
// come back to the host and go out again (src/gpu/gram.rs: GpuGram::into_loop_panels):
// `gram_to_loop` makes the blocks on and above the diagonal, C_loop[i, j] = (hi + (lo − u_i u_j))·scale
// with u = √n (μ − s) (so that u uᵀ is the centring term n (μ − s)(μ − s)ᵀ), zero where i or j ≥ m;
// then `gram_mirror_within` (within a panel) and `gram_mirror` (from a panel above) copy each upper
// block's transpose into the block below the diagonal. One thread per 4 x 4 block (four vec4 rows):
// no two threads write the same vec4, and no thread reads a block another writes in the same dispatch.
//
// Bounds: the host compiles this module without wgpu's runtime bounds checks (they clamp every index).
// Every storage index below is in range by the checks written out: rows < p.rows, vec4 columns < mp / 4,
// C rows < panel.rows, split < p.splits; every workgroup-memory index is below its array's length by
// construction. The host's buffers hold at least what the parameters say (src/gpu/gram.rs).

// The Rust twin: GramParams in src/gpu/contract.rs (tests/shaders.rs compares the layouts).
struct GramParams {
    rows: u32,
    mp: u32,
    first: u32,
    slice: u32,
    splits: u32,
    // gram_to_loop: the number of features (the columns and rows beyond it are zero in the loop's C)
    m: u32,
    // gram_to_loop: the loop's scale of C
    scale: f32,
    _pad0: u32,
}

// The Rust twin: GramPanel in src/gpu/contract.rs. Panel rows are a multiple of TILE (but the last's).
struct GramPanel {
    row0: u32,
    rows: u32,
    // Tiles of the upper triangle in the panel's rows.
    tiles: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> p: GramParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c_hi: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c_lo: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> shift: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> sums_hi: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> sums_lo: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> panel: GramPanel;
// The loop's C made from C's sums (gram_to_loop, gram_mirror, gram_mirror_within): the centring
// vector; the panel above `panel` whose upper blocks are mirrored into it, and that panel.
@group(0) @binding(8) var<storage, read> centre: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> source: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> source_panel: GramPanel;

// Threads of `gram_fold`, chosen per adapter.
override WG: u32 = 256u;

// (hi, lo) + v by TwoSum: the rounding error of hi + v goes into lo.
fn two_sum_add(hi: ptr<function, vec4<f32>>, lo: ptr<function, vec4<f32>>, v: vec4<f32>) {
    let a = *hi;
    let s = a + v;
    let bb = s - a;
    *lo += (a - (s - bb)) + (v - bb);
    *hi = s;
}

// gram_columns: 16 vec4 columns (64 features) per workgroup of 16 x 16 threads; thread (x, y) sums
// column x over samples y, y + 16, ..., and the 16 sums are added by a fixed-order tree.
var<workgroup> column_part: array<vec4<f32>, 256>;

// The sum over lid.y of every thread's v, for column lid.x (every thread gets its column's total).
fn column_total(lid: vec3<u32>, v: vec4<f32>) -> vec4<f32> {
    column_part[lid.y * 16u + lid.x] = v;
    workgroupBarrier();
    for (var half = 8u; half > 0u; half /= 2u) {
        if (lid.y < half) {
            column_part[lid.y * 16u + lid.x] += column_part[(lid.y + half) * 16u + lid.x];
        }
        workgroupBarrier();
    }
    let total = column_part[lid.x];
    workgroupBarrier();
    return total;
}

// Σ over the chunk's samples of column c's x − s (zero outside C), slice by slice: each slice's f32 sum
// (16 strides added by the tree) is added to (hi, lo) with TwoSum, so that the sum keeps its digits
// however long the chunk is.
fn column_sum(lid: vec3<u32>, c: u32, s: vec4<f32>) -> array<vec4<f32>, 2> {
    let mp4 = p.mp / 4u;
    let inside = c < mp4;
    var hi = vec4<f32>(0.0);
    var lo = vec4<f32>(0.0);
    for (var begin = 0u; begin < p.rows; begin += p.slice) {
        let end = min(begin + p.slice, p.rows);
        var part = vec4<f32>(0.0);
        if (inside) {
            for (var r = begin + lid.y; r < end; r += 16u) {
                part += x[r * mp4 + c] - s;
            }
        }
        two_sum_add(&hi, &lo, column_total(lid, part));
    }
    return array<vec4<f32>, 2>(hi, lo);
}

// On the first chunk (when the device computes the shift) s = the chunk's column means; then Σ (x − s)
// over the chunk is added to (sums_hi, sums_lo) with TwoSum.
@compute @workgroup_size(16, 16)
fn gram_columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wg.x * 16u + lid.x;
    let inside = c < p.mp / 4u;
    var s = vec4<f32>(0.0);
    if (p.first == 1u) {
        let total = column_sum(lid, c, vec4<f32>(0.0));
        s = total[0] / f32(p.rows) + total[1] / f32(p.rows);
        if (inside && lid.y == 0u) {
            shift[c] = s;
        }
    } else if (inside) {
        s = shift[c];
    }
    let sum = column_sum(lid, c, s);
    if (inside && lid.y == 0u) {
        var hi = sums_hi[c];
        var lo = sums_lo[c];
        two_sum_add(&hi, &lo, sum[0]);
        sums_hi[c] = hi;
        sums_lo[c] = lo + sum[1];
    }
}

// gram_chunk: an output tile of TILE x TILE per workgroup of 16 x 16 threads, 8 x 8 outputs per thread
// (rows 4y .. 4y + 3 and 64 + 4y .. 64 + 4y + 3 of the tile, columns likewise with x, so that the
// threads of a row read consecutive vec4 from workgroup memory). STEP samples per step through two
// workgroup buffers: the next step's tiles are loaded from storage while the current one is multiplied.
const TILE: u32 = 128u;
const TILE4: u32 = 32u; // vec4 per tile row
const STEP: u32 = 8u;
const BUFFER: u32 = 256u; // vec4 per buffer: STEP samples x TILE4

var<workgroup> a_tile: array<vec4<f32>, 512>; // 2 buffers x STEP samples x the tile rows' 128 features
var<workgroup> b_tile: array<vec4<f32>, 512>; // 2 buffers x STEP samples x the tile columns' 128 features

@compute @workgroup_size(16, 16)
fn gram_chunk(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    // The workgroup's number in the grid: split = number / tiles, then the tile in the panel's upper
    // triangle, counted along the tile rows (tile row r has side − r tiles, from the diagonal on).
    let number = wg.y * groups.x + wg.x;
    let split = number / panel.tiles;
    if (split >= p.splits) {
        return;
    }
    let side = (p.mp + TILE - 1u) / TILE;
    var tile_row = panel.row0 / TILE;
    var rest = number % panel.tiles;
    loop {
        let in_row = side - tile_row;
        if (rest < in_row) {
            break;
        }
        rest -= in_row;
        tile_row += 1u;
    }
    let tile_col = tile_row + rest;

    let mp4 = p.mp / 4u;
    let t = lid.y * 16u + lid.x;
    // Each thread loads one vec4 of each tile per step: sample t / TILE4, vec4 column t % TILE4.
    let load_row = t / TILE4;
    let ca = tile_row * TILE4 + t % TILE4;
    let cb = tile_col * TILE4 + t % TILE4;
    let a_in = ca < mp4;
    let b_in = cb < mp4;
    var sa = vec4<f32>(0.0);
    var sb = vec4<f32>(0.0);
    if (a_in) {
        sa = shift[ca];
    }
    if (b_in) {
        sb = shift[cb];
    }
    let slices = (p.rows + p.slice - 1u) / p.slice;
    var acc: array<vec4<f32>, 16>;
    for (var slice = split; slice < slices; slice += p.splits) {
        let begin = slice * p.slice;
        let end = min(begin + p.slice, p.rows);
        acc = array<vec4<f32>, 16>();
        // The first step's tiles into buffer 0.
        var va = vec4<f32>(0.0);
        var vb = vec4<f32>(0.0);
        let r = begin + load_row;
        if (r < end && a_in) {
            va = x[r * mp4 + ca] - sa;
        }
        if (r < end && b_in) {
            vb = x[r * mp4 + cb] - sb;
        }
        a_tile[t] = va;
        b_tile[t] = vb;
        workgroupBarrier();
        var current = 0u;
        for (var r0 = begin; r0 < end; r0 += STEP) {
            // The next step's values (zero past the slice), loaded before the current step's products.
            let next_r = r0 + STEP + load_row;
            va = vec4<f32>(0.0);
            vb = vec4<f32>(0.0);
            if (next_r < end && a_in) {
                va = x[next_r * mp4 + ca] - sa;
            }
            if (next_r < end && b_in) {
                vb = x[next_r * mp4 + cb] - sb;
            }
            let base = current * BUFFER;
            for (var s = 0u; s < STEP; s++) {
                let i = base + s * TILE4;
                let a0 = a_tile[i + lid.y];
                let a1 = a_tile[i + 16u + lid.y];
                let b0 = b_tile[i + lid.x];
                let b1 = b_tile[i + 16u + lid.x];
                acc[0] = fma(vec4<f32>(a0.x), b0, acc[0]);
                acc[1] = fma(vec4<f32>(a0.x), b1, acc[1]);
                acc[2] = fma(vec4<f32>(a0.y), b0, acc[2]);
                acc[3] = fma(vec4<f32>(a0.y), b1, acc[3]);
                acc[4] = fma(vec4<f32>(a0.z), b0, acc[4]);
                acc[5] = fma(vec4<f32>(a0.z), b1, acc[5]);
                acc[6] = fma(vec4<f32>(a0.w), b0, acc[6]);
                acc[7] = fma(vec4<f32>(a0.w), b1, acc[7]);
                acc[8] = fma(vec4<f32>(a1.x), b0, acc[8]);
                acc[9] = fma(vec4<f32>(a1.x), b1, acc[9]);
                acc[10] = fma(vec4<f32>(a1.y), b0, acc[10]);
                acc[11] = fma(vec4<f32>(a1.y), b1, acc[11]);
                acc[12] = fma(vec4<f32>(a1.z), b0, acc[12]);
                acc[13] = fma(vec4<f32>(a1.z), b1, acc[13]);
                acc[14] = fma(vec4<f32>(a1.w), b0, acc[14]);
                acc[15] = fma(vec4<f32>(a1.w), b1, acc[15]);
            }
            // The other buffer was last read before the previous barrier.
            let other = (1u - current) * BUFFER;
            a_tile[other + t] = va;
            b_tile[other + t] = vb;
            workgroupBarrier();
            current = 1u - current;
        }
        // The slice's sums into this split's running total. (Constant indices only, so that acc can
        // stay in registers.)
        let i0 = tile_row * TILE + 4u * lid.y;
        let i1 = i0 + 64u;
        let j0 = tile_col * TILE + 4u * lid.x;
        let j1 = j0 + 64u;
        add_to_total(split, i0, j0, acc[0]);
        add_to_total(split, i0, j1, acc[1]);
        add_to_total(split, i0 + 1u, j0, acc[2]);
        add_to_total(split, i0 + 1u, j1, acc[3]);
        add_to_total(split, i0 + 2u, j0, acc[4]);
        add_to_total(split, i0 + 2u, j1, acc[5]);
        add_to_total(split, i0 + 3u, j0, acc[6]);
        add_to_total(split, i0 + 3u, j1, acc[7]);
        add_to_total(split, i1, j0, acc[8]);
        add_to_total(split, i1, j1, acc[9]);
        add_to_total(split, i1 + 1u, j0, acc[10]);
        add_to_total(split, i1 + 1u, j1, acc[11]);
        add_to_total(split, i1 + 2u, j0, acc[12]);
        add_to_total(split, i1 + 2u, j1, acc[13]);
        add_to_total(split, i1 + 3u, j0, acc[14]);
        add_to_total(split, i1 + 3u, j1, acc[15]);
    }
}

// The vec4 of split `split`'s running total at C[i, j .. j + 4] (row i − row0 of the panel).
fn total_index(split: u32, i: u32, j: u32) -> u32 {
    return ((split * panel.rows + (i - panel.row0)) * p.mp + j) / 4u;
}

// C[i, j .. j + 4] of split `split` += v with TwoSum.
fn add_to_total(split: u32, i: u32, j: u32, v: vec4<f32>) {
    if (i >= panel.row0 + panel.rows || j >= p.mp) {
        return;
    }
    let idx = total_index(split, i, j);
    var hi = c_hi[idx];
    var lo = c_lo[idx];
    two_sum_add(&hi, &lo, v);
    c_hi[idx] = hi;
    c_lo[idx] = lo;
}

// gram_fold: split 0's running total += splits 1 .. S − 1's, in split order, with TwoSum; those are
// zeroed, so that folding again changes nothing. One thread per vec4 of the panel.
@compute @workgroup_size(WG)
fn gram_fold(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = gid.y * groups.x * WG + gid.x;
    let count = panel.rows * p.mp / 4u;
    if (idx >= count) {
        return;
    }
    var hi = c_hi[idx];
    var lo = c_lo[idx];
    for (var s = 1u; s < p.splits; s++) {
        let other = s * count + idx;
        two_sum_add(&hi, &lo, c_hi[other]);
        lo += c_lo[other];
        c_hi[other] = vec4<f32>(0.0);
        c_lo[other] = vec4<f32>(0.0);
    }
    c_hi[idx] = hi;
    c_lo[idx] = lo;
}

// u_i, the centring vector's entry i (i < mp).
fn centre_at(i: u32) -> f32 {
    return centre[i / 4u][i % 4u];
}

// The 4 x 4 block of this thread among row_blocks x col_blocks, as (a, b): the block's rows are the
// panel's rows 4a .. 4a + 3, b its vec4 column (or its column block); a = row_blocks for a thread
// beyond the last block.
fn block_of(gid: vec3<u32>, groups: vec3<u32>, row_blocks: u32, col_blocks: u32) -> vec2<u32> {
    let idx = gid.y * groups.x * WG + gid.x;
    if (idx >= row_blocks * col_blocks) {
        return vec2<u32>(row_blocks, 0u);
    }
    return vec2<u32>(idx / col_blocks, idx % col_blocks);
}

// gram_to_loop: the blocks on and above the diagonal of this panel's rows, in place (see above).
@compute @workgroup_size(WG)
fn gram_to_loop(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let cols = p.mp / 4u;
    let ab = block_of(gid, groups, panel.rows / 4u, cols);
    let i0 = panel.row0 + 4u * ab.x;
    let b = ab.y;
    if (ab.x >= panel.rows / 4u || 4u * b < i0) {
        return;
    }
    let j0 = 4u * b;
    let in_m = vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u) < vec4<u32>(p.m);
    let u = centre[b];
    var rows: array<vec4<f32>, 4>;
    for (var q = 0u; q < 4u; q++) {
        let i = i0 + q;
        let idx = (i - panel.row0) * cols + b;
        let v = (c_hi[idx] + (c_lo[idx] - centre_at(i) * u)) * p.scale;
        rows[q] = select(vec4<f32>(0.0), v, in_m & vec4<bool>(i < p.m));
    }
    if (j0 == i0) {
        // The diagonal block: its lower half from its upper half.
        for (var q = 1u; q < 4u; q++) {
            for (var l = 0u; l < q; l++) {
                rows[q][l] = rows[l][q];
            }
        }
    }
    for (var q = 0u; q < 4u; q++) {
        c_hi[(i0 + q - panel.row0) * cols + b] = rows[q];
    }
}

// The block below the diagonal at rows i0 .. i0 + 3 of this panel, vec4 column b: the transpose of
// the upper block whose rows are s (its four vec4 rows, at vec4 column i0 / 4).
fn store_transposed(i0: u32, b: u32, s: array<vec4<f32>, 4>) {
    let cols = p.mp / 4u;
    for (var q = 0u; q < 4u; q++) {
        c_hi[(i0 + q - panel.row0) * cols + b] = vec4<f32>(s[0][q], s[1][q], s[2][q], s[3][q]);
    }
}

// gram_mirror_within: the blocks below the diagonal whose transposes lie in the same panel. (It and
// gram_mirror differ only in the buffer they read: WGSL cannot hand a storage buffer to a function,
// and one buffer cannot be bound read-only and read-write in one dispatch.)
@compute @workgroup_size(WG)
fn gram_mirror_within(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let cols = p.mp / 4u;
    let ab = block_of(gid, groups, panel.rows / 4u, panel.rows / 4u);
    let i0 = panel.row0 + 4u * ab.x;
    let j0 = panel.row0 + 4u * ab.y;
    if (ab.x >= panel.rows / 4u || j0 >= i0) {
        return;
    }
    var s: array<vec4<f32>, 4>;
    for (var l = 0u; l < 4u; l++) {
        s[l] = c_hi[(j0 + l - panel.row0) * cols + i0 / 4u];
    }
    store_transposed(i0, j0 / 4u, s);
}

// gram_mirror: the blocks below the diagonal whose transposes lie in source_panel (above this one).
@compute @workgroup_size(WG)
fn gram_mirror(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let cols = p.mp / 4u;
    let ab = block_of(gid, groups, panel.rows / 4u, source_panel.rows / 4u);
    let i0 = panel.row0 + 4u * ab.x;
    let j0 = source_panel.row0 + 4u * ab.y;
    if (ab.x >= panel.rows / 4u || j0 >= i0) {
        return;
    }
    var s: array<vec4<f32>, 4>;
    for (var l = 0u; l < 4u; l++) {
        s[l] = source[(j0 + l - source_panel.row0) * cols + i0 / 4u];
    }
    store_transposed(i0, j0 / 4u, s);
}
