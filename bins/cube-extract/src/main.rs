//! `cube-extract`: per-pixel time series of one FORCE tile, as Arrow IPC chunks.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;
use treesits_cli::progress::{Mode, Progress, RowsDone};
use treesits_core::memory::MemoryBudget;
use treesits_core::{Date, PixelWindow};
use treesits_cube::extract::{ExtractPlan, ExtractSummary};
use treesits_cube::extract_request::ExtractRequest;

/// Extract the per-pixel time series of one FORCE tile into Arrow IPC chunks.
///
/// Reads DIR/YYYYMMDD_LEVEL2_<SENSOR>_{BOA,QAI}.tif of one tile (a local directory or s3://bucket/key,
/// read through GDAL's /vsis3/ with the usual AWS_* variables; GeoTIFF or COG, as FORCE writes them),
/// keeps for every pixel in the mask the observations whose QAI passes the screen, sorted by (date,
/// sensor), and writes one zstd-compressed Arrow IPC stream per chunk of rows (<tile>_chunkNNNN.arrows)
/// or one stream on stdout (--out -). The format is described in docs/formats.md ("Time-series
/// chunks").
///
/// Landsat and Sentinel-2 make one series on the bands they share:
/// --sensors SEN2A,SEN2B,LND08,LND09 --bands BLUE,GREEN,RED,NIR,SWIR1,SWIR2 (or --model FILE, whose
/// contract names the bands). Each sensor's own band of each name is read (Sentinel-2's NIR is B8A),
/// and every observation keeps its sensor.
///
/// Exit status: 0 success, 1 bad input or I/O error (one line on stderr), 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "cube-extract", version, about, long_about)]
struct Cli {
    /// Tile directory (Xdddd_Ydddd), local or s3://bucket/…/Xdddd_Ydddd.
    #[arg(long, value_name = "DIR|S3URL")]
    tile: String,
    /// Byte mask on the tile's grid (1 = process, 0 = skip), as written by aoi-select.
    /// Default: every pixel.
    #[arg(long, value_name = "FILE")]
    mask: Option<String>,
    /// Directory for the chunk files (created if needed). All chunks appear together, or none.
    #[arg(long, value_name = "DIR", conflicts_with = "out", required_unless_present_any = ["out", "bench_plain_read"])]
    out_dir: Option<PathBuf>,
    /// `-`: write every chunk as one Arrow IPC stream on stdout (one record batch per chunk).
    #[arg(long, value_name = "-")]
    out: Option<String>,
    /// First acquisition date to use (inclusive), YYYY-MM-DD. Default: no limit.
    #[arg(long, value_name = "YYYY-MM-DD")]
    start: Option<Date>,
    /// Last acquisition date to use (inclusive), YYYY-MM-DD. Default: no limit.
    #[arg(long, value_name = "YYYY-MM-DD")]
    end: Option<Date>,
    /// Sensors to use, comma-separated. Without --bands or --model all must have the same bands
    /// (Sentinel-2: 10, Landsat: 6). Default: the --model contract's sensors, else SEN2A,SEN2B,SEN2C.
    #[arg(long, value_name = "LIST")]
    sensors: Option<String>,
    /// Bands to extract, comma-separated, by FORCE's names (BLUE, GREEN, RED, REDEDGE1, REDEDGE2,
    /// REDEDGE3, BROADNIR, NIR, SWIR1, SWIR2), in this order; every sensor must have each. Landsat
    /// and Sentinel-2 share BLUE,GREEN,RED,NIR,SWIR1,SWIR2. Default: every band of the sensors.
    #[arg(long, value_name = "LIST", conflicts_with = "model")]
    bands: Option<String>,
    /// Extract what this model takes: the bands of its contract (an ONNX model carrying one, or a
    /// contract .json), and, if the contract lists sensors, only those (the default --sensors).
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// QAI conditions that reject an observation, comma-separated from nodata, cloud, shadow, snow,
    /// subzero, saturation, … (FORCE's default set), or `none` to keep every observation.
    #[arg(
        long,
        default_value = "nodata,cloud,shadow,snow,subzero,saturation",
        value_name = "LIST"
    )]
    screen: String,
    /// Tile rows per chunk. Default: the block height of the files (strip height or tile size), so
    /// reads follow the files' own blocks.
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u32).range(1..))]
    chunk_rows: Option<u32>,
    /// Worker threads, each with its own GDAL datasets (default: the CPUs this process may use;
    /// fewer if --memory cannot hold that many workers' windows).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Memory for the workers' chunk windows, batches and block cache, e.g. 1500M or 2G. A chunk
    /// whose observations do not fit (or exceed 128 MiB) is written as several record batches of
    /// column ranges (tiled
    /// files along their blocks; strips decoded once and spilled to an unnamed temporary file in
    /// the output directory). Default: 3/4 of the container's memory limit, else 1 GiB (or a
    /// quarter of RAM if less). The process itself (GDAL) needs about 100 MiB on top.
    #[arg(long, value_name = "SIZE", env = "TREESITS_MEMORY", hide_env_values = true, value_parser = parse_memory)]
    memory: Option<u64>,
    /// Files (datasets) all workers together keep open between chunks. A worker keeps the BOA and
    /// QAI of the first max/2/threads acquisitions open and reopens the others for every chunk, so
    /// open files (and their memory) do not grow with the number of dates.
    #[arg(long, value_name = "N", default_value_t = treesits_cube::scan::MAX_OPEN_DATASETS)]
    max_open_files: usize,
    /// zstd level of the chunks, -131072..=22. 1 (the default) is the fast end of the usual range:
    /// compressing is about twice as fast as at zstd's default 3, files 1-2 % larger. Higher levels
    /// give smaller files for much more CPU (19: ~20 % smaller, the whole extraction over ten times
    /// slower); 0 means 3; negative levels are faster still but compress less (-1: ~35 % larger).
    /// Readers need no setting: the level is not part of the format.
    #[arg(long, value_name = "N", default_value_t = treesits_core::chunk::DEFAULT_ZSTD_LEVEL,
          value_parser = clap::value_parser!(i32).range(-131_072..=22), allow_negative_numbers = true)]
    zstd_level: i32,
    /// Tests and benchmarks: bytes of band windows and merge program per group of acquisitions
    /// merged into the output together (default: an eighth of a chunk's band values, at least
    /// 8 MiB; 1: one acquisition per group). Does not change the output.
    #[arg(long, hide = true, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    group_bytes: Option<u64>,
    /// Tests and benchmarks: most bytes of one record batch (observations × (5 + 2 × bands) +
    /// 24 per pixel) instead of what --memory gives. Does not change any pixel's series.
    #[arg(long, hide = true, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    batch_bytes: Option<u64>,
    /// Benchmark baseline: read every BOA and QAI block of the tile with the same workers, write nothing.
    #[arg(long, hide = true)]
    bench_plain_read: bool,
    #[command(flatten)]
    log: treesits_cli::LogArgs,
}

impl Cli {
    /// The request the flags describe.
    fn request(&self) -> anyhow::Result<ExtractRequest> {
        if let Some(out) = &self.out {
            if out != "-" {
                bail!("--out only takes '-' (stdout); use --out-dir DIR for files");
            }
        }
        Ok(ExtractRequest {
            tile: self.tile.clone(),
            mask: self.mask.clone(),
            start: self.start,
            end: self.end,
            sensors: self.sensors.clone(),
            bands: self.bands.clone(),
            model: self.model.clone(),
            screen: self.screen.clone(),
            chunk_rows: self.chunk_rows.map(|r| r as usize),
            max_open_datasets: self.max_open_files,
            zstd_level: self.zstd_level,
            group_bytes: self.group_bytes.map(|b| b as usize),
            batch_bytes: self.batch_bytes.map(|b| b as usize),
            memory: MemoryBudget::choose(self.memory),
        })
    }
}

fn parse_memory(s: &str) -> Result<u64, String> {
    treesits_core::memory::parse_size(s).map_err(|e| format!("{e}; set by --memory or TREESITS_MEMORY"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    treesits_cli::init_logging(&cli.log);
    treesits_gdal::error::log_messages();
    treesits_gdal::config::set_network_defaults();
    treesits_cli::run("cube-extract", || {
        let plan = ExtractPlan::prepare(&cli.request()?)?;
        let wanted = cli.threads.map_or_else(treesits_cli::default_threads, |t| {
            treesits_cli::cap_threads(t as usize, treesits_cli::default_threads())
        });
        let workers = plan.workers(wanted);
        if workers < wanted {
            log::warn!(
                "{}: {} holds the windows of {workers} of {wanted} workers: running {workers} (--memory for more)",
                plan.scan.tile,
                plan.memory
            );
        }
        let threads = treesits_cli::start_thread_pool(Some(workers))?;
        plan.bound_gdal_cache(threads);
        log::info!("{}: {}", plan.scan.tile, plan.memory_words(threads));
        let started = std::time::Instant::now();
        if cli.bench_plain_read {
            let values = plan.plain_read()?;
            log::info!(
                "{}: plain read of {values} values in {:.2} s",
                plan.scan.tile,
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        let windows = plan.windows();
        log::info!(
            "{}: {} acquisitions, {} chunks of {} rows, {} x {} pixels, {threads} threads",
            plan.scan.tile,
            plan.scan.acquisitions.len(),
            windows.len(),
            plan.chunk_rows,
            plan.scan.size.0,
            plan.scan.size.1
        );
        let progress = Progress::new(
            plan.scan.tile.to_string(),
            windows.len() as u64,
            "chunks",
            Mode::detect(cli.log.quiet),
        );
        let rows_done = RowsDone::new(
            windows.iter().map(|w| (w.row, w.rows)).collect(),
            plan.scan.size.1,
        );
        let on_chunk = |i: usize, _: &PixelWindow, _: &ExtractSummary| {
            progress.inc_with(1, || rows_done.mark(i));
        };
        let summary = match &cli.out_dir {
            Some(dir) => plan.write_dir(dir, &on_chunk)?.1,
            None => {
                let stdout = std::io::stdout().lock();
                plan.write_stream(std::io::BufWriter::new(stdout), "stdout", &on_chunk)?
            }
        };
        progress.finish();
        log::info!(
            "{}: {} chunks, {} pixels ({} without valid observations), {} observations in {:.1} s",
            plan.scan.tile,
            summary.chunks,
            summary.pixels,
            summary.empty_pixels,
            summary.observations,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
