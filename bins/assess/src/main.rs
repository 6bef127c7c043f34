//! `assess`: accuracy of a class map against reference points or rasters.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use treesits_assess::{self as assess, report, AssessOptions, ClassLabel};
use treesits_core::value_set::ValueSet;
use treesits_core::Location;

/// Assess a class map against reference data: the confusion matrix, overall accuracy, Cohen's kappa,
/// per-class precision (user's accuracy), recall (producer's accuracy) and F1, and the area-adjusted
/// estimates of Olofsson et al. (2014): mapped area per class, stratified overall, user's and
/// producer's accuracy and the error-adjusted area of each class with its 95 % confidence interval.
///
/// The reference is either points (any OGR vector in any CRS, reprojected onto the map; the class of
/// each point, as a code or a class name, in --field) or class rasters on the map's grid (same CRS
/// and pixel size, origin on the map's pixel edges), compared pixel by pixel where both are valid.
/// Matrices are oriented rows = reference, columns = map. The area estimators take the map classes as
/// strata: draw the reference sample stratified by map class (or simple random / systematic).
///
/// Writes a JSON report (keys in docs/formats.md, "Accuracy reports") and a Markdown report, each
/// appearing only when complete, and a short summary on stderr.
///
/// Exit status: 0 success, 1 bad input or I/O error (one line on stderr), 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "assess", version, about, long_about)]
#[command(group(clap::ArgGroup::new("output").required(true).multiple(true).args(["out_dir", "json", "markdown"])))]
struct Cli {
    /// The class map: a Byte GeoTIFF or VRT (mosaic's mosaic_class.tif or .vrt), local or s3://.
    #[arg(long, value_name = "RASTER")]
    map: String,
    /// Reference data: a point vector (GeoPackage, Shapefile, GeoJSON, …) or a class raster on the
    /// map's grid. Repeatable (e.g. one reference raster per tile; they must not overlap); points and
    /// rasters are not mixed.
    #[arg(long, value_name = "POINTS|RASTER", required = true, num_args = 1..)]
    reference: Vec<String>,
    /// Layer of a point vector (default: its only layer).
    #[arg(long, value_name = "NAME")]
    layer: Option<String>,
    /// Attribute of the points holding their reference class: a code (0-254) or a class name
    /// (matched without regard to case).
    #[arg(long, value_name = "NAME", default_value = "class")]
    field: String,
    /// Write accuracy.json and accuracy.md into this directory (created if needed).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["json", "markdown"])]
    out_dir: Option<PathBuf>,
    /// Write the JSON report to this file (- for stdout).
    #[arg(long, value_name = "FILE|-")]
    json: Option<PathBuf>,
    /// Write the Markdown report to this file (- for stdout).
    #[arg(long, value_name = "FILE|-")]
    markdown: Option<PathBuf>,
    /// Class names: CODE=NAME pairs (0=spruce,1=pine) or a JSON class table (inline or a file).
    /// Default: the map's TREESITS_CLASSES metadata or category names, else a reference raster's.
    #[arg(long, value_name = "LIST|JSON")]
    classes: Option<String>,
    /// The map's nodata value (default: the band's nodata, else 255). Reference points with this
    /// code are left out too.
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u8))]
    nodata: Option<u8>,
    /// Class codes to leave out on both sides (lists and ranges: 10 or 10,20-30): such map pixels
    /// count as unmapped and such samples are dropped.
    #[arg(long, value_name = "LIST")]
    ignore: Option<ValueSet>,
    /// Worker threads reading the rasters (default: the CPUs this process may use).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    #[command(flatten)]
    log: treesits_cli::LogArgs,
}

fn gdal_path(flag: &str, arg: &str) -> anyhow::Result<String> {
    let loc = Location::parse(arg).with_context(|| flag.to_string())?;
    Ok(loc.gdal_path())
}

/// Where the reports go.
struct Outputs {
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
}

fn outputs(cli: &Cli) -> anyhow::Result<Outputs> {
    let o = match &cli.out_dir {
        Some(dir) => {
            if dir.is_file() {
                bail!("--out-dir {} is a file: give a directory", dir.display());
            }
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create --out-dir {}", dir.display()))?;
            Outputs {
                json: Some(dir.join("accuracy.json")),
                markdown: Some(dir.join("accuracy.md")),
            }
        }
        None => Outputs {
            json: cli.json.clone(),
            markdown: cli.markdown.clone(),
        },
    };
    let dash = |p: &Option<PathBuf>| p.as_deref().is_some_and(|p| p.as_os_str() == "-");
    match (&o.json, &o.markdown) {
        (None, None) => bail!("no output: give --out-dir DIR, or --json FILE and/or --markdown FILE"),
        _ if dash(&o.json) && dash(&o.markdown) => {
            bail!("--json - and --markdown - both ask for stdout: send one of them to a file")
        }
        _ => {}
    }
    for p in [&o.json, &o.markdown].into_iter().flatten() {
        if p.as_os_str() != "-" {
            if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !parent.is_dir() {
                    bail!(
                        "cannot write {}: directory {} does not exist",
                        p.display(),
                        parent.display()
                    );
                }
            }
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    treesits_cli::init_logging(&cli.log);
    treesits_gdal::error::log_messages();
    treesits_gdal::config::set_network_defaults();
    treesits_cli::run("assess", || {
        treesits_cli::start_thread_pool(cli.threads.map(|t| t as usize))?;
        let outs = outputs(&cli)?;
        let classes: Option<Vec<ClassLabel>> = cli
            .classes
            .as_deref()
            .map(assess::parse_class_labels)
            .transpose()?;
        let opts = AssessOptions {
            map: gdal_path("--map", &cli.map)?,
            references: cli
                .reference
                .iter()
                .map(|r| gdal_path("--reference", r))
                .collect::<anyhow::Result<_>>()?,
            layer: cli.layer.clone(),
            field: cli.field.clone(),
            nodata: cli.nodata,
            ignore: cli.ignore.clone(),
            classes,
        };
        let started = std::time::Instant::now();
        let a = assess::assess(&opts)?;
        let written = report::write_reports(&a, outs.json.as_deref(), outs.markdown.as_deref())?;
        for line in report::summary(&a) {
            log::info!("{line}");
        }
        for p in &written {
            log::info!("wrote {}", p.display());
        }
        log::debug!("assessed in {:.1} s", started.elapsed().as_secs_f64());
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
