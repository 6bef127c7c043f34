//! ONNX Runtime: finding and loading the shared library, choosing the device, opening a model and
//! checking it against its contract, running batches.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`), so one `predict` binary runs with the
//! CPU build of ONNX Runtime or with the GPU build (`onnxruntime-gpu`), whichever `ORT_DYLIB_PATH`
//! points at.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, TensorRef, ValueType};
use treesits_core::contract::{self, ModelContract};

use crate::pack::Batch;
use crate::InferError;

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// CUDA or an error: never a silent fallback.
    Cuda,
    /// CUDA when the library has it and it starts, else CPU (logged).
    Auto,
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Device::Cpu => "CPU",
            Device::Cuda => "CUDA",
            Device::Auto => "auto",
        })
    }
}

/// A device name that is none of `cpu`, `cuda`, `auto`.
#[derive(Debug, thiserror::Error)]
#[error("unknown device '{0}' (use cpu, cuda or auto)")]
pub struct UnknownDevice(pub String);

impl std::str::FromStr for Device {
    type Err = UnknownDevice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            "auto" => Ok(Device::Auto),
            _ => Err(UnknownDevice(s.to_string())),
        }
    }
}

/// How a model's tensors disagree with its contract.
#[derive(Debug, thiserror::Error)]
pub enum MismatchError {
    #[error("the model has an input '{name}' that its contract does not name (contract inputs: {}): fix the contract", named.join(", "))]
    UnnamedInput { name: String, named: Vec<String> },
    #[error("the contract's '{key}' is '{name}' but the model has no such input (its inputs: {}): fix the contract", inputs.join(", "))]
    MissingInput {
        key: &'static str,
        name: String,
        inputs: Vec<String>,
    },
    #[error("input '{name}' is not a tensor")]
    NotATensor { name: String },
    #[error("input '{name}' is {got} of rank {got_rank} but the contract's '{key}' needs {want} of rank {want_rank}")]
    InputType {
        name: String,
        got: TensorElementType,
        got_rank: usize,
        key: &'static str,
        want: TensorElementType,
        want_rank: usize,
    },
    #[error("input '{name}' takes {got} bands but the contract lists {} ({})", bands.len(), bands.join(","))]
    Bands {
        name: String,
        got: i64,
        bands: Vec<String>,
    },
    #[error("the contract's 'output.name' is '{name}' but the model's outputs are {}: fix the contract", outputs.join(", "))]
    MissingOutput { name: String, outputs: Vec<String> },
    #[error("output '{name}' has {got} classes but the contract's class table has {want}")]
    OutputClasses { name: String, got: i64, want: usize },
    #[error("output '{name}' must be float32 [batch, classes] as the contract promises")]
    OutputKind { name: String },
}

/// The library file name ONNX Runtime ships under on this platform.
fn library_name() -> String {
    format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Finds the ONNX Runtime library: `ORT_DYLIB_PATH`, else next to the executable (and `../lib`),
/// else the directories of `LD_LIBRARY_PATH` and the usual system and `/opt/onnxruntime` places.
pub fn locate_library() -> Result<PathBuf, InferError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(InferError::LibraryPath { path: p });
        }
        return Ok(p);
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("../lib"));
        dirs.insert(0, exe_dir);
    }
    if let Some(ld) = std::env::var_os("LD_LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&ld));
    }
    dirs.extend(
        [
            "/opt/onnxruntime/lib",
            "/usr/local/lib",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
        ]
        .map(PathBuf::from),
    );
    let name = library_name();
    for dir in dirs {
        let exact = dir.join(&name);
        if exact.is_file() {
            return Ok(exact);
        }
        // Wheels and tarballs ship libonnxruntime.so.1.31.1 (+ symlinks): take the newest.
        let mut versioned: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{name}.")))
            })
            .collect();
        versioned.sort();
        if let Some(p) = versioned.pop() {
            return Ok(p);
        }
    }
    Err(InferError::LibraryNotFound { name })
}

/// A loaded ONNX Runtime.
pub struct Runtime {
    env: Environment,
    library: PathBuf,
}

impl Runtime {
    /// Loads the library from [`locate_library`] (once per process).
    pub fn load() -> Result<Runtime, InferError> {
        let library = locate_library()?;
        let builder = ort::init_from(&library).map_err(|cause| InferError::LibraryLoad {
            path: library.clone(),
            cause,
        })?;
        let env = builder
            .with_name("treesits-predict")
            .with_telemetry(false)
            .build()
            .map_err(|source| InferError::Environment { source })?;
        Ok(Runtime { env, library })
    }

    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Whether the library was built with the CUDA execution provider (not whether a GPU works).
    pub fn has_cuda(&self) -> bool {
        ep::CUDA::is_available().unwrap_or(false)
    }
}

/// Options for opening a model.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub device: Device,
    /// Intra-op threads (ONNX Runtime's own pool; inter-op runs sequentially).
    pub threads: usize,
    /// A contract that replaces the model's own (or supplies one it lacks).
    pub contract: Option<ModelContract>,
}

/// What a model's tensors look like, once checked against its contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelShape {
    /// Fixed sequence length of the `values` input, if the model has one.
    pub fixed_length: Option<usize>,
    /// Fixed batch size, if the model has one.
    pub fixed_batch: Option<usize>,
}

/// An opened model with its contract, ready to run batches.
pub struct ModelSession {
    session: Session,
    contract: ModelContract,
    shape: ModelShape,
    device: Device,
    /// SHA-256 (hex) of the model file, recorded in every prediction chunk.
    model_sha256: String,
    /// The model's file name, without its directory.
    model_file: String,
}

impl ModelSession {
    /// Opens `model` on the configured device, reads (or takes) its contract and checks the model's
    /// inputs and output against it.
    pub fn open(rt: &Runtime, model: &Path, config: &SessionConfig) -> Result<ModelSession, InferError> {
        if !model.is_file() {
            return Err(InferError::NoModel {
                path: model.to_path_buf(),
            });
        }
        let model_sha256 = std::fs::File::open(model)
            .and_then(treesits_core::inventory::sha256_reader)
            .map_err(|source| InferError::ReadModel {
                path: model.to_path_buf(),
                source,
            })?;
        let (session, device) = match config.device {
            Device::Cpu => (cpu_session(rt, model, config.threads)?, Device::Cpu),
            Device::Cuda => {
                if !rt.has_cuda() {
                    return Err(InferError::NoCuda {
                        library: rt.library.clone(),
                    });
                }
                let s = cuda_session(rt, model, config.threads)
                    .map_err(|cause| InferError::CudaStart { cause })?;
                (s, Device::Cuda)
            }
            Device::Auto if !rt.has_cuda() => {
                log::info!(
                    "device auto: CPU (the ONNX Runtime library {} has no CUDA execution provider)",
                    rt.library.display()
                );
                (cpu_session(rt, model, config.threads)?, Device::Cpu)
            }
            Device::Auto => match cuda_session(rt, model, config.threads) {
                Ok(s) => {
                    log::info!("device auto: CUDA");
                    (s, Device::Cuda)
                }
                Err(e) => {
                    log::info!("device auto: CPU (CUDA could not be started: {e})");
                    (cpu_session(rt, model, config.threads)?, Device::Cpu)
                }
            },
        };
        let contract = match &config.contract {
            Some(c) => {
                if model_contract_json(&session, model)?.is_some() {
                    log::info!(
                        "{}: using the contract given with --contract instead of the model's own",
                        model.display()
                    );
                }
                c.clone()
            }
            None => {
                let json = model_contract_json(&session, model)?.ok_or_else(|| InferError::NoContract {
                    path: model.to_path_buf(),
                })?;
                ModelContract::from_json(&json).map_err(|source| InferError::ModelContract {
                    path: model.to_path_buf(),
                    source,
                })?
            }
        };
        let shape = check_model(&session, &contract).map_err(|source| InferError::Mismatch {
            path: model.to_path_buf(),
            source,
        })?;
        Ok(ModelSession {
            session,
            contract,
            shape,
            device,
            model_sha256,
            model_file: model
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        })
    }

    /// The file name (no directory) of the model the session was opened from.
    pub fn model_file(&self) -> &str {
        &self.model_file
    }

    /// SHA-256 (lower-case hex) of the model file the session was opened from.
    pub fn model_sha256(&self) -> &str {
        &self.model_sha256
    }

    pub fn contract(&self) -> &ModelContract {
        &self.contract
    }

    pub fn shape(&self) -> &ModelShape {
        &self.shape
    }

    /// The device the session runs on (never `Auto`).
    pub fn device(&self) -> Device {
        self.device
    }

    /// Runs one batch; returns `pixels × classes` outputs as the model gives them (probabilities or
    /// logits, see the contract).
    pub fn run(&mut self, batch: &Batch) -> Result<Vec<f32>, InferError> {
        match self.shape.fixed_batch {
            Some(fixed) if batch.pixels.len() < fixed => {
                // A model exported with a fixed batch size: fill up with padding-only rows and drop
                // their outputs.
                let k = self.contract.classes.len();
                let n = batch.pixels.len();
                let mut full = batch.clone();
                full.pixels.resize(fixed, 0);
                let steps = fixed * batch.length;
                full.values
                    .resize(steps * batch.bands, self.contract.sequence.pad_value);
                if let Some(d) = &mut full.doy {
                    d.resize(steps, 0);
                }
                if let Some(m) = &mut full.mask {
                    m.resize(steps, false);
                }
                let mut out = self.run_exact(&full)?;
                out.truncate(n * k);
                Ok(out)
            }
            Some(fixed) if batch.pixels.len() > fixed => Err(InferError::BatchTooLarge {
                pixels: batch.pixels.len(),
                fixed,
            }),
            _ => self.run_exact(batch),
        }
    }

    fn run_exact(&mut self, batch: &Batch) -> Result<Vec<f32>, InferError> {
        let n = batch.pixels.len();
        let err = |source: ort::Error| InferError::Run { source };
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(3);
        let c = &self.contract;
        inputs.push((
            c.inputs.values.as_str().into(),
            TensorRef::from_array_view(([n, batch.length, batch.bands], batch.values.as_slice()))
                .map_err(err)?
                .into(),
        ));
        if let (Some(name), Some(doy)) = (&c.inputs.doy, &batch.doy) {
            inputs.push((
                name.as_str().into(),
                TensorRef::from_array_view(([n, batch.length], doy.as_slice()))
                    .map_err(err)?
                    .into(),
            ));
        }
        if let (Some(name), Some(mask)) = (&c.inputs.mask, &batch.mask) {
            inputs.push((
                name.as_str().into(),
                TensorRef::from_array_view(([n, batch.length], mask.as_slice()))
                    .map_err(err)?
                    .into(),
            ));
        }
        let outputs = self.session.run(inputs).map_err(err)?;
        let out = outputs.get(&c.output.name).ok_or_else(|| InferError::NoOutput {
            name: c.output.name.clone(),
        })?;
        let (shape, data) = out.try_extract_tensor::<f32>().map_err(err)?;
        let k = c.classes.len();
        if shape.len() != 2 || shape[0] != n as i64 || shape[1] != k as i64 {
            return Err(InferError::OutputShape {
                name: c.output.name.clone(),
                shape: shape.to_vec(),
                pixels: n,
                classes: k,
            });
        }
        Ok(data.to_vec())
    }
}

fn cpu_session(rt: &Runtime, model: &Path, threads: usize) -> Result<Session, InferError> {
    let open = || -> Result<Session, ort::Error> {
        let mut builder = Session::builder(&rt.env)?
            .with_intra_threads(threads)?
            .with_inter_threads(1)?;
        builder.commit_from_file(model)
    };
    open().map_err(|cause| InferError::LoadModel {
        path: model.to_path_buf(),
        cause,
    })
}

/// A session with the CUDA execution provider registered, or the reason it could not be.
fn cuda_session(rt: &Runtime, model: &Path, threads: usize) -> Result<Session, ort::Error> {
    let cuda = ep::CUDA::default().build().error_on_failure();
    let mut builder = Session::builder(&rt.env)?
        .with_intra_threads(threads)?
        .with_execution_providers([cuda])?;
    builder.commit_from_file(model)
}

fn model_contract_json(session: &Session, model: &Path) -> Result<Option<String>, InferError> {
    let meta = session.metadata().map_err(|cause| InferError::ModelMetadata {
        path: model.to_path_buf(),
        cause,
    })?;
    Ok(meta.custom(contract::METADATA_KEY))
}

/// A tensor's element type and dimensions (−1 where dynamic).
fn tensor_of(t: &ValueType) -> Option<(TensorElementType, Vec<i64>)> {
    match t {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.to_vec())),
        _ => None,
    }
}

/// Checks the model's tensors against the contract: every input is one the contract names (so
/// predict can feed it), with the promised type and rank; the output likewise; fixed dimensions agree.
fn check_model(session: &Session, c: &ModelContract) -> Result<ModelShape, MismatchError> {
    let inputs: Vec<(&str, &ValueType)> = session.inputs().iter().map(|o| (o.name(), o.dtype())).collect();
    let names = || inputs.iter().map(|i| i.0.to_string()).collect::<Vec<_>>();
    let expected: Vec<(&str, &str, TensorElementType, usize)> = [
        Some((
            "inputs.values",
            c.inputs.values.as_str(),
            TensorElementType::Float32,
            3,
        )),
        c.inputs
            .doy
            .as_deref()
            .map(|n| ("inputs.doy", n, TensorElementType::Int64, 2)),
        c.inputs
            .mask
            .as_deref()
            .map(|n| ("inputs.mask", n, TensorElementType::Bool, 2)),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (name, _) in &inputs {
        if !expected.iter().any(|e| e.1 == *name) {
            return Err(MismatchError::UnnamedInput {
                name: name.to_string(),
                named: expected.iter().map(|e| e.1.to_string()).collect(),
            });
        }
    }
    let mut dims_of_values = Vec::new();
    for (key, name, ty, rank) in &expected {
        let Some((_, t)) = inputs.iter().find(|i| i.0 == *name) else {
            return Err(MismatchError::MissingInput {
                key,
                name: name.to_string(),
                inputs: names(),
            });
        };
        let Some((got_ty, dims)) = tensor_of(t) else {
            return Err(MismatchError::NotATensor {
                name: name.to_string(),
            });
        };
        if got_ty != *ty || dims.len() != *rank {
            return Err(MismatchError::InputType {
                name: name.to_string(),
                got: got_ty,
                got_rank: dims.len(),
                key,
                want: *ty,
                want_rank: *rank,
            });
        }
        if *key == "inputs.values" {
            dims_of_values = dims;
        }
    }
    let bands = c.bands.len() as i64;
    if dims_of_values[2] >= 0 && dims_of_values[2] != bands {
        return Err(MismatchError::Bands {
            name: c.inputs.values.clone(),
            got: dims_of_values[2],
            bands: c.bands.clone(),
        });
    }
    let outputs: Vec<(&str, &ValueType)> = session.outputs().iter().map(|o| (o.name(), o.dtype())).collect();
    let Some((_, out)) = outputs.iter().find(|o| o.0 == c.output.name) else {
        return Err(MismatchError::MissingOutput {
            name: c.output.name.clone(),
            outputs: outputs.iter().map(|o| o.0.to_string()).collect(),
        });
    };
    match tensor_of(out) {
        Some((TensorElementType::Float32, dims)) if dims.len() == 2 => {
            let k = c.classes.len() as i64;
            if dims[1] >= 0 && dims[1] != k {
                return Err(MismatchError::OutputClasses {
                    name: c.output.name.clone(),
                    got: dims[1],
                    want: c.classes.len(),
                });
            }
        }
        _ => {
            return Err(MismatchError::OutputKind {
                name: c.output.name.clone(),
            })
        }
    }
    let fixed = |d: i64| (d > 0).then_some(d as usize);
    Ok(ModelShape {
        fixed_length: fixed(dims_of_values[1]),
        fixed_batch: fixed(dims_of_values[0]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One ONNX Runtime per test process (the library is loaded once).
    fn rt() -> &'static Runtime {
        static RT: OnceLock<Runtime> = OnceLock::new();
        RT.get_or_init(|| {
            Runtime::load().unwrap_or_else(|e| panic!("{e} (run the tests after `source scripts/env.sh`)"))
        })
    }

    fn model(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/testdata")
            .join(name)
    }

    fn cpu() -> SessionConfig {
        SessionConfig {
            device: Device::Cpu,
            threads: 1,
            contract: None,
        }
    }

    fn open_err(name: &str, config: &SessionConfig) -> String {
        match ModelSession::open(rt(), &model(name), config) {
            Ok(_) => panic!("{name} opened"),
            Err(e) => chain(&e),
        }
    }

    /// The message as `predict` prints it: the error and its sources, joined by ": ".
    fn chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut parts = vec![e.to_string()];
        let mut cause = e.source();
        while let Some(c) = cause {
            parts.push(c.to_string());
            cause = c.source();
        }
        parts.join(": ")
    }

    /// The test models' weight formula (models/testdata/make_test_models.py).
    fn weight(seed: usize, i: usize, j: usize, scale: f64) -> f64 {
        (((i * 31 + j * 17 + seed * 7) % 13) as f64 - 6.0) * scale
    }

    #[test]
    fn a_batch_runs_through_the_model_as_its_formula_says() {
        let mut s = ModelSession::open(rt(), &model("linear_left.onnx"), &cpu()).unwrap();
        assert_eq!(s.device(), Device::Cpu);
        assert_eq!(s.contract().model_id, "test-linear-left");
        assert_eq!(
            s.shape(),
            &ModelShape {
                fixed_length: None,
                fixed_batch: None
            }
        );
        // Two pixels, three steps, five bands: x[p][t][b] = p + 0.1·t − 0.01·b.
        let x = |p: usize, t: usize, b: usize| p as f64 + 0.1 * t as f64 - 0.01 * b as f64;
        let mut values = Vec::new();
        for p in 0..2 {
            for t in 0..3 {
                for b in 0..5 {
                    values.push(x(p, t, b) as f32);
                }
            }
        }
        let batch = Batch {
            pixels: vec![0, 1],
            length: 3,
            bands: 5,
            values,
            doy: None,
            mask: None,
            observations: 6,
        };
        let out = s.run(&batch).unwrap();
        assert_eq!(out.len(), 8);
        for p in 0..2 {
            for k in 0..4 {
                let mut want = weight(3, 0, k, 0.1);
                for b in 0..5 {
                    want += x(p, 2, b) * weight(1, b, k, 0.05);
                    want += (0..3).map(|t| x(p, t, b)).sum::<f64>() * weight(2, b, k, 0.01);
                }
                assert!(
                    (f64::from(out[p * 4 + k]) - want).abs() < 1e-5,
                    "{p} {k}: {} vs {want}",
                    out[p * 4 + k]
                );
            }
        }
    }

    #[test]
    fn models_that_do_not_match_their_contract_are_refused() {
        let e = open_err("missing_tensor.onnx", &cpu());
        assert!(
            e.contains("the model has an input 'x' that its contract does not name"),
            "{e}"
        );
        let e = open_err("wrong_rank.onnx", &cpu());
        assert!(
            e.contains("input 'x' is f32 of rank 2 but the contract's 'inputs.values' needs f32 of rank 3"),
            "{e}"
        );
        let e = open_err("no_contract.onnx", &cpu());
        assert!(
            e.contains(
                "carries no contract ('treesits.contract' in its metadata): supply one with --contract FILE"
            ),
            "{e}"
        );
        let json = std::fs::read_to_string(model("linear_left.contract.json")).unwrap();
        let mut config = cpu();
        config.contract = Some(ModelContract::from_json(&json).unwrap());
        let s = ModelSession::open(rt(), &model("no_contract.onnx"), &config).unwrap();
        assert_eq!(s.contract().model_id, "test-linear-left");
        let mut c = ModelContract::from_json(&json).unwrap();
        c.output.name = "probs".into();
        config.contract = Some(c);
        let e = open_err("no_contract.onnx", &config);
        assert!(
            e.contains("the contract's 'output.name' is 'probs' but the model's outputs are logits"),
            "{e}"
        );
        let e = open_err("nothing_here.onnx", &cpu());
        assert!(e.contains("nothing_here.onnx: no such model file"), "{e}");
    }

    #[test]
    fn fixed_lengths_are_read_from_the_model() {
        let s = ModelSession::open(rt(), &model("fixed_latest.onnx"), &cpu()).unwrap();
        assert_eq!(s.shape().fixed_length, Some(5));
        let s = ModelSession::open(rt(), &model("doy_right_mask.onnx"), &cpu()).unwrap();
        assert_eq!(s.shape().fixed_length, None);
        assert_eq!(s.contract().inputs.doy.as_deref(), Some("doy"));
    }

    #[test]
    fn cuda_fails_loudly_and_auto_falls_back_on_a_cpu_build() {
        if rt().has_cuda() {
            eprintln!("skipped: this ONNX Runtime has CUDA; the CPU-build behaviour cannot be checked here");
            return;
        }
        let mut config = cpu();
        config.device = Device::Cuda;
        let e = open_err("linear_left.onnx", &config);
        assert!(e.starts_with("--device cuda: the ONNX Runtime library"), "{e}");
        assert!(e.contains("has no CUDA execution provider"), "{e}");
        config.device = Device::Auto;
        let s = ModelSession::open(rt(), &model("linear_left.onnx"), &config).unwrap();
        assert_eq!(s.device(), Device::Cpu);
    }
}
