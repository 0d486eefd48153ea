//! The element types of the binary formats (.npy and IDX): one table of each type's name, size, file
//! codes and the float type that holds it exactly, and one decoder of raw bytes to `f32`/`f64`.

use super::Precision;
use crate::Real;

/// An element type of a binary file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Bool,
    U1,
    I1,
    U2,
    I2,
    U4,
    I4,
    U8,
    I8,
    F4,
    F8,
}

/// What is known of one [`Kind`].
struct KindInfo {
    kind: Kind,
    /// NumPy's name.
    name: &'static str,
    /// Bytes per element.
    size: usize,
    /// The narrowest float type that holds every value exactly (64-bit integers: nearly).
    precision: Precision,
    /// The type codes of a .npy `descr` (without the byte-order character).
    npy_codes: [&'static str; 2],
    /// The IDX type byte (the third byte of the magic number), for the types IDX has.
    idx_code: Option<u8>,
}

use Precision::{F32, F64};

/// Every kind, in the order of [`Kind`].
#[rustfmt::skip]
const KINDS: [KindInfo; 11] = [
    KindInfo { kind: Kind::Bool, name: "bool", size: 1, precision: F32, npy_codes: ["b1", "?"], idx_code: None },
    KindInfo { kind: Kind::U1, name: "uint8", size: 1, precision: F32, npy_codes: ["u1", "B"], idx_code: Some(0x08) },
    KindInfo { kind: Kind::I1, name: "int8", size: 1, precision: F32, npy_codes: ["i1", "b"], idx_code: Some(0x09) },
    KindInfo { kind: Kind::U2, name: "uint16", size: 2, precision: F32, npy_codes: ["u2", "H"], idx_code: None },
    KindInfo { kind: Kind::I2, name: "int16", size: 2, precision: F32, npy_codes: ["i2", "h"], idx_code: Some(0x0B) },
    KindInfo { kind: Kind::U4, name: "uint32", size: 4, precision: F64, npy_codes: ["u4", "I"], idx_code: None },
    KindInfo { kind: Kind::I4, name: "int32", size: 4, precision: F64, npy_codes: ["i4", "i"], idx_code: Some(0x0C) },
    KindInfo { kind: Kind::U8, name: "uint64", size: 8, precision: F64, npy_codes: ["u8", "Q"], idx_code: None },
    KindInfo { kind: Kind::I8, name: "int64", size: 8, precision: F64, npy_codes: ["i8", "q"], idx_code: None },
    KindInfo { kind: Kind::F4, name: "float32", size: 4, precision: F32, npy_codes: ["f4", "f"], idx_code: Some(0x0D) },
    KindInfo { kind: Kind::F8, name: "float64", size: 8, precision: F64, npy_codes: ["f8", "d"], idx_code: Some(0x0E) },
];

impl Kind {
    fn info(self) -> &'static KindInfo {
        &KINDS[self as usize]
    }

    /// NumPy's name of the type ("uint8", "float32", ...).
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        self.info().size
    }

    /// The narrowest float type that holds every value exactly (64-bit integers: nearly).
    pub fn precision(self) -> Precision {
        self.info().precision
    }

    /// The kind of a .npy type code such as `f4` or `d` (the byte order already taken off).
    pub fn from_npy_code(code: &str) -> Option<Kind> {
        KINDS
            .iter()
            .find(|k| k.npy_codes.contains(&code))
            .map(|k| k.kind)
    }

    /// The kind of an IDX type byte.
    pub fn from_idx_code(code: u8) -> Option<Kind> {
        KINDS
            .iter()
            .find(|k| k.idx_code == Some(code))
            .map(|k| k.kind)
    }
}

/// An element type and its byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Dtype {
    pub kind: Kind,
    pub big_endian: bool,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        self.kind.size()
    }

    /// NumPy's name of the type, with the byte order when it is big-endian.
    pub fn name(self) -> String {
        if self.big_endian && self.size() > 1 {
            format!("{} (big-endian)", self.kind.name())
        } else {
            self.kind.name().to_string()
        }
    }

    /// The narrowest float type that holds every value exactly (64-bit integers: nearly).
    pub fn precision(self) -> Precision {
        self.kind.precision()
    }
}

/// The product of `dims` (None on overflow): the element count of a shape.
pub(super) fn element_count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Whether the file's values already are T in this machine's byte order: their bytes are T's, with no
/// per-value conversion.
pub(super) fn is_native<T: Real>(dtype: Dtype) -> bool {
    let same_type = match dtype.kind {
        Kind::F4 => std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>(),
        Kind::F8 => std::any::TypeId::of::<T>() == std::any::TypeId::of::<f64>(),
        _ => false,
    };
    same_type && dtype.big_endian == cfg!(target_endian = "big")
}

/// Decodes whole elements of `bytes` and appends them to `out`.
pub(super) fn decode<T: Real>(dtype: Dtype, bytes: &[u8], out: &mut Vec<T>) {
    if is_native::<T>(dtype) {
        let (base, count) = (out.len(), bytes.len() / std::mem::size_of::<T>());
        out.resize(base + count, T::zero());
        let whole = &bytes[..count * std::mem::size_of::<T>()];
        bytemuck::cast_slice_mut::<T, u8>(&mut out[base..]).copy_from_slice(whole);
        return;
    }
    macro_rules! run {
        ($t:ty, $n:expr) => {{
            out.reserve(bytes.len() / $n);
            let chunks = bytes.chunks_exact($n);
            if dtype.big_endian {
                out.extend(chunks.map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    T::of_f64(<$t>::from_be_bytes(a) as f64)
                }));
            } else {
                out.extend(chunks.map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    T::of_f64(<$t>::from_le_bytes(a) as f64)
                }));
            }
        }};
    }
    match dtype.kind {
        Kind::Bool => out.extend(
            bytes
                .iter()
                .map(|&b| T::of_f64(if b != 0 { 1.0 } else { 0.0 })),
        ),
        Kind::U1 => run!(u8, 1),
        Kind::I1 => run!(i8, 1),
        Kind::U2 => run!(u16, 2),
        Kind::I2 => run!(i16, 2),
        Kind::U4 => run!(u32, 4),
        Kind::I4 => run!(i32, 4),
        Kind::U8 => run!(u64, 8),
        Kind::I8 => run!(i64, 8),
        Kind::F4 => run!(f32, 4),
        Kind::F8 => run!(f64, 8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_the_order_of_kind() {
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(k.kind as usize, i, "{}", k.name);
            assert_eq!(k.kind.info().name, k.name);
        }
        assert_eq!(Kind::from_npy_code("d"), Some(Kind::F8));
        assert_eq!(Kind::from_npy_code("u2"), Some(Kind::U2));
        assert_eq!(Kind::from_npy_code("f2"), None);
        assert_eq!(Kind::from_idx_code(0x0B), Some(Kind::I2));
        assert_eq!(Kind::from_idx_code(0x0A), None);
        assert_eq!(element_count(&[3, 4, 5]), Some(60));
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[usize::MAX, 2]), None);
    }
}
