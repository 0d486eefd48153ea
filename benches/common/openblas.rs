//! OpenBLAS loaded at run time, for the comparisons of benches/gram_kernels.rs and
//! examples/cpu_gram_time.rs with what scikit-learn runs (unix only: dlopen).

/// OpenBLAS's sgemm and ssyrk (Fortran interface, 64-bit integers, as in NumPy's wheels: the
/// `scipy_`-prefixed symbols, or the plain ones), loaded at run time.
type Sgemm = unsafe extern "C" fn(
    *const u8,
    *const u8,
    *const i64,
    *const i64,
    *const i64,
    *const f32,
    *const f32,
    *const i64,
    *const f32,
    *const i64,
    *const f32,
    *mut f32,
    *const i64,
);
type Ssyrk = unsafe extern "C" fn(
    *const u8,
    *const u8,
    *const i64,
    *const i64,
    *const f32,
    *const f32,
    *const i64,
    *const f32,
    *mut f32,
    *const i64,
);

#[allow(dead_code)] // each user takes what it needs
pub struct OpenBlas {
    sgemm: Sgemm,
    ssyrk: Ssyrk,
}

#[allow(dead_code)]
impl OpenBlas {
    pub fn open(path: &str) -> Self {
        let name = std::ffi::CString::new(path).expect("a path without NUL");
        // SAFETY: dlopen and dlsym with NUL-terminated strings; the symbols have the signatures of
        // the reference BLAS with 64-bit integers (the hidden string lengths are not read).
        unsafe {
            let lib = libc::dlopen(name.as_ptr(), libc::RTLD_NOW);
            assert!(!lib.is_null(), "cannot open {path}");
            let symbol = |names: &[&[u8]]| {
                names
                    .iter()
                    .map(|n| libc::dlsym(lib, n.as_ptr().cast()))
                    .find(|p| !p.is_null())
                    .unwrap_or_else(|| panic!("{path} has no {:?}", names[0]))
            };
            OpenBlas {
                sgemm: std::mem::transmute::<*mut libc::c_void, Sgemm>(symbol(&[
                    b"scipy_sgemm_64_\0",
                    b"sgemm_64_\0",
                ])),
                ssyrk: std::mem::transmute::<*mut libc::c_void, Ssyrk>(symbol(&[
                    b"scipy_ssyrk_64_\0",
                    b"ssyrk_64_\0",
                ])),
            }
        }
    }

    /// `out = Bᵀ B` in full, B row-major len x m (Bᵀ column-major m x len).
    pub fn gram_full(&self, rows: &[f32], len: usize, m: usize, out: &mut [f32]) {
        check(rows, len, m, out);
        let (mi, li, one, zero) = (m as i64, len as i64, 1f32, 0f32);
        // SAFETY: the buffers hold m·len and m·m f32.
        unsafe {
            (self.sgemm)(
                b"N".as_ptr(),
                b"T".as_ptr(),
                &mi,
                &mi,
                &li,
                &one,
                rows.as_ptr(),
                &mi,
                rows.as_ptr(),
                &mi,
                &zero,
                out.as_mut_ptr(),
                &mi,
            )
        }
    }

    /// The lower triangle of `Bᵀ B`.
    pub fn gram_lower(&self, rows: &[f32], len: usize, m: usize, out: &mut [f32]) {
        check(rows, len, m, out);
        let (mi, li, one, zero) = (m as i64, len as i64, 1f32, 0f32);
        // SAFETY: as in gram_full.
        unsafe {
            (self.ssyrk)(
                b"L".as_ptr(),
                b"N".as_ptr(),
                &mi,
                &li,
                &one,
                rows.as_ptr(),
                &mi,
                &zero,
                out.as_mut_ptr(),
                &mi,
            )
        }
    }
}

/// What the BLAS calls' SAFETY rests on: buffers of m·len and m·m values, m ≥ 1 (lda = m).
fn check(rows: &[f32], len: usize, m: usize, out: &[f32]) {
    assert!(
        m > 0 && rows.len() >= m * len && out.len() >= m * m,
        "a {len} x {m} block"
    );
}
