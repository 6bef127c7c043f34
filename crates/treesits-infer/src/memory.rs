//! The default batch size: as many pixels per model call as a quarter of the free memory allows,
//! estimating what one pixel costs from its sequence length.
//!
//! The estimate is deliberately generous (16 KiB per time step and pixel: inputs, and the activations
//! of an LSTM or a Transformer of a few hundred channels), so the default never runs out of memory;
//! `--batch-size` overrides it.

use crate::runtime::Device;

/// Bytes one time step of one pixel is assumed to cost inside the model.
pub const BYTES_PER_STEP: u64 = 16 * 1024;
/// Sequence length assumed for a model without `max_length` (a dense Sentinel-2 year).
pub const UNBOUNDED_STEPS: usize = 256;
pub const MIN_BATCH: usize = 32;
pub const MAX_BATCH: usize = 8192;

/// The batch size for `free` bytes and sequences of up to `steps`, as a power of two.
pub fn batch_size_for(free: u64, steps: usize) -> usize {
    let per_pixel = BYTES_PER_STEP * steps.max(1) as u64;
    let n = ((free / 4) / per_pixel).clamp(MIN_BATCH as u64, MAX_BATCH as u64) as usize;
    // Round down to a power of two: friendlier to GEMM kernels and easy to reason about.
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// The default batch size on `device` (never `Auto`), with a sentence saying where it came from.
pub fn default_batch_size(device: Device, steps: usize) -> (usize, String) {
    let (free, what) = match device {
        Device::Cuda => (gpu_free_bytes(), "free GPU memory"),
        _ => (host_free_bytes(), "available memory"),
    };
    match free {
        Some(free) => (
            batch_size_for(free, steps),
            format!(
                "{:.1} GiB {what}, ≈ {} KiB per pixel for {steps} steps",
                free as f64 / (1u64 << 30) as f64,
                BYTES_PER_STEP * steps as u64 / 1024
            ),
        ),
        None => (1024, format!("{what} unknown, default")),
    }
}

/// `MemAvailable`, capped by the cgroup's limit (pods): what this process may still allocate.
fn host_free_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = parse_meminfo_available(&meminfo)?;
    let cgroup = || -> Option<u64> {
        let max: u64 = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let current: u64 = std::fs::read_to_string("/sys/fs/cgroup/memory.current")
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(max.saturating_sub(current))
    };
    Some(cgroup().map_or(available, |c| c.min(available)))
}

fn parse_meminfo_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Free memory of the first visible GPU, from `nvidia-smi` (mounted into GPU containers by the
/// NVIDIA container toolkit); `None` when it is not there.
fn gpu_free_bytes() -> Option<u64> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.free", "--format=csv,noheader,nounits"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mib: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    Some(mib << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_are_powers_of_two_within_bounds() {
        // 8 GiB free, 64 steps: 2 GiB / 1 MiB = 2048.
        assert_eq!(batch_size_for(8 << 30, 64), 2048);
        // 3 GiB / 4 / (16 KiB · 100) = 491 → 256.
        assert_eq!(batch_size_for(3 << 30, 100), 256);
        assert_eq!(batch_size_for(1 << 20, 64), MIN_BATCH);
        assert_eq!(batch_size_for(1 << 50, 1), MAX_BATCH);
        assert_eq!(
            parse_meminfo_available("MemTotal: 100 kB\nMemAvailable:    2048 kB\n"),
            Some(2048 * 1024)
        );
        let (n, why) = default_batch_size(Device::Cpu, 64);
        assert!(
            (MIN_BATCH..=MAX_BATCH).contains(&n) && n.is_power_of_two(),
            "{n} {why}"
        );
    }
}
