//! The Rust side of the Rust–WGSL contract: each kernel family's parameter struct as a `#[repr(C)]`
//! [`bytemuck::Pod`] struct of the same name and fields as its WGSL struct, and each family's buffer
//! bindings by name, number and access.
//!
//! Every dispatch writes its parameters through these structs (never as packed words) and names its
//! bindings through these constants; the kernel table ([`super::kernels`]) lists, per entry point, the
//! bindings it uses, from which the bind group layouts are built. tests/shaders.rs compares all of it
//! with the WGSL through naga's reflection: struct members' names, offsets and sizes and the struct's
//! size; each entry point's bindings, their numbers and their access.

/// One member of a parameter struct: its name, byte offset and byte size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldLayout {
    /// The member's name, the same in Rust and WGSL.
    pub name: &'static str,
    /// Its byte offset in the struct.
    pub offset: usize,
    /// Its size in bytes.
    pub size: usize,
}

/// The memory layout of a parameter struct, as Rust lays it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StructLayout {
    /// The struct's name, the same in Rust and WGSL.
    pub name: &'static str,
    /// `size_of` the struct (WGSL: the struct's span).
    pub size: usize,
    /// Its members in declaration order.
    pub fields: &'static [FieldLayout],
}

/// A struct shared with WGSL: its layout, for the comparison with the shader.
pub trait WgslStruct: bytemuck::Pod {
    /// The layout of the struct.
    const LAYOUT: StructLayout;
}

/// Declares a `#[repr(C)]` Pod struct shared with WGSL, and its [`WgslStruct::LAYOUT`] table.
macro_rules! wgsl_struct {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$field_meta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl WgslStruct for $name {
            const LAYOUT: StructLayout = StructLayout {
                name: stringify!($name),
                size: std::mem::size_of::<$name>(),
                fields: &[$(FieldLayout {
                    name: stringify!($field),
                    offset: std::mem::offset_of!($name, $field),
                    size: std::mem::size_of::<$ty>(),
                },)*],
            };
        }
    };
}

wgsl_struct! {
    /// gram.wgsl: one chunk of samples.
    pub struct GramParams {
        /// Samples in the chunk.
        rows: u32,
        /// The row stride: features padded to a multiple of 4.
        mp: u32,
        /// 1 on the first chunk when the device computes the shift.
        first: u32,
        /// Samples per slice: each slice's f32 sum is added to a running total with TwoSum.
        slice: u32,
        /// Running totals of C per panel (split-K): slice s of a chunk goes to total s mod splits.
        splits: u32,
        /// gram_to_loop: the number of features (the loop's C is zero beyond it).
        m: u32,
        /// gram_to_loop: the loop's scale of C (1 / its norm).
        scale: f32,
        /// Padding.
        _pad0: u32,
    }
}

wgsl_struct! {
    /// gram.wgsl: the row panel of C a `gram_chunk` or `gram_fold` dispatch works on.
    pub struct GramPanel {
        /// The panel's first row of C (a multiple of the tile size, 128).
        row0: u32,
        /// Its rows.
        rows: u32,
        /// The tiles of C's upper triangle in its rows.
        tiles: u32,
        /// Padding.
        _pad0: u32,
    }
}

wgsl_struct! {
    /// matmul.wgsl: the products of the loop.
    pub struct MatmulParams {
        /// Rows of a tall matrix (m padded to a multiple of 4).
        mp: u32,
        /// Components.
        k: u32,
        /// inner_block and mul_block: the first row of the block in the projected matrix; c_mul: the
        /// first row of C in the panel.
        row0: u32,
        /// inner_block and mul_block: the first column of the block.
        col0: u32,
    }
}

wgsl_struct! {
    /// small.wgsl: the k x k inverse.
    pub struct SmallParams {
        /// The order k.
        k: u32,
        /// The shift added to the diagonal, as the f32 sum `shift_hi + shift_lo` ([`split_coefficient`]).
        shift_hi: f32,
        /// The shift's second part.
        shift_lo: f32,
        /// inverse_spd_of_parts: the k x k parts that sum to the matrix.
        parts: u32,
    }
}

wgsl_struct! {
    /// update.wgsl: one term of `combine`.
    pub struct CombineTerm {
        /// 0: the constant `value_hi + value_lo`; 1: scalars[num] / scalars[den]; 2: −scalars[num] /
        /// scalars[den].
        kind: u32,
        /// The constant (kind 0), as the f32 sum `value_hi + value_lo` ([`split_coefficient`]).
        value_hi: f32,
        /// The numerator's scalar (kinds 1, 2).
        num: u32,
        /// The denominator's scalar (kinds 1, 2).
        den: u32,
        /// 0..3: the bindings t0..t3; [`COMBINE_SOURCE_OUT`]: `out` itself.
        source: u32,
        /// The constant's second part.
        value_lo: f32,
        /// Padding.
        _pad0: u32,
        /// Padding.
        _pad1: u32,
    }
}

/// A coefficient for kernels in `arithmetic` as two f32 values: in f64, `hi` is `v` rounded to f32
/// and `lo` the rest, rounded, and the kernel's `f64(hi) + f64(lo)` is within ~2⁻⁴⁸ of `v` (for `v`
/// in f32's normal range); in f32, `(v as f32, 0)`, so that the kernel's `hi + lo` is exactly the
/// `v as f32` it always used (a nonzero `lo` of half an ulp could round `hi + lo` up).
pub fn split_coefficient(v: f64, arithmetic: crate::Arithmetic) -> (f32, f32) {
    let hi = v as f32;
    let lo = match arithmetic {
        crate::Arithmetic::F64 if hi.is_finite() => (v - hi as f64) as f32,
        _ => 0.0,
    };
    (hi, lo)
}

/// [`CombineTerm::source`] of a term that reads the output buffer in place.
pub const COMBINE_SOURCE_OUT: u32 = 4;

wgsl_struct! {
    /// update.wgsl: `combine` and `copy_scalar`.
    pub struct UpdateParams {
        /// combine: the elements of a tall matrix (mp · k).
        len: u32,
        /// combine: the terms used.
        terms: u32,
        /// copy_scalar: the source scalar.
        src: u32,
        /// copy_scalar: the destination scalar.
        dst: u32,
        /// combine: the terms, the first `terms` of them used.
        term: [CombineTerm; crate::engine::MAX_COMBINE_TERMS],
    }
}

wgsl_struct! {
    /// reduce.wgsl: Frobenius products and stopping quantities.
    pub struct ReduceParams {
        /// The elements of a tall matrix (mp · k); stop_ratio: of its first columns, those counted.
        len: u32,
        /// dot: the scalar to write; stop_quantity: the number of pairs (1 or 2); stop_ratio: unused.
        slot: u32,
        /// Padding.
        _pad0: u32,
        /// Padding.
        _pad1: u32,
    }
}

wgsl_struct! {
    /// eigen.wgsl: the small symmetric eigenproblems.
    pub struct EigenParams {
        /// The order of the matrix.
        n: u32,
        /// orthonormalizer: the relative eigenvalue floor.
        drop: f32,
        /// The first Jacobi round this dispatch runs.
        round0: u32,
        /// The round after this dispatch's last.
        round_end: u32,
    }
}

wgsl_struct! {
    /// sparse.wgsl: one panel of a sparse matrix times a tall matrix (`spmm`), or the weighted column
    /// sums of one (`column_sums`).
    pub struct SparseParams {
        /// spmm: rows of the panel; column_sums: rows of `b` summed.
        rows: u32,
        /// spmm: the first row of the panel in the output.
        row0: u32,
        /// spmm: the entries of the panel.
        entries: u32,
        /// Columns of `b` and of the output.
        k: u32,
        /// `b`'s column stride.
        ld_b: u32,
        /// The output's column stride.
        ld_out: u32,
        /// spmm: 0 subtracts `sums[c]` from every row, 1 subtracts `mean[row0 + r]·sums[c]`;
        /// column_sums: 0 sums the rows, 1 weighs row i by `mean[i]`.
        weighted: u32,
        /// spmm: the output rows written: the panel's, then zeros (a tall matrix's padding).
        rows_out: u32,
    }
}

/// How a kernel accesses a storage buffer (as its WGSL `var<storage, …>` declares it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// A storage-buffer binding of group 0: its number, its WGSL variable's name, its access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Binding {
    /// The `@binding` number.
    pub number: u32,
    /// The WGSL variable.
    pub name: &'static str,
    /// Read-only or read-write.
    pub access: Access,
}

const fn read(number: u32, name: &'static str) -> Binding {
    Binding {
        number,
        name,
        access: Access::Read,
    }
}

const fn read_write(number: u32, name: &'static str) -> Binding {
    Binding {
        number,
        name,
        access: Access::ReadWrite,
    }
}

/// Every kernel's parameters (its family's parameter struct), a read-only storage buffer: see
/// [`super::kernels`] for why not a uniform one.
pub const PARAMS: Binding = read(0, "p");

/// The bindings of gram.wgsl.
pub mod gram {
    use super::{read, read_write, Binding};
    /// The chunk's samples, rows of mp values.
    pub const X: Binding = read(1, "x");
    /// The running sum's high part.
    pub const C_HI: Binding = read_write(2, "c_hi");
    /// The running sum's low part.
    pub const C_LO: Binding = read_write(3, "c_lo");
    /// The shift subtracted from every sample.
    pub const SHIFT: Binding = read_write(4, "shift");
    /// The column sums' high part.
    pub const SUMS_HI: Binding = read_write(5, "sums_hi");
    /// The column sums' low part.
    pub const SUMS_LO: Binding = read_write(6, "sums_lo");
    /// The row panel of C that c_hi and c_lo hold ([`GramPanel`](super::GramPanel)).
    pub const PANEL: Binding = read(7, "panel");
    /// The centring vector `√n (μ − s)` (gram_to_loop).
    pub const CENTRE: Binding = read(8, "centre");
    /// The loop's C in a panel above PANEL, whose upper blocks gram_mirror copies below the diagonal.
    pub const SOURCE: Binding = read(9, "source");
    /// That panel ([`GramPanel`](super::GramPanel)).
    pub const SOURCE_PANEL: Binding = read(10, "source_panel");
}

/// The bindings of matmul.wgsl.
pub mod matmul {
    use super::{read, read_write, Binding};
    /// The left operand (C for c_mul).
    pub const A: Binding = read(1, "a");
    /// The right operand.
    pub const B: Binding = read(2, "b");
    /// The product.
    pub const OUT: Binding = read_write(3, "out");
    /// The blocks of a search basis (projected, mul_blocks).
    pub const BASIS: [Binding; crate::engine::SEARCH_BLOCKS] =
        [read(4, "s0"), read(5, "s1"), read(6, "s2")];
    /// The basis' image under C (projected).
    pub const IMAGE: [Binding; crate::engine::SEARCH_BLOCKS] =
        [read(7, "cs0"), read(8, "cs1"), read(9, "cs2")];
    /// mul_blocks' second product (the blocks after the first).
    pub const TAIL: Binding = read_write(10, "tail");
    /// mul_small_sub's minuend.
    pub const BASE: Binding = read(11, "base");
    /// The pair kernels' second left operand.
    pub const A1: Binding = read(12, "a1");
    /// The pair kernels' second output (mul_blocks: the second set's sum).
    pub const OUT1: Binding = read_write(13, "out1");
    /// mul_blocks' second set's tail.
    pub const TAIL1: Binding = read_write(14, "tail1");
    /// c_mul_gram's parts of Xᵀ(C X), one k x k matrix per C_MUL_ROWS rows.
    pub const GRAM_PART: Binding = read_write(15, "gram_part");
}

/// The bindings of small.wgsl.
pub mod small {
    use super::{read, read_write, Binding};
    /// The k x k matrix.
    pub const S: Binding = read(1, "s");
    /// Its shifted inverse.
    pub const OUT: Binding = read_write(2, "out");
    /// inverse_spd_of_parts: the summed matrix.
    pub const GRAM: Binding = read_write(3, "gram");
}

/// The bindings of update.wgsl.
pub mod update {
    use super::{read, read_write, Binding};
    /// The distinct inputs of `combine` other than its output, in order.
    pub const TERMS: [Binding; crate::engine::MAX_COMBINE_TERMS] =
        [read(1, "t0"), read(2, "t1"), read(3, "t2"), read(4, "t3")];
    /// The output of `combine`.
    pub const OUT: Binding = read_write(5, "out");
    /// The engine's scalars.
    pub const SCALARS: Binding = read_write(6, "scalars");
}

/// The bindings of reduce.wgsl.
pub mod reduce {
    use super::{read, read_write, Binding};
    /// The first pair's (or the ratio's numerator) first matrix.
    pub const A0: Binding = read(1, "a0");
    /// The first pair's second matrix (or the ratio's denominator).
    pub const B0: Binding = read(2, "b0");
    /// The second pair's first matrix.
    pub const A1: Binding = read(3, "a1");
    /// The second pair's second matrix.
    pub const B1: Binding = read(4, "b1");
    /// The engine's scalars.
    pub const SCALARS: Binding = read_write(5, "scalars");
    /// The stopping quantities recorded since the last check (the count first).
    pub const HISTORY: Binding = read_write(6, "history");
}

/// The bindings of sparse.wgsl.
pub mod sparse {
    use super::{read, read_write, Binding};
    /// A panel of a sparse matrix: row offsets, column indices, the values' f32 bits (u32 words).
    pub const PANEL: Binding = read(1, "panel");
    /// The tall matrix multiplied (column-major).
    pub const B: Binding = read(2, "b");
    /// The (scaled) column means μ.
    pub const MEAN: Binding = read(3, "mean");
    /// spmm: the per-column sums its centring term takes.
    pub const SUMS: Binding = read(4, "sums");
    /// spmm: the product.
    pub const OUT: Binding = read_write(5, "out");
    /// column_sums: the sums.
    pub const SUMS_OUT: Binding = read_write(6, "sums_out");
}

/// The bindings of eigen.wgsl.
pub mod eigen {
    use super::{read_write, Binding};
    /// The symmetric matrix (overwritten).
    pub const A: Binding = read_write(1, "a");
    /// The result.
    pub const OUT: Binding = read_write(2, "out");
    /// The work space.
    pub const WORK: Binding = read_write(3, "work");
}

#[cfg(test)]
mod tests {
    use super::split_coefficient;
    use crate::Arithmetic;

    #[test]
    fn coefficients_split_exactly_for_f32_and_to_48_bits_for_f64() {
        // Just under half an ulp above an odd f32: a rounded `lo` of half an ulp would make the f32
        // kernel's hi + lo round up to the next f32.
        let odd = 1.0 + f32::EPSILON as f64;
        let tricky = odd + f32::EPSILON as f64 / 2.0 - f64::EPSILON;
        for v in [tricky, 0.1, -3.7e5, 1e-30, 12345.678901234567, 0.0] {
            let (hi, lo) = split_coefficient(v, Arithmetic::F32);
            assert_eq!((hi, lo), (v as f32, 0.0), "{v}");
            assert_eq!(hi + lo, v as f32, "{v}");
            let (hi, lo) = split_coefficient(v, Arithmetic::F64);
            let sum = hi as f64 + lo as f64;
            assert!((sum - v).abs() <= v.abs() * 2f64.powi(-47), "{v}: {sum}");
        }
        // Beyond f32's range the split gives f32's infinity, and no NaN from inf − inf.
        assert_eq!(
            split_coefficient(1e300, Arithmetic::F64),
            (f32::INFINITY, 0.0)
        );
    }
}
