//! Making a tile inventory from a cube: one listing per tile directory (in parallel), the same file
//! selection as `cube-extract` ([`crate::scan::pair_files`], [`crate::scan::select_pairs`]), the
//! masks hashed.

use rayon::prelude::*;
use std::collections::BTreeMap;

use treesits_core::inventory::{
    now_rfc3339, sha256_hex, FileStamp, Inventory, InventoryAcquisition, Selection, TileInventory,
    INVENTORY_FORMAT, INVENTORY_VERSION,
};
use treesits_core::level2::Level2Pair;
use treesits_core::{Date, Sensor, TileId};

use crate::scan::{pair_files, select_pairs, AcquisitionFiles, CubeError};
use treesits_core::Location;
use treesits_gdal::listing::{list_files, FileEntry, ListError};

/// Masks larger than this are not aoi-select masks (a 3000 x 3000 px mask is a few hundred kB).
const MAX_MASK_BYTES: usize = 512 << 20;

/// A tile to inventory, with its mask (none: every pixel).
#[derive(Debug, Clone)]
pub struct TileInput {
    pub tile_id: TileId,
    /// The mask's name as recorded (as `tiles.csv` gives it).
    pub mask_name: Option<String>,
    /// Where the mask is read from.
    pub mask: Option<Location>,
    /// The mask's SHA-256 when it is not read (carried over from a previous inventory).
    pub mask_sha256: Option<String>,
}

/// Why an inventory could not be made.
#[derive(Debug, thiserror::Error)]
pub enum InventoryScanError {
    #[error(transparent)]
    List(#[from] ListError),
    #[error(transparent)]
    Cube(#[from] CubeError),
    #[error("cannot read the mask {path}: {source}")]
    Mask { path: Location, source: std::io::Error },
    #[error("--sensors: {0}")]
    Sensors(#[from] treesits_core::level2::SensorError),
}

/// Lists every tile and records what the selection takes from it. `recipe` and `software` are
/// recorded as given.
pub fn scan_inventory(
    cube: &Location,
    cube_as_given: &str,
    tiles: &[TileInput],
    selection: &Selection,
    recipe: BTreeMap<String, String>,
    software: BTreeMap<String, String>,
) -> Result<Inventory, InventoryScanError> {
    let sensors = Sensor::parse_list(&selection.sensors.join(","))?;
    // One listing per tile directory, all at once, paired into acquisitions.
    let listings: Vec<(Location, Vec<FileEntry>, Vec<Level2Pair>)> = tiles
        .par_iter()
        .map(|t| {
            let dir = cube.join(&t.tile_id.to_string());
            let files = list_files(&dir)?;
            let pairs = pair_files(&dir, &files, &sensors);
            Ok::<_, ListError>((dir, files, pairs))
        })
        .collect::<Result<_, _>>()?;
    // The newest selected acquisition of all tiles anchors a rolling window.
    let newest: Option<Date> = listings
        .iter()
        .flat_map(|(_, _, pairs)| pairs.iter().filter(|p| p.boa.is_some()).map(|p| p.date))
        .max();
    let (start, end) = selection.resolve(newest);
    let (first, last) = (
        start.unwrap_or(Date::new(1, 1, 1).expect("a date")),
        end.unwrap_or(Date::new(9999, 12, 31).expect("a date")),
    );
    let mut records: Vec<TileInventory> = tiles
        .par_iter()
        .zip(listings)
        .map(|(t, (dir, files, pairs))| {
            let acquisitions = select_pairs(&dir, pairs, first, last)?;
            tile_record(t, &dir, &files, &acquisitions)
        })
        .collect::<Result<_, _>>()?;
    records.sort_by_key(|r| r.tile_id);
    Ok(Inventory {
        format: INVENTORY_FORMAT.into(),
        version: INVENTORY_VERSION,
        created: now_rfc3339(),
        software,
        cube: cube_as_given.to_string(),
        selection: selection.clone(),
        window_start: start,
        window_end: end,
        recipe,
        tiles: records,
    })
}

fn tile_record(
    t: &TileInput,
    dir: &Location,
    files: &[FileEntry],
    selected: &[AcquisitionFiles],
) -> Result<TileInventory, InventoryScanError> {
    let stamp = |loc: &Location| -> FileStamp {
        let name = loc.file_name().unwrap_or_default();
        let entry = files
            .binary_search_by(|f| f.name.as_str().cmp(name))
            .map(|i| &files[i])
            .expect("selected files come from the listing");
        FileStamp {
            name: entry.name.clone(),
            size: entry.size,
            mtime: entry.mtime,
        }
    };
    let acquisitions: Vec<InventoryAcquisition> = selected
        .iter()
        .map(|a| InventoryAcquisition {
            date: a.date,
            sensor: a.sensor.name().to_string(),
            boa: stamp(&a.boa),
            qai: stamp(&a.qai),
        })
        .collect();
    if acquisitions.is_empty() {
        log::warn!("{dir}: no acquisitions of the selected sensors in the window");
    }
    let mask_sha256 = match &t.mask {
        None => t.mask_sha256.clone(),
        Some(mask) => {
            let bytes =
                treesits_gdal::vsi_text::read_bytes(&mask.gdal_path(), MAX_MASK_BYTES).map_err(|source| {
                    InventoryScanError::Mask {
                        path: mask.clone(),
                        source,
                    }
                })?;
            Some(sha256_hex(&bytes))
        }
    };
    Ok(TileInventory::new(
        t.tile_id,
        t.mask_name.clone(),
        mask_sha256,
        acquisitions,
    ))
}
