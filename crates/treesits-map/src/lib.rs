//! The map stage: prediction chunks → per-tile class / probability / uncertainty GeoTIFFs on the
//! FORCE grid, VRT and Cloud-Optimised GeoTIFF mosaics with overviews, and a quicklook (`mosaic`).
//!
//! - [`mosaic`]: planning (which chunks make which tile), writing tiles, mosaics;
//! - [`vrt`]: the mosaic VRTs; [`style`]: colour tables and category names of class rasters;
//! - [`smooth`]: Bayesian smoothing of the class probabilities across tile edges (`--smooth`);
//! - [`quicklook`]: a PNG overview with a legend ([`bitmap_font`] draws its text).

pub mod bitmap_font;
pub mod mosaic;
pub mod quicklook;
pub mod smooth;
pub mod style;
pub mod vrt;
