// Matmul family: the products of the solver loop. Tall matrices (m x k) are column-major with a
// column stride of mp (m padded to a multiple of 4, zero rows beyond m); C is mp x mp and symmetric;
// C is held in row panels (src/gpu/mod.rs: Panels), c_mul's `a` one of them; small matrices (k x k)
// are column-major; projected matrices ((SEARCH_BLOCKS·k) square, the default
// solver's Rayleigh–Ritz problem) are column-major and accessed by k x k blocks.

// The Rust twin: MatmulParams in src/gpu/contract.rs (tests/shaders.rs compares the layouts).
struct MatmulParams {
    mp: u32,
    k: u32,
    // inner_block and mul_block: the first row and column of the block in the projected matrix;
    // c_mul: the first row of C in the panel `a` (a multiple of 64; col0 unused)
    row0: u32,
    col0: u32,
}

// The k-wide blocks of a search basis (src/engine.rs: SEARCH_BLOCKS).
const SEARCH_BLOCKS: u32 = 3u;

@group(0) @binding(0) var<storage, read> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<Real>;
@group(0) @binding(2) var<storage, read> b: array<Real>;
@group(0) @binding(3) var<storage, read_write> out: array<Real>;
// The fused kernels of the default solver: a search basis [s0, s1, s2] and its image under C
// [cs0, cs1, cs2] (each mp x k); mul_blocks' second output; mul_small_sub's minuend.
@group(0) @binding(4) var<storage, read> s0: array<Real>;
@group(0) @binding(5) var<storage, read> s1: array<Real>;
@group(0) @binding(6) var<storage, read> s2: array<Real>;
@group(0) @binding(7) var<storage, read> cs0: array<Real>;
@group(0) @binding(8) var<storage, read> cs1: array<Real>;
@group(0) @binding(9) var<storage, read> cs2: array<Real>;
@group(0) @binding(10) var<storage, read_write> tail: array<Real>;
@group(0) @binding(11) var<storage, read> base: array<Real>;
// The pair kernels (two products in one dispatch: mul_small_pair, mul_small_sub_pair) and
// mul_blocks' second set: the second left operand, the second outputs.
@group(0) @binding(12) var<storage, read> a1: array<Real>;
@group(0) @binding(13) var<storage, read_write> out1: array<Real>;
@group(0) @binding(14) var<storage, read_write> tail1: array<Real>;
// c_mul_gram's parts of Xᵀ(C X), one k x k matrix per 64 rows.
@group(0) @binding(15) var<storage, read_write> gram_part: array<Real>;

// Threads of the one-dimensional kernels (inner, mul_small), chosen per adapter.
override WG: u32 = 256u;

// c_mul: rows row0.. of out (mp x k) = the panel of C (a: its rows row0.., each of mp values) · X (b,
// mp x k); one dispatch per panel. A workgroup of 16 x 16 threads makes a 64 x 16 tile of out, 4 rows
// per thread, stepping 16 along the shared dimension through workgroup memory. c_mul_gram also
// writes the tile's part of Xᵀ(C X) (see there).
var<workgroup> c_tile: array<Real, 1024>; // 64 rows x 16
var<workgroup> x_tile: array<Real, 256>;  // 16 x 16 columns

// This thread's 4 entries of out (rows row0 + 4·lid.y .., column wg.y·16 + lid.x), with row0 the
// workgroup's first row.
fn c_mul_entries(row0: u32, col: u32, lid: vec3<u32>) -> vec4<Real> {
    let t = lid.y * 16u + lid.x;
    var acc = vec4<Real>(0.0);
    for (var r0 = 0u; r0 < p.mp; r0 += 16u) {
        // C tile: 64 rows x 16, four entries per thread (C is symmetric: row i of C is column i).
        for (var q = 0u; q < 4u; q++) {
            let e = t * 4u + q;
            let i = row0 + e / 16u;
            let r = r0 + e % 16u;
            var v: Real = 0.0;
            if (i < p.mp && r < p.mp) {
                v = a[(i - p.row0) * p.mp + r];
            }
            c_tile[e] = v;
        }
        // X tile: 16 x 16, one entry per thread.
        let xr = r0 + lid.y;
        var xv: Real = 0.0;
        if (xr < p.mp && col < p.k) {
            xv = b[col * p.mp + xr];
        }
        x_tile[lid.y * 16u + lid.x] = xv;
        workgroupBarrier();
        for (var s = 0u; s < 16u; s++) {
            let w = x_tile[s * 16u + lid.x];
            let base = lid.y * 4u * 16u + s;
            acc += vec4<Real>(c_tile[base], c_tile[base + 16u], c_tile[base + 32u], c_tile[base + 48u]) * w;
        }
        workgroupBarrier();
    }
    if (col < p.k) {
        for (var q = 0u; q < 4u; q++) {
            let i = row0 + lid.y * 4u + q;
            if (i < p.mp) {
                out[col * p.mp + i] = acc[q];
            }
        }
    }
    return acc;
}

@compute @workgroup_size(16, 16)
fn c_mul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    c_mul_entries(p.row0 + wg.x * 64u, wg.y * 16u + lid.x, lid);
}

// c_mul_gram: c_mul, and the part of Xᵀ(C X) from the workgroup's 64 rows (block number row0 / 64
// of the mp rows): gram_part[(block · k + col) · k + l] = Σ_i X[i, l] · out[i, col] over the block's
// rows i, the 16 threads of a column summed by a fixed-order tree. inverse_spd_of_parts
// (shaders/small.wgsl) adds the blocks in order. The tree runs in x_tile, free after the product.
@compute @workgroup_size(16, 16)
fn c_mul_gram(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = p.row0 + wg.x * 64u;
    let col = wg.y * 16u + lid.x;
    let acc = c_mul_entries(row0, col, lid);
    let block = row0 / 64u;
    for (var l = 0u; l < p.k; l++) {
        var v: Real = 0.0;
        for (var q = 0u; q < 4u; q++) {
            let i = row0 + lid.y * 4u + q;
            if (i < p.mp) {
                v += b[l * p.mp + i] * acc[q];
            }
        }
        x_tile[lid.y * 16u + lid.x] = v;
        workgroupBarrier();
        for (var half = 8u; half > 0u; half /= 2u) {
            if (lid.y < half) {
                x_tile[lid.y * 16u + lid.x] += x_tile[(lid.y + half) * 16u + lid.x];
            }
            workgroupBarrier();
        }
        if (lid.y == 0u && col < p.k) {
            gram_part[(block * p.k + col) * p.k + l] = x_tile[lid.x];
        }
        workgroupBarrier();
    }
}

// inner: out (k x k) = aᵀ b. One workgroup per entry; a fixed-order tree reduction (deterministic,
// tree_sum: shaders/prelude/tree_sum.wgsl).

// Column ca of a dotted with column cb of b, by the whole workgroup (the result in every thread).
fn column_dot(lid: u32, ca: u32, cb: u32) -> Real {
    var s: Real = 0.0;
    for (var r = lid; r < p.mp; r += WG) {
        s += a[ca * p.mp + r] * b[cb * p.mp + r];
    }
    return tree_sum(lid, s);
}

@compute @workgroup_size(WG)
fn inner(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let total = column_dot(lid.x, wg.x, wg.y);
    if (lid.x == 0u) {
        out[wg.y * p.k + wg.x] = total;
    }
}

// Entry e of a (mp x k) times the k x k block at (row0, col0) of b (column-major, leading dimension ld).
fn tall_times_block(e: u32, ld: u32, row0: u32, col0: u32) -> Real {
    let i = e % p.mp;
    let j = e / p.mp;
    var s: Real = 0.0;
    for (var l = 0u; l < p.k; l++) {
        s += a[l * p.mp + i] * b[(col0 + j) * ld + row0 + l];
    }
    return s;
}

// Entry e of a1 (mp x k) times b (k x k), summed as tall_times_block sums it.
fn a1_times_b(e: u32) -> Real {
    let i = e % p.mp;
    let j = e / p.mp;
    var s: Real = 0.0;
    for (var l = 0u; l < p.k; l++) {
        s += a1[l * p.mp + i] * b[j * p.k + l];
    }
    return s;
}

// mul_small: out (mp x k) = a (mp x k) · b (k x k). One thread per entry of out.
@compute @workgroup_size(WG)
fn mul_small(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG;
    if (e < p.mp * p.k) {
        out[e] = tall_times_block(e, p.k, 0u, 0u);
    }
}

// inner_block: the k x k block at (row0, col0) of the projected matrix out becomes aᵀ b, and the block
// at (col0, row0) its transpose. One workgroup per entry, as inner.
@compute @workgroup_size(WG)
fn inner_block(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let total = column_dot(lid.x, wg.x, wg.y);
    if (lid.x == 0u) {
        let ld = SEARCH_BLOCKS * p.k;
        out[(p.col0 + wg.y) * ld + p.row0 + wg.x] = total;
        if (p.row0 != p.col0) {
            out[(p.row0 + wg.x) * ld + p.col0 + wg.y] = total;
        }
    }
}

// mul_block: out (mp x k) = a (mp x k) · the k x k block of b (projected) at (row0, col0).
@compute @workgroup_size(WG)
fn mul_block(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG;
    if (e < p.mp * p.k) {
        out[e] = tall_times_block(e, SEARCH_BLOCKS * p.k, p.row0, p.col0);
    }
}

// Entry e of block i of the search basis (i < SEARCH_BLOCKS).
fn basis_at(i: u32, e: u32) -> Real {
    switch i {
        case 0u: { return s0[e]; }
        case 1u: { return s1[e]; }
        default: { return s2[e]; }
    }
}

// Entry e of block j of the basis' image under C.
fn image_at(j: u32, e: u32) -> Real {
    switch j {
        case 0u: { return cs0[e]; }
        case 1u: { return cs1[e]; }
        default: { return cs2[e]; }
    }
}

// projected: the projected matrix out = Sᵀ (C S) of the basis S = [s0, s1, s2]: block (i, j) with
// i ≤ j is sᵢᵀ csⱼ, block (j, i) its transpose. The six upper blocks in one dispatch of k x 6k
// workgroups, one per entry (wg.y / k: the block, in the order (0,0) (0,1) (0,2) (1,1) (1,2) (2,2)),
// each entry summed as inner_block sums it (so the same bits).
@compute @workgroup_size(WG)
fn projected(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let block = wg.y / p.k;
    var i = 0u;
    var j = block;
    if (block >= 5u) {
        i = 2u;
        j = 2u;
    } else if (block >= 3u) {
        i = 1u;
        j = block - 2u;
    }
    let ca = wg.x;
    let cb = wg.y % p.k;
    var s: Real = 0.0;
    for (var r = lid.x; r < p.mp; r += WG) {
        s += basis_at(i, ca * p.mp + r) * image_at(j, cb * p.mp + r);
    }
    let total = tree_sum(lid.x, s);
    if (lid.x == 0u) {
        let ld = SEARCH_BLOCKS * p.k;
        out[(j * p.k + cb) * ld + i * p.k + ca] = total;
        if (i != j) {
            out[(i * p.k + ca) * ld + j * p.k + cb] = total;
        }
    }
}

// Entry e of block i of the basis (set 0) or of its image (set 1).
fn set_at(which: u32, i: u32, e: u32) -> Real {
    if (which == 0u) {
        return basis_at(i, e);
    }
    return image_at(i, e);
}

// Entry e of block i of set `which` times Yᵢ, Yᵢ the k x k block of rows i·k.. (first k columns) of
// the projected b.
fn set_times_block(which: u32, i: u32, e: u32) -> Real {
    let row = e % p.mp;
    let col = e / p.mp;
    let ld = SEARCH_BLOCKS * p.k;
    var s: Real = 0.0;
    for (var l = 0u; l < p.k; l++) {
        s += set_at(which, i, l * p.mp + row) * b[col * ld + i * p.k + l];
    }
    return s;
}

// mul_blocks: out = s0 Y0 + s1 Y1 + s2 Y2 and tail = s1 Y1 + s2 Y2 (mp x k each), and out1, tail1
// the same of cs0, cs1, cs2, the terms summed in this order from zero (as combine sums them). One
// thread per entry of the four outputs' pairs: the first mp·k threads make out and tail, the next
// out1 and tail1.
@compute @workgroup_size(WG)
fn mul_blocks(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = gid.x + gid.y * nwg.x * WG;
    let len = p.mp * p.k;
    if (g < 2u * len) {
        let which = g / len;
        let e = g % len;
        let t0 = set_times_block(which, 0u, e);
        let t1 = set_times_block(which, 1u, e);
        let t2 = set_times_block(which, 2u, e);
        var all: Real = 0.0;
        all += t0;
        all += t1;
        all += t2;
        var rest: Real = 0.0;
        rest += t1;
        rest += t2;
        if (which == 0u) {
            out[e] = all;
            tail[e] = rest;
        } else {
            out1[e] = all;
            tail1[e] = rest;
        }
    }
}

// mul_small_sub: out = base − a b (a: mp x k, b: k x k); mul_small_sub_in_place: out −= a b. One
// thread per entry.
@compute @workgroup_size(WG)
fn mul_small_sub(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG;
    if (e < p.mp * p.k) {
        out[e] = base[e] - tall_times_block(e, p.k, 0u, 0u);
    }
}

@compute @workgroup_size(WG)
fn mul_small_sub_in_place(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG;
    if (e < p.mp * p.k) {
        out[e] = out[e] - tall_times_block(e, p.k, 0u, 0u);
    }
}

// mul_small_pair: out = a b and out1 = a1 b; mul_small_sub_pair: out −= a b and out1 −= a1 b; each
// entry as mul_small and mul_small_sub_in_place compute it. One thread per entry of both outputs:
// the first mp·k threads make out, the next out1.
@compute @workgroup_size(WG)
fn mul_small_pair(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG;
    let len = p.mp * p.k;
    if (e < len) {
        out[e] = tall_times_block(e, p.k, 0u, 0u);
    } else if (e < 2u * len) {
        out1[e - len] = a1_times_b(e - len);
    }
}

@compute @workgroup_size(WG)
fn mul_small_sub_pair(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG;
    let len = p.mp * p.k;
    if (e < len) {
        out[e] = out[e] - tall_times_block(e, p.k, 0u, 0u);
    } else if (e < 2u * len) {
        out1[e - len] = out1[e - len] - a1_times_b(e - len);
    }
}
