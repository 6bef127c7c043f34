//! `cube-inventory`'s logic: the tiles to inventory (a `tiles.csv`, ids, the previous inventory or
//! the whole cube), the selection and recipe (from the request or the previous inventory), the scan,
//! the comparison with the previous inventory, and the per-tile plan the pipeline reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use rayon::prelude::*;
use treesits_core::atomic::write_bytes;
use treesits_core::inventory::{
    compare, sha256_hex, Inventory, InventoryError, Selection, Span, TileChange, TileStatus,
};
use treesits_core::level2::SensorError;
use treesits_core::location::LocationError;
use treesits_core::names::PLAN_COLUMNS;
use treesits_core::tiles_csv::{parse_tiles_csv, TilesCsvError};
use treesits_core::{Date, Location, Sensor, TileId};
use treesits_gdal::listing::{cube_tiles, list_files, ListError};

use crate::inventory::{scan_inventory, InventoryScanError, TileInput};

/// Inventories of hundreds of tiles with hundreds of acquisitions each run to tens of megabytes.
const MAX_TEXT_BYTES: usize = 1 << 30;
/// Models are hashed whole; larger files are not ONNX models of ours.
const MAX_MODEL_BYTES: usize = 4 << 30;
/// Sensors when none are requested.
pub const DEFAULT_SENSORS: &str = "SEN2A,SEN2B,SEN2C";

/// What to inventory and compare, as the command line gives it.
#[derive(Debug, Clone, Default)]
pub struct InventoryRequest {
    /// The cube root as given (local or `s3://`).
    pub cube: String,
    /// `--previous`: compare with this inventory (check); `None`: scan only.
    pub previous: Option<String>,
    /// `--tiles`: a `tiles.csv` (masks relative to it).
    pub tiles_csv: Option<String>,
    /// `--tile`: tiles by id.
    pub tile_ids: Vec<TileId>,
    pub sensors: Option<String>,
    pub start: Option<Date>,
    pub end: Option<Date>,
    pub window: Option<Span>,
    pub as_of: Option<Date>,
    /// `--model`: hashed into the recipe.
    pub model: Option<String>,
    /// `--param KEY=VALUE`s: part of the recipe.
    pub params: Vec<(String, String)>,
    /// `--reuse DIR`: unchanged tiles whose products are missing there count as changed.
    pub reuse: Option<String>,
    /// `--plan FILE`: the per-tile plan (CSV).
    pub plan: Option<PathBuf>,
    /// Software versions recorded in the inventory.
    pub software: BTreeMap<String, String>,
}

/// What a request found.
#[derive(Debug, Clone)]
pub struct InventoryOutcome {
    pub inventory: Inventory,
    /// One per tile of the inventory (and per tile of the previous one that is gone).
    pub changes: Vec<TileChange>,
}

impl InventoryOutcome {
    /// The tiles that are new, changed or removed.
    pub fn changed(&self) -> Vec<&TileChange> {
        self.changes
            .iter()
            .filter(|c| c.status != TileStatus::Unchanged)
            .collect()
    }
}

/// Why an inventory could not be made or compared. Messages name the flag the input came from.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{arg} {path}: {source}")]
    BadLocation {
        arg: &'static str,
        path: String,
        source: LocationError,
    },
    #[error("{arg} {path}: {source}")]
    Read {
        arg: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{arg} {path}: not UTF-8 text")]
    NotText { arg: &'static str, path: String },
    #[error("--tiles {path}: {source}")]
    TilesCsv { path: String, source: TilesCsvError },
    #[error("--previous {path}: {source}")]
    Previous { path: String, source: InventoryError },
    #[error("--sensors: {0}")]
    Sensors(#[from] SensorError),
    #[error("empty date range: --start {start} is after --end {end}")]
    EmptyRange { start: Date, end: Date },
    #[error("no tiles to inventory: --tiles lists none")]
    NoTiles,
    #[error(
        "--cube {cube}: no such directory, or not readable with the current credentials: give the FORCE \
         cube's root (the folder holding datacube-definition.prj and the X0058_Y0056-like tile folders)"
    )]
    NoCube { cube: String },
    #[error(
        "--cube {cube}: no tile folders (X0058_Y0056-like) in it: give the FORCE cube's root (the folder \
         holding datacube-definition.prj and the tile folders), or name tiles with --tile"
    )]
    NoCubeTiles { cube: String },
    #[error(transparent)]
    CubeListing(#[from] ListError),
    #[error(transparent)]
    Scan(#[from] InventoryScanError),
    #[error("--plan {path}: {source}")]
    WritePlan { path: PathBuf, source: std::io::Error },
}

fn location(arg: &'static str, path: &str) -> Result<Location, CheckError> {
    Location::parse(path).map_err(|source| CheckError::BadLocation {
        arg,
        path: path.to_string(),
        source,
    })
}

/// Reads a text file through GDAL's virtual file systems (local or s3://).
fn read_text(arg: &'static str, path: &str) -> Result<String, CheckError> {
    let loc = location(arg, path)?;
    let bytes = treesits_gdal::vsi_text::read_bytes(&loc.gdal_path(), MAX_TEXT_BYTES).map_err(|source| {
        CheckError::Read {
            arg,
            path: path.to_string(),
            source,
        }
    })?;
    String::from_utf8(bytes).map_err(|_| CheckError::NotText {
        arg,
        path: path.to_string(),
    })
}

/// The previous inventory, `None` when the file does not exist (every tile is new then).
fn read_previous(path: &str) -> Result<Option<Inventory>, CheckError> {
    match read_text("--previous", path) {
        Ok(text) => Inventory::from_json(&text)
            .map(Some)
            .map_err(|source| CheckError::Previous {
                path: path.to_string(),
                source,
            }),
        Err(CheckError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            log::warn!("no previous inventory at {path}: every tile counts as new");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn bare_tile(tile_id: TileId) -> TileInput {
    TileInput {
        tile_id,
        mask: None,
        mask_name: None,
        mask_sha256: None,
    }
}

/// The tiles to inventory, from `--tiles`, `--tile`, the previous inventory or the cube.
fn tile_inputs(
    req: &InventoryRequest,
    cube: &Location,
    previous: Option<&Inventory>,
) -> Result<Vec<TileInput>, CheckError> {
    if let Some(csv) = &req.tiles_csv {
        let text = read_text("--tiles", csv)?;
        let rows = parse_tiles_csv(&text).map_err(|source| CheckError::TilesCsv {
            path: csv.clone(),
            source,
        })?;
        let csv_loc = location("--tiles", csv)?;
        return Ok(rows
            .into_iter()
            .map(|r| TileInput {
                tile_id: r.tile_id,
                mask: Some(csv_loc.sibling(&r.mask)),
                mask_name: Some(r.mask),
                mask_sha256: None,
            })
            .collect());
    }
    if !req.tile_ids.is_empty() {
        let ids: BTreeSet<TileId> = req.tile_ids.iter().copied().collect();
        return Ok(ids.into_iter().map(bare_tile).collect());
    }
    if let Some(prev) = previous {
        // The previous tiles, with their masks as recorded (not read again: a new AOI is a new
        // run, not a cube update).
        return Ok(prev
            .tiles
            .iter()
            .map(|t| TileInput {
                tile_id: t.tile_id,
                mask: None,
                mask_name: t.mask.clone(),
                mask_sha256: t.mask_sha256.clone(),
            })
            .collect());
    }
    Ok(cube_tiles(&cube.gdal_path())?
        .into_iter()
        .map(bare_tile)
        .collect())
}

/// The selection: from the request when any of sensors, start, end, window is given (the rest take
/// their defaults), else the previous inventory's.
fn selection(req: &InventoryRequest, previous: Option<&Inventory>) -> Result<Selection, CheckError> {
    let given = req.sensors.is_some() || req.start.is_some() || req.end.is_some() || req.window.is_some();
    if let (false, Some(p)) = (given, previous) {
        return Ok(p.selection.clone());
    }
    let sensors: Vec<String> = Sensor::parse_list(req.sensors.as_deref().unwrap_or(DEFAULT_SENSORS))?
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    if let (Some(start), Some(end)) = (req.start, req.end) {
        if start > end {
            return Err(CheckError::EmptyRange { start, end });
        }
    }
    Ok(Selection {
        sensors,
        start: req.start,
        end: req.end,
        window: req.window,
        as_of: req.as_of,
    })
}

/// The recipe: the model's SHA-256 and the params, or the previous one when neither is given.
fn recipe(
    req: &InventoryRequest,
    previous: Option<&Inventory>,
) -> Result<BTreeMap<String, String>, CheckError> {
    if req.model.is_none() && req.params.is_empty() {
        return Ok(previous.map(|p| p.recipe.clone()).unwrap_or_default());
    }
    let mut recipe: BTreeMap<String, String> = req.params.iter().cloned().collect();
    if let Some(model) = &req.model {
        let loc = location("--model", model)?;
        let bytes =
            treesits_gdal::vsi_text::read_bytes(&loc.gdal_path(), MAX_MODEL_BYTES).map_err(|source| {
                CheckError::Read {
                    arg: "--model",
                    path: model.clone(),
                    source,
                }
            })?;
        recipe.insert("model_sha256".into(), sha256_hex(&bytes));
    }
    Ok(recipe)
}

/// Unchanged tiles whose products are missing under `reuse` become changed.
fn require_products(
    reuse: &str,
    inventory: &Inventory,
    changes: &mut [TileChange],
) -> Result<(), CheckError> {
    let root = location("--reuse", reuse)?;
    let missing: Vec<bool> = changes
        .par_iter()
        .map(|c| {
            if c.status != TileStatus::Unchanged {
                return Ok(false);
            }
            let tile = inventory.tile(c.tile_id).expect("unchanged tiles are current");
            let dir = root
                .join(&c.tile_id.to_string())
                .join(&tile.product_key(&inventory.recipe));
            // No directory: nothing to reuse. A listing cut short is an error, not "missing":
            // recomputing a tile because a page failed would hide the failure.
            match list_files(&dir) {
                Ok(files) => Ok(files.is_empty()),
                Err(ListError::Missing { .. }) => Ok(true),
                Err(e) => Err(e),
            }
        })
        .collect::<Result<_, ListError>>()?;
    for (c, missing) in changes.iter_mut().zip(missing) {
        if missing {
            c.status = TileStatus::Changed;
            c.products_missing = true;
            log::info!("{}: no products under --reuse {reuse} to reuse", c.tile_id);
        }
    }
    Ok(())
}

/// The per-tile plan: [`PLAN_COLUMNS`], one row per change.
pub fn plan_csv(inventory: &Inventory, changes: &[TileChange]) -> String {
    let mut out = PLAN_COLUMNS.join(",");
    out.push('\n');
    for c in changes {
        let date = |d: Option<Date>| d.map(|d| d.to_string()).unwrap_or_default();
        let (fingerprint, key, n, first, last) = match inventory.tile(c.tile_id) {
            Some(t) => (
                t.fingerprint.clone(),
                t.product_key(&inventory.recipe),
                t.acquisitions.len(),
                date(t.first_date()),
                date(t.last_date()),
            ),
            None => Default::default(),
        };
        out.push_str(&format!(
            "{},{},{fingerprint},{key},{n},{first},{last},{}\n",
            c.tile_id,
            c.status.name(),
            c.reason()
        ));
    }
    out
}

/// Scans the cube and, with a previous inventory, compares; writes the plan when asked.
/// A directory that could not be listed is named as the cube itself when the cube's root is what is
/// missing (a mistyped `--cube`, a tile folder given as the cube, a wrong bucket), with the fix.
fn no_cube_or(e: CheckError, cube: &Location, shown: &str) -> CheckError {
    let missing = matches!(
        &e,
        CheckError::CubeListing(ListError::Missing { .. })
            | CheckError::Scan(InventoryScanError::List(ListError::Missing { .. }))
    );
    if missing && matches!(cube_tiles(&cube.gdal_path()), Err(ListError::Missing { .. })) {
        CheckError::NoCube {
            cube: shown.to_string(),
        }
    } else {
        e
    }
}

pub fn run(req: &InventoryRequest) -> Result<InventoryOutcome, CheckError> {
    let previous = match &req.previous {
        None => None,
        Some(path) => read_previous(path)?,
    };
    let cube = location("--cube", &req.cube)?;
    let tiles = tile_inputs(req, &cube, previous.as_ref()).map_err(|e| no_cube_or(e, &cube, &req.cube))?;
    if tiles.is_empty() {
        return Err(match (&req.tiles_csv, previous.is_some()) {
            (None, false) => CheckError::NoCubeTiles {
                cube: req.cube.clone(),
            },
            _ => CheckError::NoTiles,
        });
    }
    let selection = selection(req, previous.as_ref())?;
    let recipe = recipe(req, previous.as_ref())?;
    let started = std::time::Instant::now();
    let mut inventory = scan_inventory(&cube, &req.cube, &tiles, &selection, recipe, req.software.clone())
        .map_err(|e| no_cube_or(CheckError::Scan(e), &cube, &req.cube))?;
    let files: usize = inventory.tiles.iter().map(|t| 2 * t.acquisitions.len()).sum();
    log::info!(
        "{} tiles, {files} files in the window {} .. {} listed in {:.2} s",
        inventory.tiles.len(),
        inventory.window_start.map_or("(open)".into(), |d| d.to_string()),
        inventory.window_end.map_or("(open)".into(), |d| d.to_string()),
        started.elapsed().as_secs_f64()
    );
    let mut changes = match &previous {
        Some(prev) => compare(prev, &inventory),
        None => inventory
            .tiles
            .iter()
            .map(|t| TileChange::new_tile(t.tile_id))
            .collect(),
    };
    if let Some(reuse) = &req.reuse {
        require_products(reuse, &inventory, &mut changes)?;
    }
    let unchanged: BTreeSet<TileId> = changes
        .iter()
        .filter(|c| c.status == TileStatus::Unchanged)
        .map(|c| c.tile_id)
        .collect();
    inventory.record_makers(previous.as_ref(), &|id| unchanged.contains(&id));
    if let Some(plan) = &req.plan {
        write_bytes(plan, plan_csv(&inventory, &changes).as_bytes()).map_err(|source| {
            CheckError::WritePlan {
                path: plan.clone(),
                source,
            }
        })?;
    }
    Ok(InventoryOutcome { inventory, changes })
}
