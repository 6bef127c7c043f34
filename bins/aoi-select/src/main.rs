//! `aoi-select`: the FORCE tiles and pixels an area of interest covers, as `tiles.csv` plus one Byte
//! mask per tile (1 = process, 0 = skip) on the exact grid of that tile.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use treesits_core::value_set::ValueSet;
use treesits_select::aoi::{select, SelectionPlan};
use treesits_select::request::SelectionRequest;

/// Select the FORCE tiles and pixels an area of interest covers.
///
/// Writes OUT_DIR/tiles.csv (one row per tile: tile_id, tile_x, tile_y, extent in the cube's CRS,
/// selected pixels, mask file) and OUT_DIR/<tile_id>.mask.tif (Byte, 1 = process, 0 = skip, LZW, the
/// tile's exact grid, strips as the cube's blocks). A pixel is selected when its centre lies inside a
/// polygon (--all-touched: when the polygon touches it at all) and, with --mask, when the mask value
/// under its centre (nearest neighbour) is one of --mask-values. Tiles whose mask is empty are not
/// listed. Outputs appear only when complete; on error nothing is written. Exit status: 0 success,
/// 1 error (one line on stderr), 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "aoi-select", version, about, long_about)]
struct Cli {
    /// Cube root holding datacube-definition.prj (FORCE <= 3.7 or >= 3.8 form) and the Xdddd_Ydddd
    /// tile directories: a local directory or s3://bucket/prefix.
    #[arg(long, value_name = "DIR|s3://…")]
    cube: String,
    /// Area of interest: any OGR vector (GeoPackage, Shapefile, GeoJSON, FlatGeobuf) in any CRS, with
    /// polygons or multipolygons; local or s3://.
    #[arg(long, value_name = "VECTOR")]
    aoi: String,
    /// Layer of --aoi to read (default: its only layer).
    #[arg(long, value_name = "NAME")]
    layer: Option<String>,
    /// OGR SQL attribute filter on --aoi, e.g. "name = 'Auwald'".
    #[arg(long = "where", value_name = "SQL")]
    filter: Option<String>,
    /// Raster whose values decide which pixels to process (e.g. an ESA WorldCover tile); repeat for
    /// many tiles. Resampled nearest-neighbour onto the cube grid; the first raster covering a pixel
    /// decides; pixels no raster covers are skipped.
    #[arg(long = "mask", value_name = "RASTER")]
    masks: Vec<String>,
    /// Values of --mask that mean "process": integers and ranges, e.g. 10 or 10,20-30
    /// (WorldCover: 10 = tree cover).
    #[arg(long, value_name = "LIST", default_value = "10", value_parser = parse_values)]
    mask_values: ValueSet,
    /// Pixel size of the cube in map units (metres); the tile size must be a whole number of pixels.
    #[arg(long, value_name = "METRES", default_value_t = 10.0)]
    resolution: f64,
    /// Keep only tiles whose directory exists in the cube.
    #[arg(long)]
    existing_only: bool,
    /// Select every pixel a polygon touches, not only those whose centre lies inside.
    #[arg(long)]
    all_touched: bool,
    /// Output directory (created; an earlier tiles.csv and its masks there are replaced).
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Worker threads (default: the CPUs this process may use).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    log: treesits_cli::LogArgs,
}

fn parse_values(s: &str) -> Result<ValueSet, String> {
    s.parse()
        .map_err(|e: treesits_core::value_set::ValueSetError| e.to_string())
}

impl Cli {
    /// The request the flags describe.
    fn request(&self) -> SelectionRequest {
        SelectionRequest {
            cube: self.cube.clone(),
            resolution: self.resolution,
            aoi: self.aoi.clone(),
            layer: self.layer.clone(),
            filter: self.filter.clone(),
            masks: self.masks.clone(),
            mask_values: self.mask_values.clone(),
            all_touched: self.all_touched,
            existing_only: self.existing_only,
            out_dir: self.out_dir.clone(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    treesits_cli::init_logging(&cli.log);
    treesits_gdal::error::log_messages();
    treesits_gdal::config::set_network_defaults();
    treesits_cli::run("aoi-select", || {
        let start = std::time::Instant::now();
        treesits_cli::start_thread_pool(cli.threads)?;
        let plan = SelectionPlan::prepare(&cli.request())?;
        log::info!(
            "AOI: {} features, {} polygons; cube tiles {}x{} px at {} m",
            plan.aoi.features,
            plan.aoi.polygons.len(),
            plan.grid.tile_pixels.0,
            plan.grid.tile_pixels.1,
            plan.grid.resolution
        );
        let s = select(&plan)?;
        let secs = start.elapsed().as_secs_f64();
        log::info!(
            "selected {} tiles, {} pixels ({:.1} km²) into {}; {} tiles dropped with empty masks, {} \
             bounding-box tiles checked; {:.2} s ({:.1} tiles/s)",
            s.rows.len(),
            s.pixels,
            s.pixels as f64 * plan.grid.resolution * plan.grid.resolution / 1e6,
            cli.out_dir.display(),
            s.empty,
            s.candidates,
            secs,
            s.candidates as f64 / secs.max(1e-9)
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
