//! The only crate that talks to GDAL's C API (`gdal-sys`, `unsafe`): what the `gdal` crate does not
//! wrap, behind safe functions, and the GDAL helpers every stage shares.
//!
//! - [`error`]: GDAL's last-error state and its message hook (to the log, not stderr);
//! - [`config`]: process-wide settings (block cache limit);
//! - [`vsi_text`], [`listing`]: small files and directory listings through GDAL's virtual file
//!   systems (local, `/vsis3/`, `/vsimem/`);
//! - [`cube_definition`]: the one reader of a cube's `datacube-definition.prj`;
//! - [`srs`]: spatial references in (x, y) = (east, north) order;
//! - [`vector`]: opening a vector layer with errors that keep GDAL's reason;
//! - [`geotiff`], [`cog`]: GeoTIFFs in FORCE's layouts, Cloud-Optimised GeoTIFFs, category names.
//!
//! Errors keep the `gdal::errors::GdalError` they come from as their `source`.

pub mod cog;
pub mod config;
pub mod cube_definition;
pub mod error;
pub mod geotiff;
pub mod listing;
pub mod srs;
pub mod vector;
pub mod vsi_text;

pub use geotiff::{write_level2_cog, ForceLayout, GeoTiffSpec, TiffLayout};
