//! How the C allocator hands large buffers back.
//!
//! glibc's `malloc` serves a request of at least its mmap threshold with a mapping of its own, which
//! `free` unmaps at once, and smaller ones from its heaps, whose freed space it keeps. The threshold
//! starts at 128 KiB but rises, up to 32 MiB, to the size of every mapped block freed: after the first
//! band window or record-batch column (1–30 MiB) is freed, the next ones of that size come from the
//! heaps, and a heap's free space is returned only from its top. Worker threads that allocate and free
//! such buffers out of step (each in an arena of its own) leave their heaps holding the peak of all
//! of them: measured with cube-extract on a 1000 px × 192-date tile, 854 MiB peak RSS against 619 MiB
//! with the threshold fixed at [`MMAP_THRESHOLD`], at the same CPU time (docs/performance.md).
//!
//! Fixing the threshold (what `mallopt(M_MMAP_THRESHOLD)` does; it also stops the rise) makes the
//! memory the budget plans for the memory the process holds. Rust's own allocations and GDAL's and
//! ONNX Runtime's all go through this `malloc`, so one call covers them all. A user who sets glibc's
//! own `MALLOC_MMAP_THRESHOLD_` keeps it.

// The one `mallopt` call below; everything else unsafe is in treesits-gdal.
#![allow(unsafe_code)]

/// Allocations of at least this many bytes get their own mapping, returned to the system when freed:
/// above the small, often reused buffers (a 256 × 256 Int16 block is 128 KiB), below the windows,
/// columns and batches whose number in flight the memory budget counts.
pub const MMAP_THRESHOLD: usize = 1 << 20;

/// The environment variable with which glibc's `malloc` takes its threshold at start-up.
pub const THRESHOLD_ENV: &str = "MALLOC_MMAP_THRESHOLD_";

/// What [`return_large_buffers`] sets: [`MMAP_THRESHOLD`], unless the user chose a threshold through
/// [`THRESHOLD_ENV`] (given here as its value).
pub fn threshold_to_set(env: Option<&str>) -> Option<usize> {
    match env {
        Some(v) if !v.trim().is_empty() => None,
        _ => Some(MMAP_THRESHOLD),
    }
}

/// Fixes the C allocator's mmap threshold at [`MMAP_THRESHOLD`] (glibc on Linux; elsewhere nothing).
/// Returns the threshold set, `None` when it was left alone.
pub fn return_large_buffers() -> Option<usize> {
    let env = std::env::var(THRESHOLD_ENV).ok();
    let bytes = threshold_to_set(env.as_deref())?;
    set_threshold(bytes).then_some(bytes)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_threshold(bytes: usize) -> bool {
    let Ok(value) = libc::c_int::try_from(bytes) else {
        return false;
    };
    // SAFETY: mallopt takes a parameter number and a value; M_MMAP_THRESHOLD accepts any value up to
    // HEAP_MAX / 2 (32 MiB on 64-bit), and returns 0 when it refuses one.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, value) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_threshold(_bytes: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_own_threshold_is_kept() {
        assert_eq!(threshold_to_set(None), Some(MMAP_THRESHOLD));
        assert_eq!(threshold_to_set(Some("")), Some(MMAP_THRESHOLD));
        assert_eq!(threshold_to_set(Some("65536")), None);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_freed_large_buffer_leaves_the_process() {
        // With the threshold fixed, a buffer of a few MiB is a mapping of its own: its pages are in
        // the resident set while it lives and leave it when it is freed, however many came before
        // (with glibc's rising threshold the second one comes from a heap and stays there).
        assert!(set_threshold(MMAP_THRESHOLD));
        let rss = || {
            let s = std::fs::read_to_string("/proc/self/statm").unwrap();
            let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
            pages * 4096
        };
        for _ in 0..4 {
            let before = rss();
            let mut v = vec![1u8; 8 << 20];
            v[12345] = 7;
            let during = rss();
            std::hint::black_box(&v);
            drop(v);
            let after = rss();
            assert!(during >= before + (7 << 20), "{before} → {during}");
            assert!(
                after + (7 << 20) <= during,
                "the freed 8 MiB stayed: {during} → {after}"
            );
        }
    }
}
