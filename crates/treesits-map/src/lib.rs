//! The map stage: prediction chunks → per-tile class / probability / uncertainty GeoTIFFs on the
//! FORCE grid, VRT and Cloud-Optimised GeoTIFF mosaics with overviews, and a quicklook (`mosaic`).
//!
//! - [`mosaic`]: planning (which chunks make which tile), writing tiles, mosaics;
//! - [`vrt`]: the mosaic VRTs; [`style`]: colour tables and category names of class rasters;
//! - [`smooth`]: spatial smoothing across tile edges (`--smooth`): Bayesian on the class
//!   probabilities, or a majority filter and sieve on the classes;
//! - [`quicklook`]: a PNG overview with a legend ([`bitmap_font`] draws its text).

pub mod bitmap_font;
pub mod mosaic;
pub mod quicklook;
pub mod smooth;
pub mod style;
pub mod vrt;
