//! Size-checked allocation. Every buffer whose size comes from the input (a header's declared shape, a
//! text file's growing values, the m x m Gram matrix) is allocated through here: the request is checked
//! against what the input can hold and against the memory available, and a refusal says how much it
//! would need, instead of an abort inside the allocator.

use std::fmt;

/// The most a deflate stream expands (RFC 1951: 258 bytes from a 2-bit code, with the block overhead
/// about 1032:1), so a gzip file of `z` bytes holds at most `z · 1032` bytes of data.
pub(crate) const MAX_DEFLATE_RATIO: u64 = 1032;

/// What limited a refused allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The size does not even fit in 64 bits.
    Overflow,
    /// The input cannot hold that many values (`holds` is the most it can: a truncated or corrupt
    /// header).
    Input {
        /// Values the input can hold at most.
        holds: u64,
    },
    /// More than the memory available (`available` bytes).
    Memory {
        /// Bytes available.
        available: u64,
    },
    /// The allocator refused it (an address-space limit, a container's limit).
    Refused,
}

/// A refused allocation: what it was for, the bytes it needs and the limit it exceeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeError {
    /// What the buffer was for.
    pub what: String,
    /// Bytes needed (None when the size overflows).
    pub needed: Option<u64>,
    /// The limit it exceeds.
    pub limit: Limit,
}

impl From<SizeError> for crate::Error {
    /// [`Error::TooLarge`](crate::Error::TooLarge) with the refusal's message.
    fn from(e: SizeError) -> Self {
        crate::Error::TooLarge {
            detail: e.to_string(),
        }
    }
}

/// Bytes as people read them: 512 B, 3.1 MB, 80.0 GB.
pub(crate) fn human_bytes(b: u64) -> String {
    let units = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")];
    for (scale, unit) in units {
        if b as f64 >= scale {
            return format!("{:.1} {unit}", b as f64 / scale);
        }
    }
    format!("{b} B")
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let needed = self.needed.map(human_bytes);
        match (self.limit, needed) {
            (Limit::Overflow, _) | (_, None) => write!(f, "{}: its size overflows", self.what),
            (Limit::Input { holds }, Some(n)) => write!(
                f,
                "{} needs {n} but the input holds at most {} of it (a corrupt or truncated file?)",
                self.what,
                human_bytes(holds)
            ),
            (Limit::Memory { available }, Some(n)) => write!(
                f,
                "{} needs {n} of memory but {} is available",
                self.what,
                human_bytes(available)
            ),
            (Limit::Refused, Some(n)) => write!(
                f,
                "{} needs {n} of memory and the system refused it (a ulimit or a container limit?)",
                self.what
            ),
        }
    }
}

impl std::error::Error for SizeError {}

/// A number from `/proc/meminfo`-style text: the `key:` line's value in kB, as bytes.
fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// The memory this process may still allocate for data: `LAEPCA_MAX_MEMORY` (bytes) when set, else on
/// Linux the kernel's `MemAvailable` (bounded by a cgroup v2 `memory.max`), elsewhere unknown (None:
/// only the allocator's own refusal limits it).
pub fn available_memory() -> Option<u64> {
    if let Some(v) = std::env::var("LAEPCA_MAX_MEMORY")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(v);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut available = meminfo_bytes(&meminfo, "MemAvailable")?;
    let cgroup = |name: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{name}"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    if let (Some(max), Some(used)) = (cgroup("memory.max"), cgroup("memory.current")) {
        available = available.min(max.saturating_sub(used));
    }
    Some(available)
}

/// Checks a request for `count` values of `elem_bytes` bytes each (None: the count overflowed): at
/// most `input_holds` values when the input bounds them, and within the memory available.
pub(crate) fn check(
    what: impl Fn() -> String,
    count: Option<usize>,
    elem_bytes: usize,
    input_holds: Option<u64>,
) -> Result<(), SizeError> {
    let needed = count.and_then(|c| (c as u64).checked_mul(elem_bytes as u64));
    let limit = match (count, needed) {
        (Some(c), Some(n)) => match (input_holds, available_memory()) {
            (Some(holds), _) if c as u64 > holds => Limit::Input {
                holds: holds.saturating_mul(elem_bytes as u64),
            },
            (_, Some(available)) if n > available => Limit::Memory { available },
            _ => return Ok(()),
        },
        _ => Limit::Overflow,
    };
    Err(SizeError {
        what: what(),
        needed,
        limit,
    })
}

/// The allocator itself refused `count` values of `T` (e.g. under a `ulimit -v`).
fn refused<T>(what: impl Fn() -> String, count: usize) -> SizeError {
    SizeError {
        what: what(),
        needed: (count as u64).checked_mul(std::mem::size_of::<T>() as u64),
        limit: Limit::Refused,
    }
}

/// Makes room in `v` for `additional` more values, checked: the memory available for the grown
/// vector, then the allocator's own answer (no abort).
pub(crate) fn reserve<T>(
    v: &mut Vec<T>,
    additional: usize,
    what: impl Fn() -> String,
) -> Result<(), SizeError> {
    if v.capacity() - v.len() >= additional {
        return Ok(());
    }
    // Amortised growth: at least double, as Vec would.
    let total = v.len().checked_add(additional);
    check(&what, total, std::mem::size_of::<T>(), None)?;
    let total = total.unwrap_or(usize::MAX);
    // (Not falling back to exact growth: near the limit that would realloc every row and leave the
    // process no memory for anything else.)
    let grown = total.max(v.len().saturating_mul(2));
    if v.try_reserve_exact(grown - v.len()).is_err() {
        return Err(refused::<T>(what, grown));
    }
    Ok(())
}

/// A vector of `count` copies of `value`, checked as [`check`] does, then by the allocator.
pub(crate) fn filled<T: Clone>(
    what: impl Fn() -> String,
    count: Option<usize>,
    input_holds: Option<u64>,
    value: T,
) -> Result<Vec<T>, SizeError> {
    check(&what, count, std::mem::size_of::<T>(), input_holds)?;
    let count = count.unwrap_or(usize::MAX);
    let mut v = Vec::new();
    if v.try_reserve_exact(count).is_err() {
        return Err(refused::<T>(what, count));
    }
    v.resize(count, value);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_against_input_and_memory() {
        let e = check(|| "x".into(), Some(10), 8, Some(9)).unwrap_err();
        assert_eq!(e.limit, Limit::Input { holds: 72 });
        assert_eq!(e.needed, Some(80));
        assert!(check(|| "x".into(), Some(9), 8, Some(9)).is_ok());
        let e = check(|| "x".into(), None, 8, None).unwrap_err();
        assert_eq!(e.limit, Limit::Overflow);
        let e = check(|| "x".into(), Some(usize::MAX / 4), 8, None).unwrap_err();
        assert_eq!(e.limit, Limit::Overflow);
        // 2^58 values of 8 bytes (2.3 EB): more than any memory, refused with its size.
        let e = filled(|| "C".into(), Some(1 << 58), None, 0f64).unwrap_err();
        assert!(e.to_string().starts_with("C needs"), "{e}");
        let mut v = vec![1u8; 4];
        assert!(reserve(&mut v, usize::MAX - 2, || "line".into()).is_err());
        assert!(reserve(&mut v, 100, || "line".into()).is_ok());
        assert!(v.capacity() >= 104);
    }

    #[test]
    fn meminfo_parse_and_human_bytes() {
        let t = "MemTotal:       32000000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(meminfo_bytes(t, "MemAvailable"), Some(20_480_000_000));
        assert_eq!(meminfo_bytes(t, "Nope"), None);
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(80_000_000_000), "80.0 GB");
    }
}
