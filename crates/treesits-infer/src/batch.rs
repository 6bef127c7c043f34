//! The batch-size policy: how many pixels go into one model call, and how the memory budget
//! (`--memory`) is split between the input being packed and the model.
//!
//! A batch holds at most [`DEFAULT_BATCH`] (or `--batch-size`) pixels and at most
//! [`MemoryPlan::positions`] tensor positions (pixels × series length), so batches of long series hold
//! fewer pixels and memory does not grow with the number of dates. Both limits come from fixed
//! numbers and the budget (from `--memory` or the container's limit), never from the memory that
//! happens to be free, so two runs of one task cut the same batches. Neither is what makes results
//! independent of batching (that is the packer's one-length-per-batch rule, see [`crate::pack`]);
//! they only set how much memory and how much parallelism one call gets.

use treesits_core::memory::MemoryBudget;

use crate::pack::BatchLimits;

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

/// Packed model batches queued between the reading thread and the model. With the one being packed
/// and the one running, `BATCHES_IN_FLIGHT + 2` batches hold tensors at any time.
pub const BATCHES_IN_FLIGHT: usize = 2;

/// The estimate of what a model's activations take per tensor position (one pixel × one step) while
/// it runs, bytes: [`ACTIVATION_BYTES_PER_POSITION`] + [`ACTIVATION_BYTES_PER_STEP`] × `T` (attention
/// holds `T × T` scores per head, so its share per position grows with the series length). Measured
/// with the fixture models as the growth of predict's peak RSS per position between batch sizes at a
/// fixed series length (docs/performance.md, "predict in bounded memory"): the LSTM fixture (64 hidden
/// × 2 layers) needs about 3.4 KB per position at 64 steps, the Transformer fixture (width 64, 4
/// heads) about 27 KB at 128 steps; the estimate covers both (16.4 KB at 64 steps, 28.7 KB at 128).
/// A much wider model needs a larger `--memory`.
pub const ACTIVATION_BYTES_PER_POSITION: u64 = 4 << 10;
/// See [`ACTIVATION_BYTES_PER_POSITION`].
pub const ACTIVATION_BYTES_PER_STEP: u64 = 192;

/// How the budget is spent: half on the decoded input record batch being packed (and the one being
/// read after it), half on the model's side: the packed batches in flight and the running batch's
/// activations, which sets the positions one batch may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    pub budget: MemoryBudget,
    /// Bytes for the decoded input record batches (what cube-extract wrote decides their size).
    pub input_share: u64,
    /// Bytes for the model batches: inputs of every batch in flight + the activations of one.
    pub model_share: u64,
    /// Input tensor bytes of one position (float32 × bands, + int64 day of year, + bool mask).
    pub input_bytes_per_position: u64,
    pub batch: BatchSize,
}

impl MemoryPlan {
    pub fn new(budget: MemoryBudget, batch: BatchSize, bands: usize, doy: bool, mask: bool) -> MemoryPlan {
        let input_share = budget.bytes / 2;
        MemoryPlan {
            budget,
            input_share,
            model_share: budget.bytes - input_share,
            input_bytes_per_position: 4 * bands as u64 + if doy { 8 } else { 0 } + u64::from(mask),
            batch,
        }
    }

    /// The limits every model batch is cut within: for a model with a fixed batch axis only its
    /// size (it always runs that many pixels, so smaller batches would save nothing).
    pub fn limits(&self) -> BatchLimits {
        match self.batch.origin {
            BatchOrigin::Model => BatchLimits::pixels(self.batch.pixels),
            _ => BatchLimits {
                pixels: self.batch.pixels,
                bytes: self.model_share,
                per_position: self.input_bytes_per_position * (BATCHES_IN_FLIGHT as u64 + 2)
                    + ACTIVATION_BYTES_PER_POSITION,
                per_step: ACTIVATION_BYTES_PER_STEP,
            },
        }
    }

    /// The split in words a user can check; `steps`: the longest series a batch can hold (the
    /// model's fixed length or the contract's `max_length`), if known.
    pub fn describe(&self, steps: Option<usize>) -> String {
        let l = self.limits();
        let model = if self.batch.origin == BatchOrigin::Model {
            format!(
                "{} for the model's batches ({BATCHES_IN_FLIGHT} packed batches in flight + the one being packed + the one running); the model takes exactly {} pixels per batch, so their positions are not capped",
                human_bytes(self.model_share),
                self.batch.pixels
            )
        } else {
            let at = match steps {
                Some(t) => format!(
                    "{} positions, so {} pixels per batch, at {t} steps",
                    l.positions_at(t),
                    l.pixels_at(t)
                ),
                None => format!(
                    "{} positions, so {} pixels per batch, at 64 steps",
                    l.positions_at(64),
                    l.pixels_at(64)
                ),
            };
            format!(
                "{} for the model's batches ({BATCHES_IN_FLIGHT} packed batches in flight + the one being packed + the one running), which caps one batch's positions (pixels × steps T) at that share / ({} B of inputs × {} batches + an estimated {} + {} B × T of activations per position): {at}, at most {} pixels (--batch-size)",
                human_bytes(self.model_share),
                self.input_bytes_per_position,
                BATCHES_IN_FLIGHT + 2,
                human_bytes(ACTIVATION_BYTES_PER_POSITION),
                ACTIVATION_BYTES_PER_STEP,
                self.batch.pixels
            )
        };
        format!(
            "memory budget {}: {} for the input record batch being packed (+ the one being read), {model}",
            self.budget,
            human_bytes(self.input_share)
        )
    }
}

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
    fn the_budget_caps_positions_and_a_fixed_batch_model_keeps_its_size() {
        use treesits_core::memory::{BudgetOrigin, MemoryBudget};
        let budget = |bytes| MemoryBudget {
            bytes,
            origin: BudgetOrigin::Requested,
        };
        let d = BatchSize::choose(None, None);
        // 10 bands, day of year and mask: 49 B per position, four batches of inputs + activations.
        let p = MemoryPlan::new(budget(1 << 30), d, 10, true, true);
        assert_eq!((p.input_share, p.model_share), (512 << 20, 512 << 20));
        let per = |t: u64| 4 * 49 + ACTIVATION_BYTES_PER_POSITION + ACTIVATION_BYTES_PER_STEP * t;
        let l = p.limits();
        assert_eq!(l.positions_at(128) as u64, (512 << 20) / per(128));
        assert_eq!(l.pixels_at(128) as u64, (512 << 20) / per(128) / 128);
        assert_eq!(l.pixels_at(1), DEFAULT_BATCH);
        // Twice the budget: twice the positions; long series get fewer pixels per batch.
        let big = MemoryPlan::new(budget(2 << 30), d, 10, true, true).limits();
        assert_eq!(big.positions_at(64) as u64, (1 << 30) / per(64));
        let small = MemoryPlan::new(budget(64 << 20), d, 10, true, true);
        assert!(small.limits().pixels_at(128) < l.pixels_at(128));
        // A tiny budget still runs one pixel per batch.
        assert_eq!(
            MemoryPlan::new(budget(1), d, 10, true, true)
                .limits()
                .pixels_at(500),
            1
        );
        let words = small.describe(Some(128));
        assert!(
            words.starts_with("memory budget 64.0 MiB (--memory): 32.0 MiB for the input record batch"),
            "{words}"
        );
        let at = small.limits();
        assert!(
            words.contains(&format!(
                "{} positions, so {} pixels per batch, at 128 steps",
                at.positions_at(128),
                at.pixels_at(128)
            )),
            "{words}"
        );
        // A fixed batch axis: the model's size, no cap.
        let fixed = MemoryPlan::new(
            budget(64 << 20),
            BatchSize::choose(Some(16), None),
            10,
            false,
            false,
        );
        assert_eq!(fixed.limits(), BatchLimits::pixels(16));
        assert!(fixed
            .describe(Some(5))
            .contains("the model takes exactly 16 pixels per batch, so their positions are not capped"));
        assert_eq!(treesits_core::chunk::decoded_bytes(10, 100, 10), 120 + 2500);
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
