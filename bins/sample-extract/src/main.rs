//! `sample-extract`: labelled points and polygons over a FORCE cube → one Parquet training table.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use treesits_core::{Date, Location};
use treesits_cube::samples::{extract_samples, write_report, PolygonMode, SampleRequest};

/// Extract the time series of labelled samples over a FORCE cube into one Parquet training table.
///
/// Reads the samples (points or polygons in any OGR vector and any CRS, reprojected onto the cube),
/// places them on the cube's pixels and reads, tile by tile, every file block that holds a sample
/// once, with cube-extract's reader: a sample's series is exactly the series cube-extract gives the
/// same pixel (QAI screen, date window and sensors as there). Writes one zstd Parquet file, one row
/// per sample pixel (docs/formats.md, "Training table"), all at once or not at all.
///
/// Samples off the cube, without a valid observation (every observation nodata or screened), with
/// no label, or on a pixel an earlier sample already has (the first keeps it; the later is reported
/// as duplicate_of:<sample_id>) are not rows: they are counted on stderr and listed by --report.
///
/// Exit status: 0 success, 1 bad input or I/O error (one line on stderr), 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "sample-extract", version, about, long_about)]
struct Cli {
    /// Cube root holding datacube-definition.prj and the Xdddd_Ydddd tiles, local or s3://bucket/….
    #[arg(long, value_name = "DIR|S3URL")]
    cube: String,
    /// Labelled samples: points or polygons in any vector OGR reads (GeoPackage, GeoJSON, …), any CRS.
    #[arg(long, value_name = "VECTOR")]
    samples: String,
    /// Layer of --samples (default: its only layer).
    #[arg(long, value_name = "NAME")]
    layer: Option<String>,
    /// Field holding the class: integer codes, or class names (matched to --classes).
    #[arg(long, value_name = "FIELD")]
    label: String,
    /// Class table, JSON [{"code":0,"name":"spruce","colour":[r,g,b]},…]. Default: the --model
    /// contract's classes, else treesits' tree species (codes 0-9) and non-forest (10).
    #[arg(long, value_name = "FILE.json")]
    classes: Option<PathBuf>,
    /// Field with a plot id (column plot_id).
    #[arg(long, value_name = "FIELD")]
    plot_id: Option<String>,
    /// Field with a sample weight (column weight).
    #[arg(long, value_name = "FIELD")]
    weight: Option<String>,
    /// Field with the reference year (column year).
    #[arg(long, value_name = "FIELD")]
    year: Option<String>,
    /// Pixels of a polygon: `all` (every pixel whose centre is inside) or `centre` (the one inside
    /// pixel nearest the polygon's centroid).
    #[arg(long, default_value = "all", value_name = "all|centre")]
    polygons: PolygonMode,
    /// The training table to write (.parquet); replaced only when the new one is complete.
    #[arg(long, value_name = "FILE.parquet")]
    out: PathBuf,
    /// CSV of every sample (or polygon pixel) not written, with its reason: off_cube,
    /// no_valid_observation, duplicate_of:<sample_id>, label_missing.
    #[arg(long, value_name = "FILE.csv")]
    report: Option<PathBuf>,
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
    /// Bands to extract, comma-separated, by FORCE's names, in this order, as for cube-extract:
    /// Landsat and Sentinel-2 together on BLUE,GREEN,RED,NIR,SWIR1,SWIR2. Default: every band of
    /// the sensors.
    #[arg(long, value_name = "LIST", conflicts_with = "model")]
    bands: Option<String>,
    /// Extract what this model takes, as for cube-extract: the bands (and sensors) of its contract;
    /// its classes are the class table unless --classes is given.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// QAI conditions that reject an observation, as for cube-extract (`none`: keep every one).
    #[arg(
        long,
        default_value = "nodata,cloud,shadow,snow,subzero,saturation",
        value_name = "LIST"
    )]
    screen: String,
    /// Worker threads, each reading its own blocks (default: the CPUs this process may use).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Files (datasets) all workers together keep open, as for cube-extract.
    #[arg(long, value_name = "N", default_value_t = treesits_cube::scan::MAX_OPEN_DATASETS)]
    max_open_files: usize,
    /// Benchmark baseline: read every BOA and QAI band of the blocks that hold samples with the same
    /// workers, write nothing.
    #[arg(long, hide = true)]
    bench_plain_read: bool,
    #[command(flatten)]
    log: treesits_cli::LogArgs,
}

impl Cli {
    fn request(&self) -> SampleRequest {
        // s3:// samples are read through GDAL's /vsis3/, like the cube.
        let samples = match Location::parse(&self.samples) {
            Ok(loc) if self.samples.starts_with("s3://") => loc.gdal_path(),
            _ => self.samples.clone(),
        };
        SampleRequest {
            cube: self.cube.clone(),
            samples,
            layer: self.layer.clone(),
            label: self.label.clone(),
            classes: self.classes.clone(),
            plot_id: self.plot_id.clone(),
            weight: self.weight.clone(),
            year: self.year.clone(),
            polygons: self.polygons,
            start: self.start,
            end: self.end,
            sensors: self.sensors.clone(),
            bands: self.bands.clone(),
            model: self.model.clone(),
            screen: self.screen.clone(),
            max_open_datasets: self.max_open_files,
            out: self.out.clone(),
            plain_read: self.bench_plain_read,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    treesits_cli::init_logging(&cli.log);
    treesits_gdal::error::log_messages();
    treesits_gdal::config::set_network_defaults();
    treesits_cli::run("sample-extract", || {
        let threads = treesits_cli::start_thread_pool(cli.threads.map(|t| t as usize))?;
        let started = std::time::Instant::now();
        let s = extract_samples(&cli.request())?;
        if cli.bench_plain_read {
            let secs = started.elapsed().as_secs_f64();
            log::info!("plain read of {} blocks in {secs:.2} s", s.blocks);
            return Ok(());
        }
        if let Some(report) = &cli.report {
            write_report(report, &s.skipped)?;
        }
        let secs = started.elapsed().as_secs_f64();
        if cli.log.quiet {
            return Ok(());
        }
        eprintln!(
            "sample-extract: {} samples, {} pixels written ({} samples), {} off the cube, {} without a \
             valid observation, {} duplicates, {} without a label; {} blocks, {threads} threads, {secs:.2} s, \
             {:.0} points/s",
            s.samples,
            s.pixels,
            s.samples_written,
            s.off_cube,
            s.no_valid_observation,
            s.duplicates,
            s.label_missing,
            s.blocks,
            s.samples as f64 / secs.max(1e-9)
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
