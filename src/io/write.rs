//! Writing results: .npy (float32, C order) and other files, atomically. Everything is first written to
//! a temporary file in the destination's directory ([`StagedFile`]); only [`StagedFile::commit`] renames
//! it into place, so a failed run leaves no half-written result (a dropped, uncommitted file is removed).

use super::dtype::element_count;
use super::error::{IoContext, IoError, Result};
use super::npy::header_bytes;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A file written under a temporary name next to its destination, waiting for [`commit`](Self::commit).
/// Dropped without a commit, the temporary file is deleted.
#[derive(Debug)]
pub struct StagedFile {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl StagedFile {
    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Renames the temporary file to its destination (replacing an existing file atomically).
    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.dest).writing(&self.dest)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A new temporary file next to `dest` (a hidden name with the process id and a counter).
fn create_temp(dest: &Path) -> Result<(File, StagedFile)> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| IoError::invalid(dest, "not a file name"))?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .writing(dest)?;
    Ok((
        file,
        StagedFile {
            tmp,
            dest: dest.to_path_buf(),
            committed: false,
        },
    ))
}

/// Writes `bytes` to a temporary file next to `dest` and returns it staged (not yet renamed).
pub fn stage_bytes(dest: impl AsRef<Path>, bytes: &[u8]) -> Result<StagedFile> {
    let dest = dest.as_ref();
    let (mut file, staged) = create_temp(dest)?;
    file.write_all(bytes).writing(dest)?;
    file.sync_all().writing(dest)?;
    Ok(staged)
}

/// Writes `bytes` to `dest` atomically (a temporary file, then a rename).
pub fn write_atomic(dest: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    stage_bytes(dest, bytes)?.commit()
}

/// A float32 C-order .npy file written in pieces (e.g. scores, chunk by chunk), to a temporary name.
pub struct NpyWriter {
    out: BufWriter<File>,
    staged: StagedFile,
    expected: usize,
    written: usize,
}

impl NpyWriter {
    /// Starts a .npy file of `shape` at a temporary name next to `dest`.
    pub fn create(dest: impl AsRef<Path>, shape: &[usize]) -> Result<Self> {
        let dest = dest.as_ref();
        let expected = element_count(shape)
            .ok_or_else(|| IoError::too_large(dest, format!("the shape {shape:?} overflows")))?;
        let (file, staged) = create_temp(dest)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header_bytes(shape)).writing(dest)?;
        Ok(NpyWriter {
            out,
            staged,
            expected,
            written: 0,
        })
    }

    /// The temporary file being written (removed unless the file is committed).
    pub fn temp_path(&self) -> &Path {
        &self.staged.tmp
    }

    /// Appends values (in C order).
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        if self.written + values.len() > self.expected {
            return Err(IoError::invalid(
                &self.staged.dest,
                format!(
                    "{} values written to an array of {}",
                    self.written + values.len(),
                    self.expected
                ),
            ));
        }
        let mut bytes = [0u8; 4096];
        for chunk in values.chunks(1024) {
            for (b, v) in bytes.chunks_exact_mut(4).zip(chunk) {
                b.copy_from_slice(&v.to_le_bytes());
            }
            self.out
                .write_all(&bytes[..4 * chunk.len()])
                .writing(&self.staged.dest)?;
        }
        self.written += values.len();
        Ok(())
    }

    /// Checks that every value was written, flushes and syncs; the file is then staged (commit it).
    pub fn finish(self) -> Result<StagedFile> {
        let NpyWriter {
            out,
            staged,
            expected,
            written,
        } = self;
        if written != expected {
            return Err(IoError::invalid(
                &staged.dest,
                format!("{written} values written to an array of {expected}"),
            ));
        }
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .writing(&staged.dest)?;
        file.sync_all().writing(&staged.dest)?;
        Ok(staged)
    }
}

/// Writes a float32 C-order .npy file of `shape` atomically.
pub fn write_npy(dest: impl AsRef<Path>, shape: &[usize], values: &[f32]) -> Result<()> {
    stage_npy(dest, shape, values)?.commit()
}

/// Writes a float32 C-order .npy file of `shape` to a temporary name next to `dest` (commit it).
pub fn stage_npy(dest: impl AsRef<Path>, shape: &[usize], values: &[f32]) -> Result<StagedFile> {
    let mut w = NpyWriter::create(dest, shape)?;
    w.write(values)?;
    w.finish()
}
