//! FORCE data-cube facts that need no GDAL.
//!
//! - [`grid`]: the `datacube-definition.prj` (both forms), [`TileId`], tile ↔ extent ↔ pixel windows;
//! - [`level2`]: Level-2 file names (`20210615_LEVEL2_SEN2A_BOA.tif`), sensors and their bands;
//! - [`qai`]: the QAI bit field and the [`QaiScreen`] that decides which observations are kept;
//! - [`date`]: calendar dates without a time zone, as FORCE names them;
//! - [`species`]: the tree-species class table of the SITS-NN scheme.

pub mod chunk;
pub mod date;
pub mod grid;
pub mod level2;
pub mod qai;
pub mod species;

pub use date::Date;
pub use grid::{CubeDefinition, Extent, PixelWindow, TileGrid, TileId};
pub use level2::{Level2Name, Product, Sensor};
pub use qai::{Qai, QaiScreen};
