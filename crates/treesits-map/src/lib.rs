//! The map stage: prediction chunks → per-tile class / probability / uncertainty GeoTIFFs on the
//! FORCE grid, VRT and Cloud-Optimised GeoTIFF mosaics with overviews, and a quicklook (`mosaic`).
//!
//! - [`mosaic`]: planning (which chunks make which tile), writing tiles, mosaics;
//! - [`vrt`]: the mosaic VRTs; [`style`]: colour tables and category names of class rasters;
//! - [`smooth`]: spatial smoothing across tile edges (`--smooth`): Bayesian on the class
//!   probabilities, or a majority filter and sieve on the classes;
//! - [`provenance`]: what every product was made from; [`stac`]: the STAC Item of a run;
//! - [`quicklook`]: a PNG overview with a title, legend and scale bar.

pub mod mosaic;
pub mod provenance;
pub mod quicklook;
pub mod smooth;
pub mod stac;
pub mod style;
pub mod vrt;
