//! Inference for treesits: time-series chunks in, prediction chunks out, through an ONNX model that
//! carries its own contract.
//!
//! - [`input`]: chunk files, directories of them, or stdin, read batch by batch;
//! - [`pack`]: a chunk's observations → `[B, T, bands]` (+ day of year, mask) tensors exactly as the
//!   contract says, bucketed by series length (one length per batch unless the model ignores padding);
//! - [`runtime`]: the ONNX Runtime library, CPU or CUDA sessions, the model checked against its contract;
//! - [`classify`]: model outputs → class, probability, per-class probabilities, uncertainty;
//! - [`pipeline`]: reading and packing on their own thread, overlapped with inference; atomic outputs;
//! - [`batch`]: the batch-size policy (a fixed default, never the memory that happens to be free).
//!
//! No GDAL here: `predict`'s container holds ONNX Runtime (+ CUDA) only.

pub mod batch;
pub mod classify;
pub mod input;
pub mod pack;
pub mod pipeline;
pub mod runtime;

/// What went wrong, as one line naming the input and what to do.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// A chunk that cannot be read or does not fit the model.
    #[error("{0}")]
    Input(String),
    /// A model that cannot be opened or does not match its contract.
    #[error("{0}")]
    Model(String),
    /// The requested device cannot be used.
    #[error("{0}")]
    Device(String),
    /// ONNX Runtime itself (library, session run).
    #[error("{0}")]
    Runtime(String),
    /// Writing the predictions.
    #[error("{0}")]
    Output(String),
    /// Writing to stdout failed (kept as an I/O error so a closed pipe can be told apart).
    #[error("writing predictions to stdout")]
    Stdout(#[source] std::io::Error),
}
