//! `cube-extract`'s request checked into an [`ExtractPlan`]: dates, sensors, bands (given, or a
//! model's contract), screen, the tile's files and its mask all validated before any chunk is read;
//! and GDAL's block cache bounded to the plan.

use std::path::{Path, PathBuf};

use treesits_core::contract::{ContractError, ModelContract, METADATA_KEY};
use treesits_core::level2::{parse_band_list, BandError, BandMap, SensorError, COMMON_BANDS};
use treesits_core::location::LocationError;
use treesits_core::memory::MemoryBudget;
use treesits_core::onnx_metadata::{metadata_value, OnnxMetadataError};
use treesits_core::qai::QaiScreenError;
use treesits_core::{Date, Location, QaiScreen, Sensor};

use crate::extract::ExtractPlan;
use crate::scan::{scan_tile_bands, CubeError, TileSelection};

/// The sensors used when neither `--sensors` nor a model's contract names any.
pub const DEFAULT_SENSORS: [Sensor; 3] = Sensor::SENTINEL2;

/// What to extract, as the command line gives it.
#[derive(Debug, Clone)]
pub struct ExtractRequest {
    /// The tile directory, local or `s3://…/Xdddd_Ydddd`.
    pub tile: String,
    /// A Byte mask on the tile's grid (1 = process).
    pub mask: Option<String>,
    pub start: Option<Date>,
    pub end: Option<Date>,
    /// Comma-separated sensors; `None`: the model contract's `sensors`, else [`DEFAULT_SENSORS`].
    /// Without `bands` (or a model) all must have the same bands.
    pub sensors: Option<String>,
    /// Comma-separated band names (FORCE's: `BLUE,GREEN,RED,NIR,SWIR1,SWIR2`), read from each
    /// sensor's own band of that name; `None`: the model's bands, else every band of the sensors.
    pub bands: Option<String>,
    /// A model (ONNX file carrying its contract, or a contract `.json`): its `bands`, and its
    /// `sensors` as the default and the limit of the sensors.
    pub model: Option<PathBuf>,
    /// The QAI screen (`nodata,cloud,…` or `none`).
    pub screen: String,
    /// Tile rows per chunk; `None`: the files' block height.
    pub chunk_rows: Option<usize>,
    pub max_open_datasets: usize,
    pub zstd_level: i32,
    pub group_bytes: Option<usize>,
    /// Most bytes of one record batch instead of what `memory` gives (tests, benchmarks).
    pub batch_bytes: Option<usize>,
    /// What the chunk windows, batches and workers in flight must fit.
    pub memory: MemoryBudget,
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
         with the same bands together, or Landsat and Sentinel-2 together on their common bands with \
         --bands {common}",
        common = COMMON_BANDS.join(",")
    )]
    MixedBands {
        list: String,
        first: Sensor,
        first_bands: usize,
        other: Sensor,
        other_bands: usize,
    },
    #[error("--bands: {0}")]
    Bands(#[source] BandError),
    #[error("--model {}: {source}", path.display())]
    ModelRead { path: PathBuf, source: std::io::Error },
    #[error("--model {}: {source}", path.display())]
    ModelFile {
        path: PathBuf,
        source: OnnxMetadataError,
    },
    #[error(
        "--model {}: the model carries no contract ('{METADATA_KEY}' in its metadata): give its contract \
         as a .json file, or the bands with --bands",
        path.display()
    )]
    NoContract { path: PathBuf },
    #[error("--model {}", path.display())]
    Contract {
        path: PathBuf,
        #[source]
        source: ContractError,
    },
    #[error(
        "--sensors {list}: the model {model} accepts only {accepted} (its contract's 'sensors'), not \
         {sensor}: drop {sensor}",
        accepted = accepted.iter().map(|s| s.name()).collect::<Vec<_>>().join(",")
    )]
    SensorNotAccepted {
        list: String,
        model: String,
        sensor: Sensor,
        accepted: Vec<Sensor>,
    },
    #[error("--screen: {0}")]
    Screen(#[source] QaiScreenError),
    #[error(transparent)]
    Location(#[from] LocationError),
    #[error(transparent)]
    Cube(#[from] CubeError),
}

/// The contract of `--model FILE`: a contract `.json`, or the one an ONNX model carries in its
/// metadata (read without ONNX Runtime).
pub fn read_model_contract(path: &Path) -> Result<ModelContract, RequestError> {
    let read = |source| RequestError::ModelRead {
        path: path.to_path_buf(),
        source,
    };
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let json = if is_json {
        std::fs::read_to_string(path).map_err(read)?
    } else {
        let file = std::fs::File::open(path).map_err(read)?;
        metadata_value(std::io::BufReader::new(file), METADATA_KEY)
            .map_err(|source| RequestError::ModelFile {
                path: path.to_path_buf(),
                source,
            })?
            .ok_or_else(|| RequestError::NoContract {
                path: path.to_path_buf(),
            })?
    };
    ModelContract::from_json(&json).map_err(|source| RequestError::Contract {
        path: path.to_path_buf(),
        source,
    })
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
        let contract = req.model.as_deref().map(read_model_contract).transpose()?;
        let sensors = match (&req.sensors, &contract) {
            (Some(list), _) => Sensor::parse_list(list).map_err(RequestError::Sensors)?,
            (None, Some(c)) if !c.sensors.is_empty() => c.sensors.clone(),
            (None, _) => DEFAULT_SENSORS.to_vec(),
        };
        let list = || sensors.iter().map(|s| s.name()).collect::<Vec<_>>().join(",");
        if let Some(c) = contract.as_ref().filter(|c| !c.sensors.is_empty()) {
            if let Some(&sensor) = sensors.iter().find(|s| !c.sensors.contains(s)) {
                return Err(RequestError::SensorNotAccepted {
                    list: list(),
                    model: c.model_id.clone(),
                    sensor,
                    accepted: c.sensors.clone(),
                });
            }
        }
        let bands = match (&req.bands, &contract) {
            (Some(b), _) => Some(parse_band_list(b).map_err(RequestError::Bands)?),
            (None, Some(c)) => Some(c.bands.clone()),
            (None, None) => None,
        };
        match &bands {
            // Every requested sensor must have every band, whether or not the tile has its files.
            Some(b) => {
                BandMap::new(&sensors, b).map_err(RequestError::Bands)?;
            }
            None => {
                let first = sensors[0].bands();
                if let Some(&other) = sensors.iter().find(|s| s.bands() != first) {
                    return Err(RequestError::MixedBands {
                        list: list(),
                        first: sensors[0],
                        first_bands: first.len(),
                        other,
                        other_bands: other.bands().len(),
                    });
                }
            }
        }
        let screen: QaiScreen = req.screen.parse().map_err(RequestError::Screen)?;
        let location = Location::parse(&req.tile)?;
        let selection = TileSelection {
            start,
            end,
            sensors: sensors.clone(),
        };
        let scan = scan_tile_bands(&location, &selection, bands.as_deref())?;
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
            batch_bytes: req.batch_bytes,
            memory: req.memory,
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
