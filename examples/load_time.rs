//! Wall-clock time of reading a whole data file into memory as f32 (any format of `laepca::io`):
//! `cargo run --release --example load_time -- FILE`. Prints the shape and the seconds, as
//! `rows cols seconds`, for scripts/load_compare.py. `RAYON_NUM_THREADS` sets the text readers' threads.

use std::time::Instant;

fn main() -> Result<(), laepca::io::IoError> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: load_time FILE");
        std::process::exit(2);
    };
    let start = Instant::now();
    let m = laepca::io::read_matrix::<f32>(&path)?;
    let seconds = start.elapsed().as_secs_f64();
    println!("{} {} {seconds:.6}", m.rows, m.cols);
    Ok(())
}
