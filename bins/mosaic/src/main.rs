//! `mosaic`: prediction chunks → per-tile GeoTIFFs, mosaic VRTs, COGs and a quicklook.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use treesits_core::CubeDefinition;
use treesits_core::Location;
use treesits_gdal::cog::OverviewResampling;
use treesits_gdal::cube_definition::{read_cube_definition, CubeDefinitionError};
use treesits_map::mosaic::{expand_inputs, MosaicOptions};
use treesits_map::smooth::{BayesSmoothing, MajorityFilter, Smoothing};
use treesits_select::aoi::AoiSource;

/// Turn prediction chunks into maps: per-tile GeoTIFFs, mosaic VRTs, Cloud-Optimised GeoTIFFs and a
/// quicklook PNG.
///
/// Writes into --out-dir, per tile: <tile>_class.tif (Byte, nodata 255, colour table and category
/// names of the model's classes), <tile>_prob.tif (UInt16 probability x 10000 with scale 1e-4, so
/// GIS tools read 0-1; nodata 65535), and <tile>_probabilities.tif / <tile>_uncertainty.tif (scaled
/// alike) when the chunks carry them; then mosaic_class.vrt and mosaic_class.tif (COG, mode
/// overviews), mosaic_prob.vrt/.tif (average overviews), the same for uncertainty,
/// mosaic_probabilities.vrt, quicklook.png (RGBA, nodata transparent; title with the model, dates
/// and CRS, scale bar, legend), and mosaic.stac.json (a STAC Item of the mosaics and the model).
/// Beside each class and probability product, <name>.qml (QGIS loads it by itself) and <name>.sld
/// (map servers) style it: exactly the model's classes, or a 0-1 ramp. Every product names what it
/// was made from (TREESITS_MODEL_ID, _MODEL_SHA256, _VERSION, _DATES, _SENSORS, _QAI_SCREEN).
/// Georeferencing is the FORCE grid of the chunks. Everything appears together when complete, or
/// nothing does.
/// Formats: docs/formats.md ("Map products").
///
/// Exit status: 0 success, 1 bad input or I/O error (one line on stderr), 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "mosaic", version, about, long_about)]
struct Cli {
    /// Prediction chunks: files, directories (their *.pred.arrows files), wildcards
    /// (X0058_*.pred.arrows), or - for prediction streams on stdin (back to back, one tile after
    /// another). Repeatable.
    #[arg(long, value_name = "CHUNKS|DIR|GLOB|-", required = true, num_args = 1..)]
    input: Vec<String>,
    /// Output directory (created if needed). Products of an earlier run there are replaced; other
    /// files are left alone.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// datacube-definition.prj (either FORCE form, local or s3://) whose grid replaces the one the
    /// chunks describe. Default: the chunks' own grid.
    #[arg(long, value_name = "PRJ")]
    cube_def: Option<String>,
    /// Polygons (any OGR vector, any CRS): pixels whose centre lies outside become nodata, tiles
    /// outside are left out.
    #[arg(long, value_name = "VECTOR")]
    clip: Option<String>,
    /// Layer of --clip (default: its only layer).
    #[arg(long, value_name = "NAME", requires = "clip")]
    clip_layer: Option<String>,
    /// Also write web mosaics reprojected to this EPSG code (nearest neighbour), e.g. 3857:
    /// mosaic_class_epsg<CODE>.tif (with colour table and category names) and
    /// mosaic_prob_epsg<CODE>.tif (COGs), each with its .qml and .sld.
    #[arg(long, value_name = "EPSG")]
    t_srs: Option<String>,
    /// Map tiles whose chunks are incomplete, with the missing rows as nodata (default: an error
    /// naming the tile and the rows).
    #[arg(long)]
    allow_partial: bool,
    /// Overviews of the class COG: mode (the most frequent class) or nearest (faster).
    #[arg(long, value_name = "mode|nearest", default_value = "mode", value_parser = parse_class_overviews)]
    class_overviews: OverviewResampling,
    /// Longest side of the quicklook's map, in pixels.
    #[arg(long, value_name = "PIXELS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(64..=16384))]
    quicklook_size: u32,
    /// Smooth the map spatially before the mosaics are made, across tile edges without seams:
    /// bayes (Bayesian smoothing of each class's logit towards its neighbourhood's, as sits_smooth
    /// does; rewrites every per-tile product and needs per-class probabilities, predict
    /// --probabilities) or majority (the most frequent class of the window, then --mmu; rewrites
    /// the class files only). See docs/smoothing.md.
    #[arg(long, value_name = "bayes|majority", value_parser = ["bayes", "majority"])]
    smooth: Option<String>,
    /// Side of the square neighbourhood of --smooth, pixels: odd, 3 to 21 for bayes, 1 to 21 for
    /// majority (1: the sieve of --mmu alone). Default: 7 for bayes, 3 for majority.
    #[arg(long, value_name = "PIXELS", requires = "smooth")]
    smooth_window: Option<usize>,
    /// Share of a pixel's valid neighbours, those most confident of a class, that make that class's
    /// neighbourhood estimate in --smooth bayes (above 0, at most 1; default: 0.5).
    #[arg(long, value_name = "SHARE", requires = "smooth")]
    neighbour_fraction: Option<f64>,
    /// Variance of a pixel's logits in --smooth bayes: the larger, the more the neighbourhood counts
    /// against the pixel's own probabilities (default: 10).
    #[arg(long, value_name = "VARIANCE", requires = "smooth")]
    smoothness: Option<f64>,
    /// Minimum mapping unit of --smooth majority, pixels: after the majority filter, regions of one
    /// class (8-connected) smaller than this take the class most frequent around them (default: no
    /// sieve).
    #[arg(long, value_name = "PIXELS", requires = "smooth")]
    mmu: Option<usize>,
    /// Worker threads: tiles in parallel, and COG compression (default: the CPUs this process may use).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    #[command(flatten)]
    log: treesits_cli::LogArgs,
}

fn parse_epsg(s: &str) -> anyhow::Result<u32> {
    let digits = s
        .strip_prefix("EPSG:")
        .or_else(|| s.strip_prefix("epsg:"))
        .unwrap_or(s);
    let code: u32 = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("--t-srs '{s}' is not an EPSG code: give e.g. 3857 or EPSG:3857"))?;
    treesits_map::mosaic::check_epsg(code).map_err(|e| anyhow::anyhow!("--t-srs {s}: {e}"))?;
    Ok(code)
}

/// Class overviews must stay classes: averaging class codes gives codes of no class.
fn parse_class_overviews(s: &str) -> Result<OverviewResampling, String> {
    match s.parse::<OverviewResampling>().map_err(|e| e.to_string())? {
        OverviewResampling::Average => Err("average would average class codes: use mode or nearest".into()),
        r => Ok(r),
    }
}

fn read_cube_def(arg: &str) -> anyhow::Result<CubeDefinition> {
    let loc = Location::parse(arg)
        .map_err(anyhow::Error::msg)
        .context("--cube-def")?;
    read_cube_definition(&loc).map_err(|e| match e {
        CubeDefinitionError::Read { source, .. } => anyhow::anyhow!("cannot read --cube-def {arg}: {source}"),
        CubeDefinitionError::Parse { source, .. } => {
            anyhow::anyhow!("malformed --cube-def {arg}: give a FORCE datacube-definition.prj: {source}")
        }
    })
}

/// The smoothing `--smooth` and its tuning flags ask for, checked.
fn smoothing(cli: &Cli) -> anyhow::Result<Option<Smoothing>> {
    let s = match cli.smooth.as_deref() {
        None => return Ok(None),
        Some("bayes") => {
            if cli.mmu.is_some() {
                bail!("--mmu works with --smooth majority: drop it, or smooth with majority");
            }
            let d = BayesSmoothing::default();
            Smoothing::Bayes(BayesSmoothing {
                window: cli.smooth_window.unwrap_or(d.window),
                neighbour_fraction: cli.neighbour_fraction.unwrap_or(d.neighbour_fraction),
                smoothness: cli.smoothness.unwrap_or(d.smoothness),
            })
        }
        Some(_) => {
            if cli.neighbour_fraction.is_some() || cli.smoothness.is_some() {
                bail!(
                    "--neighbour-fraction and --smoothness work with --smooth bayes: drop them, or \
                     smooth with bayes"
                );
            }
            Smoothing::Majority(MajorityFilter {
                window: cli.smooth_window.unwrap_or(3),
                mmu: cli.mmu.unwrap_or(0),
            })
        }
    };
    s.check()?;
    Ok(Some(s))
}

/// Checks the arguments into options before any work.
fn options(cli: &Cli, threads: usize) -> anyhow::Result<MosaicOptions> {
    if cli.out_dir.is_file() {
        bail!("--out-dir {} is a file: give a directory", cli.out_dir.display());
    }
    let clip = match &cli.clip {
        Some(c) => {
            let loc = Location::parse(c).map_err(anyhow::Error::msg).context("--clip")?;
            Some(AoiSource {
                arg: "--clip",
                path: loc.gdal_path(),
                layer: cli.clip_layer.clone(),
                filter: None,
            })
        }
        None => None,
    };
    Ok(MosaicOptions {
        out_dir: cli.out_dir.clone(),
        cube_def: cli.cube_def.as_deref().map(read_cube_def).transpose()?,
        clip,
        t_srs: cli.t_srs.as_deref().map(parse_epsg).transpose()?,
        allow_partial: cli.allow_partial,
        class_overviews: cli.class_overviews,
        threads,
        quicklook_px: cli.quicklook_size as usize,
        smooth: smoothing(cli)?,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    treesits_cli::init_logging(&cli.log);
    treesits_gdal::error::log_messages();
    treesits_gdal::config::set_network_defaults();
    treesits_cli::run("mosaic", || {
        let threads = treesits_cli::start_thread_pool(cli.threads.map(|t| t as usize))?;
        let opts = options(&cli, threads)?;
        let inputs = expand_inputs(&cli.input)?;
        let started = std::time::Instant::now();
        let summary = treesits_map::mosaic::run(&inputs, &mut std::io::stdin().lock(), &opts)?;
        log::info!(
            "{} tiles ({} partial, {} outside --clip), {} pixels mapped, {} files in {} in {:.1} s",
            summary.tiles,
            summary.partial_tiles,
            summary.clipped_away_tiles,
            summary.mapped_pixels,
            summary.files.len(),
            opts.out_dir.display(),
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

    #[test]
    fn epsg_codes_are_read_in_both_spellings() {
        assert_eq!(super::parse_epsg("3857").unwrap(), 3857);
        assert_eq!(super::parse_epsg("EPSG:4326").unwrap(), 4326);
        assert!(super::parse_epsg("web")
            .unwrap_err()
            .to_string()
            .contains("not an EPSG code"));
        assert!(super::parse_epsg("999999").is_err());
    }
}
