//! The memory budget of a tool (`--memory SIZE`): how many bytes its working buffers may hold.
//!
//! `cube-extract` and `predict` size their chunk windows, record batches, workers in flight and model
//! batches from it. Without `--memory` the budget comes from the container's memory limit (cgroup v2
//! `memory.max`, or v1 `memory.limit_in_bytes`): three quarters of it, the rest left to the process
//! itself (GDAL or ONNX Runtime loaded, their caches, the allocator's slack). Without a limit it is a
//! modest fixed share of the machine, [`DEFAULT_WITHOUT_LIMIT`] or a quarter of RAM if that is less;
//! never "what happens to be free", so two runs of one task make the same choices.

use std::fmt;
use std::path::Path;

/// The budget without `--memory` and without a cgroup limit (capped at a quarter of RAM).
pub const DEFAULT_WITHOUT_LIMIT: u64 = 1 << 30;

/// Where a budget came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetOrigin {
    /// `--memory`.
    Requested,
    /// Three quarters of the container's limit (bytes).
    Cgroup { limit: u64 },
    /// [`DEFAULT_WITHOUT_LIMIT`] or a quarter of the machine's RAM (bytes), whichever is less.
    Machine { ram: Option<u64> },
}

/// Bytes the working buffers of one run may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    pub bytes: u64,
    pub origin: BudgetOrigin,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{input}' is not a memory size: write a number with an optional unit, e.g. 1500M, 2G or 1.5GiB (K, M, G, T are powers of 1024)")]
pub struct SizeError {
    pub input: String,
}

/// Parses `2G`, `1.5GiB`, `800M`, `800 MB`, `65536` (bytes). Units are powers of 1024 whether
/// written `G`, `GB` or `GiB` (as Kubernetes' `Gi` and Nextflow's `GB` mean in practice for memory).
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let err = || SizeError {
        input: input.to_string(),
    };
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| err())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .trim_end_matches("ib")
        .trim_end_matches('b')
        .trim_end_matches('i');
    let scale: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(err()),
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes as u64)
}

impl MemoryBudget {
    /// `--memory` if given, else the container limit's three quarters, else the machine default.
    pub fn choose(requested: Option<u64>) -> MemoryBudget {
        match requested {
            Some(bytes) => MemoryBudget {
                bytes,
                origin: BudgetOrigin::Requested,
            },
            None => MemoryBudget::from_limits(cgroup_limit(Path::new("/sys/fs/cgroup")), ram_bytes()),
        }
    }

    /// The default from a container limit and the machine's RAM (either may be unknown).
    pub fn from_limits(limit: Option<u64>, ram: Option<u64>) -> MemoryBudget {
        match limit {
            Some(limit) => MemoryBudget {
                bytes: limit / 4 * 3,
                origin: BudgetOrigin::Cgroup { limit },
            },
            None => MemoryBudget {
                bytes: ram.map_or(DEFAULT_WITHOUT_LIMIT, |r| (r / 4).min(DEFAULT_WITHOUT_LIMIT)),
                origin: BudgetOrigin::Machine { ram },
            },
        }
    }

    /// `share` of the budget (at least one byte), for one of `parts` consumers in flight.
    pub fn per(&self, parts: usize) -> u64 {
        (self.bytes / parts.max(1) as u64).max(1)
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = human_bytes(self.bytes);
        match self.origin {
            BudgetOrigin::Requested => write!(f, "{b} (--memory)"),
            BudgetOrigin::Cgroup { limit } => {
                write!(
                    f,
                    "{b} (3/4 of the container's limit of {}; --memory changes it)",
                    human_bytes(limit)
                )
            }
            BudgetOrigin::Machine { ram: Some(r) } if r / 4 < DEFAULT_WITHOUT_LIMIT => {
                write!(
                    f,
                    "{b} (a quarter of {} RAM, no container limit; --memory changes it)",
                    human_bytes(r)
                )
            }
            BudgetOrigin::Machine { .. } => {
                write!(
                    f,
                    "{b} (the default without a container limit; --memory changes it)"
                )
            }
        }
    }
}

/// The memory limit of this process's cgroup under `root` (normally `/sys/fs/cgroup`): v2
/// `memory.max` of the process's own group (or the root's), else v1 `memory/memory.limit_in_bytes`.
/// `None`: no limit (`max`, or v1's "unlimited" of nearly 2^63) or no cgroup file.
pub fn cgroup_limit(root: &Path) -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(|p| p.trim_start_matches('/').to_string())
    });
    let mut candidates = Vec::new();
    if let Some(own) = own.filter(|o| !o.is_empty()) {
        candidates.push(root.join(own).join("memory.max"));
    }
    candidates.push(root.join("memory.max"));
    candidates.push(root.join("memory").join("memory.limit_in_bytes"));
    candidates
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| parse_limit(&s))
}

/// A cgroup limit file's content: a number of bytes, or `max`; v1 writes "no limit" as a number
/// near 2^63 (rounded down to the page size).
fn parse_limit(s: &str) -> Option<u64> {
    let v: u64 = s.trim().parse().ok()?;
    (v < 1 << 60).then_some(v)
}

/// `MemTotal` of `/proc/meminfo`, bytes.
fn ram_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `bytes` for a log line: `512 B`, `2.5 KiB`, `3.0 MiB`, `1.2 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Peak resident set size of this process so far (`VmHWM`), bytes; `None` off Linux.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024_and_nonsense_is_refused() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2GB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("800 M"), Ok(800 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1Ti"), Ok(1 << 40));
        for bad in ["", "G", "2X", "-1G", "0", "1.2.3G", "0.1"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.to_string().contains("e.g. 1500M"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_default_is_three_quarters_of_the_limit_or_a_modest_share_of_ram() {
        let b = MemoryBudget::from_limits(Some(4 << 30), Some(64 << 30));
        assert_eq!(b.bytes, 3 << 30);
        assert!(
            b.to_string().contains("3/4 of the container's limit of 4.0 GiB"),
            "{b}"
        );
        let b = MemoryBudget::from_limits(None, Some(64 << 30));
        assert_eq!(b.bytes, DEFAULT_WITHOUT_LIMIT);
        let b = MemoryBudget::from_limits(None, Some(2 << 30));
        assert_eq!(b.bytes, 512 << 20);
        assert!(b.to_string().contains("a quarter of 2.0 GiB RAM"), "{b}");
        assert_eq!(MemoryBudget::from_limits(None, None).bytes, DEFAULT_WITHOUT_LIMIT);
        let r = MemoryBudget::choose(Some(123));
        assert_eq!((r.bytes, r.origin), (123, BudgetOrigin::Requested));
        assert_eq!(r.per(2), 61);
    }

    #[test]
    fn cgroup_files_are_read_for_v2_and_v1_and_unlimited_is_none() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_limit(d.path()), None);
        std::fs::create_dir(d.path().join("memory")).unwrap();
        std::fs::write(
            d.path().join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        assert_eq!(cgroup_limit(d.path()), None);
        std::fs::write(d.path().join("memory/memory.limit_in_bytes"), "2147483648\n").unwrap();
        assert_eq!(cgroup_limit(d.path()), Some(2 << 30));
        std::fs::write(d.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_limit(d.path()), None);
        std::fs::write(d.path().join("memory.max"), "4294967296\n").unwrap();
        assert_eq!(cgroup_limit(d.path()), Some(4 << 30));
    }

    #[test]
    fn bytes_read_as_a_person_would_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert!(peak_rss().is_some_and(|b| b > 0));
    }
}
