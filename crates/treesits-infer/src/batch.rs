//! The batch-size policy: how many pixels go into one model call.
//!
//! The size is a fixed number, never derived from the memory that happens to be free when a task
//! starts, so two runs of one task cut the same batches and write the same bytes. It is also not what
//! makes results independent of batching (that is the packer's one-length-per-batch rule, see
//! [`crate::pack`]); it only sets how much memory and how much parallelism one call gets.

/// Pixels per model call unless `--batch-size` says otherwise: large enough to keep ONNX Runtime's
/// kernels busy on CPUs and GPUs, small enough that the inputs of one batch stay a few MiB and the
/// activations of the reference models (an LSTM of a few hundred channels, a Transformer of 128 steps)
/// some hundred MiB.
pub const DEFAULT_BATCH: usize = 1024;

/// Where a batch size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOrigin {
    /// The model's input has a fixed batch axis.
    Model,
    /// `--batch-size`.
    Requested,
    /// [`DEFAULT_BATCH`].
    Default,
}

/// The batch size of a run and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSize {
    pub pixels: usize,
    pub origin: BatchOrigin,
    /// A `--batch-size` that a fixed-batch model overrode.
    pub ignored_request: Option<usize>,
}

impl BatchSize {
    /// The model's fixed batch size wins (it cannot run any other), then the requested one, then
    /// [`DEFAULT_BATCH`].
    pub fn choose(model_fixed: Option<usize>, requested: Option<usize>) -> BatchSize {
        match (model_fixed, requested) {
            (Some(fixed), r) => BatchSize {
                pixels: fixed,
                origin: BatchOrigin::Model,
                ignored_request: r.filter(|&r| r != fixed),
            },
            (None, Some(r)) => BatchSize {
                pixels: r.max(1),
                origin: BatchOrigin::Requested,
                ignored_request: None,
            },
            (None, None) => BatchSize {
                pixels: DEFAULT_BATCH,
                origin: BatchOrigin::Default,
                ignored_request: None,
            },
        }
    }

    /// Bytes of one full batch's input tensors: `values` (float32 × bands) plus the day of year
    /// (int64) and the mask (bool) when the model takes them, for series of up to `steps`.
    pub fn input_bytes(&self, steps: usize, bands: usize, doy: bool, mask: bool) -> u64 {
        let per_step = 4 * bands as u64 + if doy { 8 } else { 0 } + u64::from(mask);
        self.pixels as u64 * steps as u64 * per_step
    }
}

impl std::fmt::Display for BatchSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.origin {
            BatchOrigin::Model => write!(f, "{} pixels (fixed by the model)", self.pixels),
            BatchOrigin::Requested => write!(f, "{} pixels (--batch-size)", self.pixels),
            BatchOrigin::Default => {
                write!(f, "{} pixels (the default; --batch-size changes it)", self.pixels)
            }
        }
    }
}

pub use treesits_core::memory::human_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_size_is_fixed_requested_or_the_model_s_own() {
        let d = BatchSize::choose(None, None);
        assert_eq!((d.pixels, d.origin), (DEFAULT_BATCH, BatchOrigin::Default));
        // The same answer on every call: nothing depends on the machine's state.
        assert_eq!(d, BatchSize::choose(None, None));
        let r = BatchSize::choose(None, Some(7));
        assert_eq!((r.pixels, r.origin), (7, BatchOrigin::Requested));
        let m = BatchSize::choose(Some(16), Some(7));
        assert_eq!(
            (m.pixels, m.origin, m.ignored_request),
            (16, BatchOrigin::Model, Some(7))
        );
        assert_eq!(BatchSize::choose(Some(16), Some(16)).ignored_request, None);
        assert_eq!(
            d.to_string(),
            "1024 pixels (the default; --batch-size changes it)"
        );
    }

    #[test]
    fn input_bytes_are_what_the_tensors_hold() {
        let d = BatchSize::choose(None, None);
        // 1024 × 64 × 10 float32 = 2.5 MiB.
        assert_eq!(d.input_bytes(64, 10, false, false), 1024 * 64 * 40);
        assert_eq!(human_bytes(d.input_bytes(64, 10, false, false)), "2.5 MiB");
        // + int64 day of year + bool mask per step.
        assert_eq!(d.input_bytes(128, 10, true, true), 1024 * 128 * 49);
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
