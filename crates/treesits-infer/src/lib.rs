//! Inference for treesits: time-series chunks in, prediction chunks out, through an ONNX model that
//! carries its own contract.
//!
//! - [`task`]: one `predict` run, from its options to the written files (what the binary calls);
//! - [`input`]: chunk files, directories of them, patterns, or stdin, read batch by batch;
//! - [`pack`]: a chunk's observations → `[B, T, bands]` (+ day of year, mask) tensors exactly as the
//!   contract says, bucketed by series length (one length per batch unless the model ignores padding);
//! - [`runtime`]: the ONNX Runtime library, CPU or CUDA sessions, the model checked against its contract;
//! - [`classify`]: model outputs → class, probability, per-class probabilities, uncertainty;
//! - [`pipeline`]: reading (one record batch ahead) and packing (one model batch at a time) on their
//!   own threads, overlapped with inference; atomic outputs;
//! - [`batch`]: the batch-size policy and the memory budget's split (`--memory`: a batch's pixels ×
//!   steps capped; never the memory that happens to be free).
//!
//! No GDAL here: `predict`'s container holds ONNX Runtime (+ CUDA) only.

use std::path::PathBuf;

use treesits_core::chunk::ChunkError;
use treesits_core::contract::ContractError;
use treesits_core::inputs::InputError;

pub mod batch;
pub mod classify;
pub mod input;
pub mod pack;
pub mod pipeline;
pub mod runtime;
pub mod task;

pub use input::ChunkSource;
pub use pack::PackError;
pub use runtime::MismatchError;

/// What went wrong: each message is one line naming the input (a flag's value, a file, stdin) and
/// what to do; causes from other crates stay reachable through `source()`.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    // ---- inputs
    #[error("--input {0}")]
    Inputs(InputError),
    #[error("{}", path.display())]
    OpenChunk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{input}")]
    ChunkMetadata {
        input: ChunkSource,
        #[source]
        source: ChunkError,
    },
    #[error("{input}")]
    ChunkColumns {
        input: ChunkSource,
        #[source]
        source: ChunkError,
    },
    #[error("{input}: a batch has {got} band columns but the metadata lists {listed}")]
    BandColumns {
        input: ChunkSource,
        got: usize,
        listed: usize,
    },
    /// A chunk that does not fit the model (bands, sequence length).
    #[error("{input}")]
    Unfit {
        input: ChunkSource,
        #[source]
        source: PackError,
    },
    #[error("--out - writes one stream, but {input} differs from {first} in more than its window (tile, bands, sensors, dates or screen): predict them separately or use --out-dir")]
    StdoutMixed { input: ChunkSource, first: ChunkSource },

    // ---- ONNX Runtime and the model
    #[error("ORT_DYLIB_PATH={} is not a file: point it at libonnxruntime.so (for example the onnxruntime wheel's onnxruntime/capi/libonnxruntime.so.*)", path.display())]
    LibraryPath { path: PathBuf },
    #[error("the ONNX Runtime library ({name}) was not found: set ORT_DYLIB_PATH to its path (pip's onnxruntime wheel ships it as onnxruntime/capi/{name}.*; in this repository `source scripts/env.sh` sets it)")]
    LibraryNotFound { name: String },
    #[error("cannot load ONNX Runtime from {}: {cause}: set ORT_DYLIB_PATH to a libonnxruntime.so of version 1.17 or newer", path.display())]
    LibraryLoad {
        path: PathBuf,
        cause: ort::LoadDynamicError,
    },
    #[error("starting ONNX Runtime")]
    Environment {
        #[source]
        source: ort::Error,
    },
    #[error("--contract {}", path.display())]
    ContractRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--contract {}", path.display())]
    ContractFile {
        path: PathBuf,
        #[source]
        source: ContractError,
    },
    #[error("{}: no such model file", path.display())]
    NoModel { path: PathBuf },
    #[error("{}: reading the model file: {source}", path.display())]
    ReadModel { path: PathBuf, source: std::io::Error },
    #[error("{}: ONNX Runtime cannot load the model: {cause}", path.display())]
    LoadModel { path: PathBuf, cause: ort::Error },
    #[error("{}: reading the model's metadata: {cause}", path.display())]
    ModelMetadata { path: PathBuf, cause: ort::Error },
    #[error("{}: the model carries no contract ('{}' in its metadata): supply one with --contract FILE", path.display(), treesits_core::contract::METADATA_KEY)]
    NoContract { path: PathBuf },
    #[error("{}", path.display())]
    ModelContract {
        path: PathBuf,
        #[source]
        source: ContractError,
    },
    /// The model's tensors do not match its contract.
    #[error("{}", path.display())]
    Mismatch {
        path: PathBuf,
        #[source]
        source: MismatchError,
    },
    #[error("--device cuda: the ONNX Runtime library {} has no CUDA execution provider (a CPU build): install onnxruntime-gpu and point ORT_DYLIB_PATH at its libonnxruntime.so, or use --device cpu", library.display())]
    NoCuda { library: PathBuf },
    #[error("--device cuda: CUDA could not be started: {cause}: check the GPU (nvidia-smi) and that the CUDA and cuDNN libraries match the onnxruntime-gpu build, or use --device cpu")]
    CudaStart { cause: ort::Error },
    #[error("a batch of {pixels} pixels for a model with a fixed batch size of {fixed}")]
    BatchTooLarge { pixels: usize, fixed: usize },
    #[error("running the model")]
    Run {
        #[source]
        source: ort::Error,
    },
    #[error("the model returned no '{name}'")]
    NoOutput { name: String },
    #[error("output '{name}' has shape {shape:?} for a batch of {pixels}; the contract promises [{pixels}, {classes}]")]
    OutputShape {
        name: String,
        shape: Vec<i64>,
        pixels: usize,
        classes: usize,
    },
    /// An error while predicting one input stream.
    #[error("{input}")]
    InStream {
        input: ChunkSource,
        #[source]
        source: Box<InferError>,
    },

    // ---- outputs
    #[error("--out-dir {}", dir.display())]
    OutDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: writing predictions", path.display())]
    WritePredictions {
        path: PathBuf,
        #[source]
        source: ChunkError,
    },
    #[error("starting the reader thread")]
    ReaderThread {
        #[source]
        source: std::io::Error,
    },
    #[error("the reader stopped early")]
    ReaderStopped,
    /// Writing to stdout failed (kept as an I/O error so a closed pipe can be told apart).
    #[error("writing predictions to stdout")]
    Stdout(#[source] std::io::Error),
}
