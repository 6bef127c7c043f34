//! The selection stage: AOI polygons (and optional value masks such as WorldCover) onto the FORCE
//! grid → the tiles to process and one Byte pixel mask per tile (`aoi-select`).
//!
//! - [`aoi`]: polygons from any OGR vector, reprojected onto the cube, rasterised per tile;
//! - [`request`]: `aoi-select`'s request checked into a [`SelectionPlan`];
//! - [`value_mask`]: rasters whose values say which pixels to keep, resampled onto the cube grid.

pub mod aoi;
pub mod request;
pub mod value_mask;

pub use aoi::{select, Aoi, AoiError, AoiSource, Selection, SelectionPlan};
