//! `predict`: tree-species predictions for time-series chunks with an ONNX model.
//! Argument parsing and one call into `treesits_infer::task`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::bail;
use clap::Parser;
use treesits_cli::progress::{Mode, Progress};
use treesits_core::prediction::Uncertainty;
use treesits_infer::pipeline::{ChunkDone, Destination, PredictProgress};
use treesits_infer::runtime::Device;
use treesits_infer::task::PredictTask;

/// Predict tree species for time-series chunks with an ONNX model (ONNX Runtime on CPU or CUDA).
///
/// Reads the Arrow IPC chunks cube-extract writes, packs each pixel's observations exactly as the
/// model's contract says (bands by name, scaling, sequence length and padding, day of year), runs the
/// model and writes prediction chunks: per pixel the class code, its probability × 10000 and, on
/// request, every class's probability and an uncertainty. Pixels without observations get class 255
/// and probability 65535. Formats: docs/formats.md ("Time-series chunks", "Prediction chunks").
///
/// The ONNX Runtime library is loaded at start from ORT_DYLIB_PATH (else next to the executable, in
/// LD_LIBRARY_PATH or the usual system places): its CPU build, or the GPU build for --device cuda.
///
/// Exit status: 0 success, 1 bad input or runtime error (one line on stderr), 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "predict", version, about, long_about)]
struct Cli {
    /// The ONNX model; it should carry its contract in its metadata (`treesits.contract`).
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Chunk files, directories (every *.arrows in them, by name; *.pred.arrows and hidden files
    /// skipped), `*`/`?` patterns in the file name, or `-` for one chunk stream on stdin (as
    /// `cube-extract --out -` writes it). Several values: each file is read once, in order.
    #[arg(long, value_name = "FILE|DIR|-", required = true, num_args = 1..)]
    input: Vec<String>,
    /// Directory for the predictions (created if needed): one <input name>.pred.arrows per input file,
    /// <tile_id>.pred.arrows for stdin. All files appear together when every input succeeded, or none.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "out",
        required_unless_present = "out"
    )]
    out_dir: Option<PathBuf>,
    /// `-`: write one prediction stream on stdout (one record batch per input batch, rows in input order).
    #[arg(long, value_name = "-")]
    out: Option<String>,
    /// Where the model runs: `cpu`; `cuda` (fails if the CUDA execution provider cannot be started);
    /// `auto` (CUDA when available, else CPU; the log says which).
    #[arg(long, default_value = "auto", value_name = "cpu|cuda|auto")]
    device: Device,
    /// The most pixels per model call (default 1024); batches of long series hold fewer, within
    /// --memory. Results do not depend on it: a batch holds series of one length unless the model's
    /// contract says it ignores padding. A model with a fixed batch axis always gets its own size.
    #[arg(long, value_name = "PIXELS", value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: Option<u32>,
    /// Memory for predict's working buffers, e.g. 2G or 1500M (K, M, G, T: powers of 1024). Default:
    /// 3/4 of the container's memory limit, else 1 GiB (at most a quarter of RAM). Half is for the
    /// input record batch being packed, half for the model batches, whose pixels × steps it caps;
    /// results do not depend on it. The log says how it is split.
    #[arg(long, value_name = "SIZE", env = "TREESITS_MEMORY", hide_env_values = true, value_parser = parse_memory)]
    memory: Option<u64>,
    /// ONNX Runtime intra-op threads (default: the CPUs this process may use). Reading and packing
    /// run on one more thread, overlapped with the model.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Also write every class's probability (× 10000, in the model's class order) per pixel.
    #[arg(long)]
    probabilities: bool,
    /// Also write an uncertainty per pixel (× 10000): `margin` = 1 − (p1 − p2) of the two most probable
    /// classes, `entropy` = Shannon entropy / ln(classes).
    #[arg(long, value_name = "margin|entropy")]
    uncertainty: Option<Uncertainty>,
    /// A model contract (JSON, docs/model-contract.md) for a model that carries none, or to override
    /// the model's own.
    #[arg(long, value_name = "JSON")]
    contract: Option<PathBuf>,
    #[command(flatten)]
    log: treesits_cli::LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    treesits_cli::init_logging(&cli.log);
    treesits_cli::run("predict", || {
        let destination = match (cli.out_dir, cli.out.as_deref()) {
            (Some(dir), _) => Destination::Dir(dir),
            (None, Some("-")) => Destination::Stdout,
            _ => bail!("--out only takes '-' (stdout); use --out-dir DIR for files"),
        };
        let progress = PixelProgress {
            mode: Mode::detect(cli.log.quiet),
            progress: OnceLock::new(),
        };
        PredictTask {
            model: cli.model,
            inputs: cli.input,
            destination,
            device: cli.device,
            batch_size: cli.batch_size.map(|b| b as usize),
            memory: cli.memory,
            // As every tool: at most a few threads per CPU, with a warning (`--threads 100000`).
            threads: cli.threads.map_or_else(treesits_cli::default_threads, |t| {
                treesits_cli::cap_threads(t as usize, treesits_cli::default_threads())
            }),
            probabilities: cli.probabilities,
            uncertainty: cli.uncertainty,
            contract: cli.contract,
        }
        .run_with(&progress)?;
        if let Some(p) = progress.progress.get() {
            p.finish();
        }
        Ok(())
    })
}

fn parse_memory(s: &str) -> Result<u64, String> {
    treesits_core::memory::parse_size(s).map_err(|e| format!("{e}; set by --memory or TREESITS_MEMORY"))
}

/// Tile pixels predicted out of the inputs' total area (a masked chunk holds fewer pixels than its
/// rows × columns; its whole area counts as done): a bar on a terminal, periodic log lines otherwise
/// (with the rate and the time left); with stdin among the inputs, whose size is not known ahead,
/// one log line per chunk.
struct PixelProgress {
    mode: Mode,
    progress: OnceLock<Progress>,
}

impl PredictProgress for PixelProgress {
    fn start(&self, total_pixels: Option<u64>) {
        if let Some(total) = total_pixels {
            let _ = self
                .progress
                .set(Progress::new("predict", total, "tile pixels", self.mode));
        }
    }

    fn chunk(&self, done: &ChunkDone<'_>) {
        let words = format!(
            "{} chunk {} of {} ({} pixels with data)",
            done.input,
            done.chunk + 1,
            done.chunks_in_stream,
            done.pixels
        );
        match self.progress.get() {
            Some(p) => {
                p.inc_with(done.area, || words);
            }
            None if self.mode != Mode::Hidden => log::info!("{words}"),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
