//! The cube stage: a FORCE Level-2 tile's files → cloud-screened, date-sorted time series.
//!
//! - [`scan`]: which acquisitions of a tile to use, their georeferencing checked against the cube;
//!   [`scan::ChunkReader`] reads a window of every acquisition along the files' own blocks;
//! - [`extract`]: the chunks of a tile (Arrow IPC, `cube-extract`), written atomically;
//!   [`extract_request`]: `cube-extract`'s request checked into a plan;
//! - [`inventory`]: what each tile's products are made from, and what changed since the last run
//!   (`cube-inventory`); [`inventory_check`]: the whole `cube-inventory` run (tiles, selection,
//!   recipe, comparison, plan).
//! - [`samples`]: labelled points and polygons over a cube → one Parquet training table
//!   (`sample-extract`), read with [`scan::ChunkReader`] as `cube-extract` reads.

pub mod extract;
pub mod extract_request;
pub mod inventory;
pub mod inventory_check;
pub mod samples;
pub mod scan;
pub mod split;
