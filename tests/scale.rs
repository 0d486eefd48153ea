//! Scale: data whose magnitude would overflow or underflow the Gram products (f32 data of 1e±20 and
//! 1e±30, f64 data of 1e±150, columns of very different scales) gets the same directions as the data
//! at unit scale; a Gram matrix that truly exceeds f64 is named as an overflow, not as bad data. And
//! the Gram accumulation does not depend on how the samples are split into pushes.

mod common;

use common::{columns, largest_principal_angle};
use laepca::{synthetic, Backend, Error, GramAccumulator, LaePca};
use nalgebra::DMatrix;

fn data() -> DMatrix<f64> {
    let sigma = synthetic::geometric_spectrum(12, 40.0, 0.7);
    synthetic::prescribed_spectrum(1500, 12, &sigma, 3.0, 11).x
}

fn fit32(x: &DMatrix<f32>) -> laepca::Fit<f32> {
    LaePca::new(3).backend(Backend::Cpu).seed(2).fit(x).unwrap()
}

#[test]
fn f32_data_far_from_unit_scale_gets_the_same_directions() {
    let x = data().map(|v| v as f32);
    let base = fit32(&x);
    let base_dirs = columns(&base.components);
    // Powers of ten are not exact in binary: the scaled data is a (slightly) different matrix, so the
    // directions agree to f32 precision (the base fit's own accuracy), not to the bit.
    for scale in [1e20f64, 1e-20, 1e30, 1e-30] {
        let scaled = x.map(|v| (v as f64 * scale) as f32);
        let fit = fit32(&scaled);
        let angle = largest_principal_angle(&base_dirs, &columns(&fit.components));
        assert!(angle < 1e-4, "scale {scale:e}: largest angle {angle:e}");
        for i in 0..3 {
            let rel =
                (fit.singular_values[i] as f64 / scale) / base.singular_values[i] as f64 - 1.0;
            assert!(
                rel.abs() < 1e-5,
                "scale {scale:e}: sigma_{i} off by {rel:e}"
            );
            let ratio = fit.explained_variance_ratio[i] / base.explained_variance_ratio[i] - 1.0;
            assert!(
                ratio.abs() < 1e-5,
                "scale {scale:e}: ratio {i} off by {ratio:e}"
            );
        }
    }
    // A power of two scales exactly: the same fit, bit for bit (directions and ratios).
    let exact = fit32(&x.map(|v| v * 2f32.powi(70)));
    assert_eq!(exact.components, base.components);
    assert_eq!(
        exact.explained_variance_ratio,
        base.explained_variance_ratio
    );
}

#[test]
fn f64_data_far_from_unit_scale_gets_the_same_directions() {
    let x = data();
    let fit = |x: &DMatrix<f64>| LaePca::new(3).backend(Backend::Cpu).seed(2).fit(x).unwrap();
    let base = fit(&x);
    for scale in [1e150, 1e-150] {
        let scaled = fit(&x.map(|v| v * scale));
        let angle =
            largest_principal_angle(&columns(&base.components), &columns(&scaled.components));
        assert!(angle < 1e-9, "scale {scale:e}: largest angle {angle:e}");
        let rel = scaled.singular_values[0] / scale / base.singular_values[0] - 1.0;
        assert!(rel.abs() < 1e-10, "scale {scale:e}: sigma_1 off by {rel:e}");
    }
}

#[test]
fn columns_of_very_different_scales_keep_their_directions() {
    // Three columns at 1e20 and 1e-20 around a unit-scale block: in f32 their squares leave the range.
    let x = data().map(|v| v as f32);
    let mut scaled = x.clone();
    let factors: Vec<f64> = (0..12)
        .map(|j| match j % 3 {
            0 => 1e20,
            1 => 1.0,
            _ => 1e-20,
        })
        .collect();
    for (j, f) in factors.iter().enumerate() {
        scaled.column_mut(j).apply(|v| *v = (*v as f64 * f) as f32);
    }
    // The reference: the f64 Gram of the same f32 values, eigen-decomposed in f64.
    let x64 = scaled.map(|v| v as f64);
    let (_, reference) = common::reference_eigen(&common::centred_gram(&x64), 2);
    let fit = LaePca::new(2)
        .backend(Backend::Cpu)
        .seed(2)
        .fit(&scaled)
        .unwrap();
    let angle = largest_principal_angle(&reference, &columns(&fit.components));
    assert!(angle < 1e-4, "largest angle {angle:e}");
}

#[test]
fn a_gram_matrix_beyond_f64_is_an_overflow() {
    let x = data().map(|v| v * 1e160);
    let e = LaePca::new(2).backend(Backend::Cpu).fit(&x).unwrap_err();
    assert!(matches!(e, Error::Overflow { .. }), "{e:?}");
    assert!(e.to_string().contains("overflow"), "{e}");
}

#[test]
fn the_gram_does_not_depend_on_how_samples_are_pushed() {
    // More samples than two blocks of 2048, so pushes cross block boundaries and later blocks take the
    // path that shifts samples as they are copied in.
    let sigma = synthetic::geometric_spectrum(12, 40.0, 0.7);
    let x = synthetic::prescribed_spectrum(5000, 12, &sigma, 100.0, 11)
        .x
        .map(|v| v as f32);
    let rows: Vec<f32> = x.transpose().iter().copied().collect(); // row-major
    let m = 12;
    let whole = {
        let mut acc = GramAccumulator::new(m, true).unwrap();
        acc.push_rows(&rows).unwrap();
        acc.finish().unwrap()
    };
    for chunk_rows in [1, 7, 2047, 2048, 2049, 4999] {
        let mut acc = GramAccumulator::new(m, true).unwrap();
        for chunk in rows.chunks(chunk_rows * m) {
            acc.push_rows(chunk).unwrap();
        }
        let stats = acc.finish().unwrap();
        assert_eq!(stats.c, whole.c, "pushes of {chunk_rows} rows");
        assert_eq!(stats.mean, whole.mean, "pushes of {chunk_rows} rows");
    }
}

#[test]
fn non_finite_values_are_located_in_any_block() {
    // A NaN past the first block, in one push and after earlier pushes; and in a features-in-rows
    // matrix (the sample is the column).
    let (n, m) = (5000, 3);
    let mut rows = vec![1.0f32; n * m];
    for (i, v) in rows.iter_mut().enumerate() {
        *v = (i % 7) as f32;
    }
    rows[4321 * m + 2] = f32::NAN;
    let mut acc = GramAccumulator::new(m, true).unwrap();
    let e = acc.push_rows(&rows).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                row: 4321,
                col: 2,
                ..
            }
        ),
        "{e:?}"
    );
    let mut acc = GramAccumulator::new(m, true).unwrap();
    acc.push_rows(&rows[..2100 * m]).unwrap();
    let e = acc.push_rows(&rows[2100 * m..]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                row: 4321,
                col: 2,
                ..
            }
        ),
        "pushed in two: {e:?}"
    );
    let x = DMatrix::from_row_slice(n, m, &rows).transpose(); // m x n: features in rows
    let e = LaePca::new(1)
        .backend(Backend::Cpu)
        .layout(laepca::Layout::FeaturesInRows)
        .fit(&x)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                row: 2,
                col: 4321,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn subnormal_f32_columns_are_scaled_not_lost() {
    // A column of subnormal f32 values (~1e-39) beside unit-scale ones: its power-of-two scale must
    // stay representable, and its variance is then recovered rather than reported as overflow.
    let x = data().map(|v| v as f32);
    let mut tiny = x.clone();
    tiny.column_mut(0)
        .apply(|v| *v = (*v as f64 * 1e-39) as f32);
    let x64 = tiny.map(|v| v as f64);
    let reference = common::centred_gram(&x64);
    let mut acc = GramAccumulator::new(12, true).unwrap();
    let rows: Vec<f32> = tiny.transpose().iter().copied().collect();
    acc.push_rows(&rows).unwrap();
    let stats = acc.finish().unwrap();
    let rel = (stats.c[(0, 0)] - reference[(0, 0)]).abs() / reference[(0, 0)];
    assert!(
        rel < 1e-4,
        "variance of the subnormal column off by {rel:e}"
    );
    let rel = (stats.c[(1, 1)] - reference[(1, 1)]).abs() / reference[(1, 1)];
    assert!(rel < 1e-5, "{rel:e}");
}

#[test]
fn a_failed_push_fails_the_accumulator() {
    let mut acc = GramAccumulator::new(2, true).unwrap();
    acc.push_rows(&[1.0f32, 2.0, 3.0, 4.0]).unwrap();
    let e = acc.push_rows(&[5.0f32, f32::INFINITY]).unwrap_err();
    assert!(
        matches!(e, Error::NonFinite { row: 2, col: 1, .. }),
        "{e:?}"
    );
    assert_eq!(acc.push_rows(&[1.0f32, 1.0]).unwrap_err(), e);
    assert_eq!(acc.finish().unwrap_err(), e);
}
