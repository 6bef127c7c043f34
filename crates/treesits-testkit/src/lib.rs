//! Synthetic FORCE Level-2 data cubes with known tree-species truth.
//!
//! [`generate`] writes a cube (`cube/datacube-definition.prj`, `cube/Xdddd_Ydddd/*_BOA.tif|*_QAI.tif`),
//! the truth rasters, an AOI GeoPackage, a WorldCover-like land-cover raster and a `manifest.json`.
//! [`Scene`] says what any pixel of any acquisition is, for tests. [`cli`] is the one harness the
//! binaries' tests run them with; [`moto`] a local S3 server.

// Band loops index several parallel arrays at once; indices read better there.
#![allow(clippy::needless_range_loop)]

pub mod cli;
pub mod disk;
pub mod fault_proxy;
pub mod generate;
pub mod models;
pub mod moto;
pub mod noise;
pub mod predictions;
pub mod scene;

pub use generate::{generate, Manifest, SynthConfig, SynthError};
pub use scene::{Acquisition, Observation, Scene};

/// The projection of synthetic cubes: ETRS89 / LAEA Europe (EPSG:3035), as the German FORCE cube.
pub const LAEA_WKT: &str = r#"PROJCS["ETRS89 / LAEA Europe",GEOGCS["ETRS89",DATUM["European_Terrestrial_Reference_System_1989",SPHEROID["GRS 1980",6378137,298.257222101,AUTHORITY["EPSG","7019"]],TOWGS84[0,0,0,0,0,0,0],AUTHORITY["EPSG","6258"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AUTHORITY["EPSG","4258"]],PROJECTION["Lambert_Azimuthal_Equal_Area"],PARAMETER["latitude_of_center",52],PARAMETER["longitude_of_center",10],PARAMETER["false_easting",4321000],PARAMETER["false_northing",3210000],UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Northing",NORTH],AXIS["Easting",EAST],AUTHORITY["EPSG","3035"]]"#;
