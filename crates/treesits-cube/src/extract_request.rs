//! `cube-extract`'s request checked into an [`ExtractPlan`]: dates, sensors, screen, the tile's files
//! and its mask all validated before any chunk is read; and GDAL's block cache bounded to the plan.

use treesits_core::level2::SensorError;
use treesits_core::location::LocationError;
use treesits_core::qai::QaiScreenError;
use treesits_core::{Date, Location, QaiScreen, Sensor};

use crate::extract::ExtractPlan;
use crate::scan::{scan_tile, CubeError, TileSelection};

/// What to extract, as the command line gives it.
#[derive(Debug, Clone)]
pub struct ExtractRequest {
    /// The tile directory, local or `s3://…/Xdddd_Ydddd`.
    pub tile: String,
    /// A Byte mask on the tile's grid (1 = process).
    pub mask: Option<String>,
    pub start: Option<Date>,
    pub end: Option<Date>,
    /// Comma-separated sensors; all must have the same bands.
    pub sensors: String,
    /// The QAI screen (`nodata,cloud,…` or `none`).
    pub screen: String,
    /// Tile rows per chunk; `None`: the files' block height.
    pub chunk_rows: Option<usize>,
    pub max_open_datasets: usize,
    pub zstd_level: i32,
    pub group_bytes: Option<usize>,
}

/// Why a request is not a plan. Messages name the flag.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("empty date range: --start {start} is after --end {end}")]
    EmptyRange { start: Date, end: Date },
    #[error("--sensors: {0}")]
    Sensors(#[source] SensorError),
    #[error(
        "--sensors {list}: {other} has {other_bands} bands but {first} has {first_bands}; extract sensors \
         with the same bands together"
    )]
    MixedBands {
        list: String,
        first: Sensor,
        first_bands: usize,
        other: Sensor,
        other_bands: usize,
    },
    #[error("--screen: {0}")]
    Screen(#[source] QaiScreenError),
    #[error(transparent)]
    Location(#[from] LocationError),
    #[error(transparent)]
    Cube(#[from] CubeError),
}

impl ExtractPlan {
    /// Checks `req` into a plan: the tile is scanned (its files listed and their georeferencing
    /// checked against the cube) and the mask checked against the tile.
    pub fn prepare(req: &ExtractRequest) -> Result<ExtractPlan, RequestError> {
        let start = req.start.unwrap_or(Date::new(1900, 1, 1).expect("valid date"));
        let end = req.end.unwrap_or(Date::new(2999, 12, 31).expect("valid date"));
        if start > end {
            return Err(RequestError::EmptyRange { start, end });
        }
        let sensors = Sensor::parse_list(&req.sensors).map_err(RequestError::Sensors)?;
        let bands = sensors[0].bands();
        if let Some(&other) = sensors.iter().find(|s| s.bands() != bands) {
            return Err(RequestError::MixedBands {
                list: req.sensors.clone(),
                first: sensors[0],
                first_bands: bands.len(),
                other,
                other_bands: other.bands().len(),
            });
        }
        let screen: QaiScreen = req.screen.parse().map_err(RequestError::Screen)?;
        let location = Location::parse(&req.tile)?;
        let selection = TileSelection {
            start,
            end,
            sensors: sensors.clone(),
        };
        let scan = scan_tile(&location, &selection)?;
        scan.check_cube_definition()?;
        let mask = match &req.mask {
            Some(m) => {
                let m = Location::parse(m)?;
                scan.check_mask(&m)?;
                Some(m)
            }
            None => None,
        };
        let chunk_rows = req.chunk_rows.unwrap_or(scan.block.1);
        if !chunk_rows.is_multiple_of(scan.block.1) && chunk_rows < scan.size.1 {
            log::warn!(
                "--chunk-rows {chunk_rows} is not a multiple of the files' block height {}: blocks are read more than once",
                scan.block.1
            );
        }
        Ok(ExtractPlan {
            scan,
            start,
            end,
            sensors,
            screen,
            mask,
            chunk_rows,
            max_open_datasets: req.max_open_datasets,
            zstd_level: req.zstd_level,
            group_bytes: req.group_bytes,
        })
    }

    /// Bounds GDAL's block cache to what the chunks of `threads` workers need, unless the user set
    /// `GDAL_CACHEMAX`.
    pub fn bound_gdal_cache(&self, threads: usize) {
        if std::env::var_os("GDAL_CACHEMAX").is_some() {
            log::debug!("GDAL_CACHEMAX is set: leaving GDAL's block cache limit as it is");
            return;
        }
        let bytes = self.gdal_cache_bytes(threads);
        log::debug!("GDAL block cache limit {} MiB", bytes >> 20);
        treesits_gdal::config::set_cache_max(bytes);
    }
}
