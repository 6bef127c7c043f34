//! Every file-name and metadata-key contract between the tools, in one place: what one tool writes
//! and another (or the Nextflow pipeline, `workflows/treesits.nf`) finds by name.

use crate::TileId;

/// The cube's grid definition, in the cube root.
pub const CUBE_DEFINITION_FILE: &str = "datacube-definition.prj";
/// The tile list `aoi-select` writes.
pub const TILES_CSV: &str = "tiles.csv";
/// Ending of a tile mask `aoi-select` writes.
pub const MASK_SUFFIX: &str = ".mask.tif";
/// Ending of a time-series chunk (Arrow IPC stream).
pub const CHUNK_SUFFIX: &str = ".arrows";
/// Ending of a prediction chunk (Arrow IPC stream).
pub const PREDICTION_SUFFIX: &str = ".pred.arrows";
/// `cube-inventory check --plan`: the per-tile plan the pipeline reads.
pub const PLAN_CSV: &str = "plan.csv";
/// The columns of [`PLAN_CSV`], in order.
pub const PLAN_COLUMNS: [&str; 8] = [
    "tile_id",
    "status",
    "fingerprint",
    "product_key",
    "acquisitions",
    "first_date",
    "last_date",
    "reason",
];
/// Dataset metadata item of class rasters holding the class table as JSON
/// (`[{"code":0,"name":"spruce","colour":[…]}…]`).
pub const CLASSES_METADATA_KEY: &str = "TREESITS_CLASSES";

/// Dataset metadata items of every map product (per-tile GeoTIFFs, mosaic VRTs and COGs): what the
/// map was made from (`docs/formats.md`, "Map products", *Provenance*).
pub mod provenance_keys {
    /// The model contract's `model_id`.
    pub const MODEL_ID: &str = "TREESITS_MODEL_ID";
    /// SHA-256 (hex) of the ONNX file predict ran.
    pub const MODEL_SHA256: &str = "TREESITS_MODEL_SHA256";
    /// The treesits version that wrote the product.
    pub const VERSION: &str = "TREESITS_VERSION";
    /// `first/last` acquisition date read (`2025-06-03/2026-05-29`).
    pub const DATES: &str = "TREESITS_DATES";
    /// The sensors of the acquisitions read (`SEN2A,SEN2B`).
    pub const SENSORS: &str = "TREESITS_SENSORS";
    /// The QAI screen cube-extract applied.
    pub const QAI_SCREEN: &str = "TREESITS_QAI_SCREEN";
}

/// The STAC Item `mosaic` writes beside its mosaics.
pub const STAC_ITEM_FILE: &str = "mosaic.stac.json";

/// `X0058_Y0056.mask.tif`.
pub fn mask_file_name(tile: TileId) -> String {
    format!("{tile}{MASK_SUFFIX}")
}

/// Whether `name` looks like a mask file of ours (`X…_Y….mask.tif`).
pub fn is_mask_file_name(name: &str) -> bool {
    name.strip_suffix(MASK_SUFFIX)
        .is_some_and(|stem| stem.parse::<TileId>().is_ok())
}

/// `X0058_Y0056_chunk0003.arrows`: chunk `index` (0-based) of a tile.
pub fn chunk_file_name(tile: TileId, index: usize) -> String {
    format!("{tile}_chunk{index:04}{CHUNK_SUFFIX}")
}

/// The chunk index of `name` if it is a time-series chunk file of `tile` (not a prediction chunk).
pub fn chunk_index(name: &str, tile: TileId) -> Option<usize> {
    if name.ends_with(PREDICTION_SUFFIX) {
        return None;
    }
    let rest = name.strip_prefix(&format!("{tile}_chunk"))?;
    let digits = rest.strip_suffix(CHUNK_SUFFIX)?;
    if digits.len() < 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The prediction chunk name for a time-series chunk name: `a_chunk0001.arrows` →
/// `a_chunk0001.pred.arrows`.
pub fn prediction_file_name(chunk_name: &str) -> String {
    let stem = chunk_name.strip_suffix(CHUNK_SUFFIX).unwrap_or(chunk_name);
    format!("{stem}{PREDICTION_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let t: TileId = "X0058_Y0056".parse().unwrap();
        assert_eq!(mask_file_name(t), "X0058_Y0056.mask.tif");
        assert!(is_mask_file_name("X0058_Y0056.mask.tif"));
        assert!(!is_mask_file_name("old.mask.tif"));
        let c = chunk_file_name(t, 3);
        assert_eq!(c, "X0058_Y0056_chunk0003.arrows");
        assert_eq!(chunk_index(&c, t), Some(3));
        assert_eq!(chunk_index("X0058_Y0056_chunk12345.arrows", t), Some(12345));
        assert_eq!(chunk_index("X0058_Y0056_chunk0003.pred.arrows", t), None);
        assert_eq!(chunk_index("X0059_Y0056_chunk0003.arrows", t), None);
        assert_eq!(chunk_index("X0058_Y0056_chunk03.arrows", t), None);
        assert_eq!(prediction_file_name(&c), "X0058_Y0056_chunk0003.pred.arrows");
    }
}
