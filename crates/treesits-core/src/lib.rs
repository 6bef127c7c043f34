//! FORCE data-cube facts that need no GDAL.
//!
//! - [`grid`]: the `datacube-definition.prj` (both forms), [`TileId`], tile ↔ extent ↔ pixel windows;
//! - [`level2`]: Level-2 file names (`20210615_LEVEL2_SEN2A_BOA.tif`), sensors and their bands;
//! - [`qai`]: the QAI bit field and the [`QaiScreen`] that decides which observations are kept;
//! - [`date`]: calendar dates without a time zone, as FORCE names them;
//! - [`species`]: the tree-species class table of the SITS-NN scheme;
//! - [`tiles_csv`]: the tile list `tiles.csv` that `aoi-select` writes;
//! - [`value_set`]: raster value lists and ranges (`10,20-30`);
//! - [`chunk`], [`prediction`]: the Arrow IPC time-series and prediction chunks;
//! - [`contract`]: the model contract an ONNX model carries; [`onnx_metadata`] reads it from the
//!   model file without ONNX Runtime;
//! - [`location`]: local paths or `s3://bucket/key`, and the GDAL path of each (`/vsis3/…`);
//! - [`names`]: every file-name and metadata-key contract between the tools;
//! - [`inputs`]: input arguments (`-`, files, directories, `*`/`?` patterns) → the streams to read;
//! - [`inventory`]: what a map was made from, per tile, and what changed since;
//! - [`memory`]: the memory budget (`--memory`, the cgroup limit) the tools size their buffers from;
//! - [`atomic`], [`staged_dir`]: outputs written under a temporary name and renamed into place when
//!   complete (std only, so tools without GDAL use them too).

pub mod atomic;
pub mod choice;
pub mod chunk;
pub mod contract;
pub mod date;
pub mod grid;
pub mod inputs;
pub mod inventory;
pub mod level2;
pub mod location;
pub mod memory;
pub mod names;
pub mod onnx_metadata;
pub mod prediction;
pub mod qai;
pub mod species;
pub mod staged_dir;
pub mod tiles_csv;
pub mod value_set;

pub use date::Date;
pub use grid::{CubeDefinition, Extent, PixelWindow, TileGrid, TileId};
pub use level2::{Level2Name, Product, Sensor};
pub use location::Location;
pub use qai::{Qai, QaiScreen};
