//! One `predict` task, from its (already parsed) options to the written files: the contract, the
//! inputs, ONNX Runtime, the session, the batch size, the plan and the run, with the log lines that
//! say what was chosen and how it went. `bins/predict` parses arguments and calls [`PredictTask::run`].

use std::path::PathBuf;
use std::time::Instant;

use treesits_core::contract::ModelContract;
use treesits_core::memory::MemoryBudget;
use treesits_core::prediction::Uncertainty;

use crate::batch::{human_bytes, BatchSize, MemoryPlan};
use crate::input;
use crate::pipeline::{Destination, PredictPlan, PredictProgress, Summary};
use crate::runtime::{Device, ModelSession, Runtime, SessionConfig};
use crate::InferError;

/// Everything a run needs, as the command line gave it.
#[derive(Debug, Clone)]
pub struct PredictTask {
    pub model: PathBuf,
    /// `--input` values: chunk files, directories, patterns, `-`.
    pub inputs: Vec<String>,
    pub destination: Destination,
    pub device: Device,
    /// `--batch-size`; `None` for the default ([`crate::batch::DEFAULT_BATCH`]).
    pub batch_size: Option<usize>,
    /// `--memory`, bytes; `None` for [`MemoryBudget::choose`]'s default.
    pub memory: Option<u64>,
    /// ONNX Runtime intra-op threads.
    pub threads: usize,
    pub probabilities: bool,
    pub uncertainty: Option<Uncertainty>,
    /// A contract file that replaces the model's own.
    pub contract: Option<PathBuf>,
}

impl PredictTask {
    /// Checks everything that can be checked before work (contract, inputs, library, model, every
    /// input file's metadata against the contract), then predicts and logs a summary.
    pub fn run(&self) -> Result<Summary, InferError> {
        self.run_with(&())
    }

    /// [`PredictTask::run`], telling `progress` the pixels to predict and each chunk done.
    pub fn run_with(&self, progress: &dyn PredictProgress) -> Result<Summary, InferError> {
        let contract = self.contract.as_ref().map(|p| read_contract(p)).transpose()?;
        let sources = input::sources(&self.inputs)?;
        let runtime = Runtime::load()?;
        log::debug!("ONNX Runtime from {}", runtime.library().display());
        let config = SessionConfig {
            device: self.device,
            threads: self.threads,
            contract,
        };
        let mut session = ModelSession::open(&runtime, &self.model, &config)?;
        let batch = BatchSize::choose(session.shape().fixed_batch, self.batch_size);
        if let Some(r) = batch.ignored_request {
            log::warn!(
                "the model takes batches of exactly {} pixels: --batch-size {r} ignored",
                batch.pixels
            );
        }
        let c = session.contract();
        let memory = MemoryPlan::new(
            MemoryBudget::choose(self.memory),
            batch,
            c.bands.len(),
            c.inputs.doy.is_some(),
            c.inputs.mask.is_some(),
        );
        log::info!(
            "model {} ({} bands, {} classes) on {} with {} threads, batches of up to {batch}; {}",
            c.model_id,
            c.bands.len(),
            c.classes.len(),
            session.device(),
            self.threads,
            memory_words(&session, &memory),
        );
        log::info!(
            "{}",
            memory.describe(session.shape().fixed_length.or(c.sequence.max_length))
        );
        let plan = PredictPlan::new(
            sources,
            self.destination.clone(),
            memory.limits(),
            memory.input_share,
            self.probabilities,
            self.uncertainty,
            &session,
        )?;
        let started = Instant::now();
        let summary = plan.run(&mut session, progress)?;
        let seconds = started.elapsed().as_secs_f64();
        log::info!(
            "{} streams, {} chunks, {} pixels ({} without observations), {} observations in {seconds:.2} s ({:.3} s in the model, {:.0} pixels/s overall)",
            summary.streams,
            summary.chunks,
            summary.pixels,
            summary.empty_pixels,
            summary.observations,
            summary.inference_seconds,
            summary.pixels as f64 / seconds.max(1e-9)
        );
        Ok(summary)
    }
}

/// What one batch's input tensors hold, in words a user can check (the model's own activations
/// come on top and depend on its width).
fn memory_words(session: &ModelSession, memory: &MemoryPlan) -> String {
    let batch = &memory.batch;
    let c = session.contract();
    let steps = session.shape().fixed_length.or(c.sequence.max_length);
    let (doy, mask) = (c.inputs.doy.is_some(), c.inputs.mask.is_some());
    let padding = if session.shape().fixed_length.is_some() {
        "every series padded to the model's fixed length"
    } else if c.sequence.ignores_padding {
        "series padded to the longest of their batch (the contract says the model ignores padding)"
    } else {
        "one series length per batch, no padding"
    };
    match steps {
        Some(t) => format!(
            "{padding}; inputs of at most {} per batch ({} pixels × {t} steps × {} bands)",
            human_bytes(memory.limits().pixels_at(t) as u64 * t as u64 * memory.input_bytes_per_position),
            memory.limits().pixels_at(t),
            c.bands.len()
        ),
        None => format!(
            "{padding}; inputs of {} per batch and time step ({} pixels × {} bands)",
            human_bytes(batch.input_bytes(1, c.bands.len(), doy, mask)),
            batch.pixels,
            c.bands.len()
        ),
    }
}

/// A `--contract` file.
pub fn read_contract(path: &std::path::Path) -> Result<ModelContract, InferError> {
    let json = std::fs::read_to_string(path).map_err(|source| InferError::ContractRead {
        path: path.to_path_buf(),
        source,
    })?;
    ModelContract::from_json(&json).map_err(|source| InferError::ContractFile {
        path: path.to_path_buf(),
        source,
    })
}
