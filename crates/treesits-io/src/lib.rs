//! GDAL-backed I/O shared by the treesits tools.
//!
//! - [`location`]: local paths or `s3://bucket/key`, mapped to what GDAL opens (`/vsis3/…`);
//! - [`atomic`]: outputs written under a temporary name and renamed into place when complete;
//! - [`geotiff`]: GeoTIFF creation in FORCE's two layouts (strips + LZW, tiles + ZSTD);
//! - [`mosaic`]: map products from prediction chunks ([`vrt`] mosaics, [`cog`]s, the [`quicklook`]).

pub mod aoi;
pub mod assess;
pub mod bitmap_font;
pub mod cog;
pub mod cube;
pub mod extract;
pub mod geotiff;
pub mod inventory;
pub mod listing;
pub mod location;
pub mod mosaic;
pub mod quicklook;
pub mod value_mask;
pub mod vrt;
pub mod vsi_text;

// Std-only, so they live in treesits-core; re-exported under their old paths.
pub use atomic::AtomicPath;
pub use geotiff::{GeoTiffSpec, TiffLayout};
pub use location::Location;
pub use treesits_core::{atomic, staged_dir};
