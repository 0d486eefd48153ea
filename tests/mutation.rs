//! Seeded random mutations of valid files of every format: byte flips, random bytes, insertions,
//! deletions, repeated blocks and truncations. Each mutated file must give an error or a valid matrix
//! (of the shape it says, every value read), and never a panic: the readers run under `catch_unwind`.
//! A valid result is also pushed through the Gram accumulation, which must not panic either.

mod common;

use common::files::*;
use laepca::io::{read_npy, Reader};
use laepca::rng::Rng;
use laepca::GramAccumulator;
use nalgebra::DMatrix;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Mutations per valid file (10 files: 3000 in all).
const MUTATIONS: usize = 300;

#[derive(Default, Debug)]
struct Outcomes {
    errors: usize,
    valid: usize,
    panics: Vec<String>,
}

fn below(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// One to four random edits of `bytes`, or a truncation.
fn mutate(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let edits = 1 + below(rng, 4);
    for _ in 0..edits {
        let at = below(rng, b.len());
        match below(rng, 7) {
            0 => b.truncate(at),
            1 if !b.is_empty() => b[at] ^= 1 << below(rng, 8),
            2 if !b.is_empty() => b[at] = rng.next_u64() as u8,
            3 => b.insert(at, rng.next_u64() as u8),
            4 if !b.is_empty() => {
                b.remove(at);
            }
            5 => {
                // A digit or a separator where a text reader looks for numbers.
                let picks = b"0123456789 ,\t\n.-e";
                b.insert(at, picks[below(rng, picks.len())]);
            }
            _ => {
                // A block repeated (a doubled line, a doubled gzip member part).
                let len = below(rng, 64).min(b.len() - at.min(b.len()));
                let block = b[at..at + len].to_vec();
                b.splice(at..at, block);
            }
        }
        if b.is_empty() {
            break;
        }
    }
    b
}

/// Reads a file as the CLI does (rows in chunks) and as a whole; a valid result is accumulated.
fn read_everything(path: &Path) -> Result<(), String> {
    let mut reader = Reader::open(path).map_err(|e| e.to_string())?;
    let (rows, cols) = (reader.rows(), reader.cols());
    let mut chunk = Vec::<f64>::new();
    let mut seen = 0;
    let mut acc = GramAccumulator::new(cols.max(1), true).map_err(|e| e.to_string())?;
    loop {
        let got = reader
            .read_rows(&mut chunk, reader.chunk_rows())
            .map_err(|e| e.to_string())?;
        if got == 0 {
            break;
        }
        assert_eq!(chunk.len(), got * cols, "{}", path.display());
        seen += got;
        // Non-finite values and zero columns are errors of the accumulation: fine, not a panic.
        let _ = acc.push_rows(&chunk);
    }
    assert_eq!(seen, rows, "{}", path.display());
    let _ = acc.finish();
    let whole = Reader::open(path)
        .and_then(|mut r| r.read_all::<f32>())
        .map_err(|e| e.to_string())?;
    assert_eq!(whole.data.len(), rows * cols);
    if path.extension().is_some_and(|e| e == "npy") {
        let a = read_npy::<f64>(path).map_err(|e| e.to_string())?;
        assert_eq!(a.data.len(), a.shape.iter().product::<usize>());
    }
    Ok(())
}

#[test]
fn seeded_mutations_give_errors_or_valid_matrices_never_panics() {
    // Declared sizes that memory could hold are allocated: keep the allowance small, so that a
    // mutated dimension cannot make the test allocate gigabytes.
    std::env::set_var("LAEPCA_MAX_MEMORY", "200000000");
    let x = DMatrix::from_fn(40, 12, |i, j| ((i * 29 + j * 7 + i * j) % 256) as f64);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(20261201);
    let mut total = Outcomes::default();
    for (name, bytes) in valid_files(&x, 3, 4) {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_everything(&path), Ok(()), "{name} must be valid");
        let mut outcomes = Outcomes::default();
        for i in 0..MUTATIONS {
            let mutated = mutate(&mut rng, &bytes);
            std::fs::write(&path, &mutated).unwrap();
            // Quiet while a reader may panic (the panic is counted, the file kept).
            let loud = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            let outcome = catch_unwind(AssertUnwindSafe(|| read_everything(&path)));
            std::panic::set_hook(loud);
            match outcome {
                Ok(Ok(())) => outcomes.valid += 1,
                Ok(Err(message)) => {
                    assert!(!message.is_empty());
                    outcomes.errors += 1;
                }
                Err(_) => {
                    let keep = dir.path().join(format!("panic-{i}-{name}"));
                    std::fs::write(&keep, &mutated).unwrap();
                    outcomes.panics.push(format!("mutation {i} of {name}"));
                }
            }
        }
        eprintln!(
            "{name}: {MUTATIONS} mutations: {} errors, {} valid, {} panics",
            outcomes.errors,
            outcomes.valid,
            outcomes.panics.len()
        );
        total.errors += outcomes.errors;
        total.valid += outcomes.valid;
        total.panics.extend(outcomes.panics);
    }
    eprintln!(
        "all: {} files, {} mutations: {} errors, {} valid, {} panics",
        valid_files(&x, 3, 4).len(),
        total.errors + total.valid + total.panics.len(),
        total.errors,
        total.valid,
        total.panics.len()
    );
    assert!(total.panics.is_empty(), "panics: {:?}", total.panics);
    // The mutations reach both outcomes (a test that only ever errs would prove little).
    assert!(total.errors > 0 && total.valid > 0, "{total:?}");
}
