//! `treesits-synth`: generate a synthetic FORCE Level-2 data cube with known tree-species truth.

use std::path::PathBuf;
use std::process::ExitCode;

use std::collections::BTreeMap;
use std::sync::Mutex;

use clap::Parser;
use treesits_cli::progress::{Mode, Progress};
use treesits_core::grid::PrjForm;
use treesits_core::{Sensor, TileId};
use treesits_testkit::generate::ForceLayoutArg;
use treesits_testkit::SynthConfig;

/// Generate a synthetic FORCE Level-2 data cube with known tree-species truth.
///
/// Writes DIR/cube (datacube-definition.prj and Xdddd_Ydddd/YYYYMMDD_LEVEL2_<SENSOR>_{BOA,QAI}.tif),
/// DIR/truth (species per pixel), DIR/aoi.gpkg and DIR/aoi_laea.gpkg (forest districts),
/// DIR/landcover (a WorldCover-like raster, 10 = trees) and DIR/manifest.json.
/// The same seed always gives the same bytes.
#[derive(Debug, Parser)]
#[command(name = "treesits-synth", version, about, long_about)]
struct Cli {
    /// Output directory (created; must not exist or be empty unless --force).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Random seed: the same seed gives identical files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of tiles, laid out in a near-square block.
    #[arg(long, default_value_t = 2)]
    tiles: usize,
    /// Tile width and height in pixels (tile size in metres = size × resolution; FORCE uses 3000).
    #[arg(long, default_value_t = 200, value_name = "PIXELS")]
    size: usize,
    /// Number of acquisitions spread over the year.
    #[arg(long, default_value_t = 24)]
    dates: usize,
    /// Year of the acquisitions.
    #[arg(long, default_value_t = 2021)]
    year: i32,
    /// Sensors, taking turns: SEN2A, SEN2B, SEN2C (10 bands), LND08 etc. (6 bands); Landsat and
    /// Sentinel-2 may be mixed (every seventh acquisition shares its date with the one before).
    #[arg(long, default_value = "SEN2A,SEN2B", value_parser = parse_sensors)]
    sensors: SensorList,
    /// File layout: force37 (GTiff LZW + predictor, full-width strips of a tenth of a tile),
    /// force38 (ZSTD + predictor, 256 × 256 tiles) or force39 (COG as FORCE >= 3.9 writes it: ZSTD +
    /// predictor, 256 × 256 blocks, overviews).
    #[arg(long, default_value = "force38")]
    layout: ForceLayoutArg,
    /// Form of datacube-definition.prj: lines (FORCE <= 3.7) or tagged (FORCE >= 3.8).
    #[arg(long = "prj-form", default_value = "tagged", value_parser = parse_prj_form)]
    prj_form: PrjForm,
    /// Pixel size in metres.
    #[arg(long, default_value_t = 10.0, value_name = "METRES")]
    resolution: f64,
    /// Worker threads (default: the CPUs this process may use).
    #[arg(long)]
    threads: Option<usize>,
    /// Replace an existing output directory written by treesits-synth.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    log: treesits_cli::LogArgs,
}

/// A comma-separated sensor list, as one argument.
#[derive(Debug, Clone)]
struct SensorList(Vec<Sensor>);

fn parse_sensors(s: &str) -> Result<SensorList, String> {
    Sensor::parse_list(s).map(SensorList).map_err(|e| e.to_string())
}

fn parse_prj_form(s: &str) -> Result<PrjForm, String> {
    s.parse()
        .map_err(|e: treesits_core::choice::UnknownChoice| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    treesits_cli::init_logging(&cli.log);
    treesits_cli::run("treesits-synth", || {
        treesits_cli::start_thread_pool(cli.threads)?;
        let cfg = SynthConfig {
            out: cli.out.clone(),
            seed: cli.seed,
            tiles: cli.tiles,
            tile_pixels: cli.size,
            dates: cli.dates,
            year: cli.year,
            sensors: cli.sensors.0.clone(),
            layout: cli.layout.0,
            prj_form: cli.prj_form,
            resolution: cli.resolution,
            force: cli.force,
        };
        let start = std::time::Instant::now();
        // One unit per acquisition written: a date of a tile, size × size pixels of every band.
        let progress = Progress::new(
            "treesits-synth",
            (cfg.tiles * cfg.dates) as u64,
            "acquisitions",
            Mode::detect(cli.log.quiet),
        );
        let per_tile = Mutex::new(BTreeMap::<TileId, usize>::new());
        let on_acquisition = |tile: TileId| {
            let mut counts = per_tile.lock().unwrap_or_else(|e| e.into_inner());
            let n = counts.entry(tile).or_default();
            *n += 1;
            progress.set_message(format!(
                "tile {tile}: {n} of {} dates ({} x {} px)",
                cfg.dates, cfg.tile_pixels, cfg.tile_pixels
            ));
            drop(counts);
            progress.inc(1);
        };
        let m = treesits_testkit::generate::generate_with(&cfg, &on_acquisition)?;
        progress.finish();
        log::info!(
            "wrote {} tiles x {} acquisitions ({} x {} px) to {} in {:.1} s",
            m.tiles.len(),
            m.acquisitions.len(),
            m.tile_pixels,
            m.tile_pixels,
            cli.out.display(),
            start.elapsed().as_secs_f64()
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
