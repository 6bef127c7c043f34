//! `aoi-select`'s request checked into a [`SelectionPlan`]: the cube's grid read, the AOI loaded
//! and reprojected, the masks located, before any tile is rasterised.

use std::path::PathBuf;

use treesits_core::grid::{GridError, TileGrid};
use treesits_core::location::LocationError;
use treesits_core::names::CUBE_DEFINITION_FILE;
use treesits_core::value_set::ValueSet;
use treesits_core::Location;
use treesits_gdal::cube_definition::{read_cube_definition, CubeDefinitionError};

use crate::aoi::{Aoi, AoiError, AoiSource, SelectionPlan};

/// What to select, as the command line gives it.
#[derive(Debug, Clone)]
pub struct SelectionRequest {
    /// The cube root, local or `s3://`.
    pub cube: String,
    /// Pixel size of the grid, map units.
    pub resolution: f64,
    /// The AOI vector, local or `s3://`, with its layer and attribute filter.
    pub aoi: String,
    pub layer: Option<String>,
    pub filter: Option<String>,
    /// Value-mask rasters (WorldCover …), local or `s3://`, and the values that mean "process".
    pub masks: Vec<String>,
    pub mask_values: ValueSet,
    pub all_touched: bool,
    pub existing_only: bool,
    pub out_dir: PathBuf,
}

/// Why a request is not a plan. Messages name the flag and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{arg}: {source}")]
    Location {
        arg: &'static str,
        source: LocationError,
    },
    #[error("{0}: is --cube the root of a FORCE data cube?")]
    NoCube(#[source] CubeDefinitionError),
    #[error("{0}: fix or regenerate the cube definition")]
    BadCube(#[source] CubeDefinitionError),
    #[error("--resolution {resolution} does not fit the cube {cube}: {source}")]
    Resolution {
        resolution: f64,
        cube: Location,
        source: GridError,
    },
    #[error("--out-dir {0} is a file: give a directory")]
    OutDirIsFile(PathBuf),
    #[error(transparent)]
    Aoi(#[from] AoiError),
}

fn location(arg: &'static str, s: &str) -> Result<Location, RequestError> {
    Location::parse(s).map_err(|source| RequestError::Location { arg, source })
}

/// Reads the cube's `datacube-definition.prj` and builds the grid at `resolution`.
pub fn cube_grid(cube: &Location, resolution: f64) -> Result<TileGrid, RequestError> {
    let def = read_cube_definition(&cube.join(CUBE_DEFINITION_FILE)).map_err(|e| match e {
        CubeDefinitionError::Read { .. } => RequestError::NoCube(e),
        CubeDefinitionError::Parse { .. } => RequestError::BadCube(e),
    })?;
    def.grid(resolution).map_err(|source| RequestError::Resolution {
        resolution,
        cube: cube.clone(),
        source,
    })
}

impl SelectionPlan {
    /// Checks `req` into a plan: the grid from the cube, the AOI in the cube's CRS.
    pub fn prepare(req: &SelectionRequest) -> Result<SelectionPlan, RequestError> {
        let cube = location("--cube", &req.cube)?;
        let grid = cube_grid(&cube, req.resolution)?;
        if req.out_dir.is_file() {
            return Err(RequestError::OutDirIsFile(req.out_dir.clone()));
        }
        let source = AoiSource {
            arg: "--aoi",
            path: location("--aoi", &req.aoi)?.gdal_path(),
            layer: req.layer.clone(),
            filter: req.filter.clone(),
        };
        let aoi = Aoi::load(&source, &grid.definition.projection_wkt)?;
        let masks = req
            .masks
            .iter()
            .map(|m| location("--mask", m).map(|l| l.gdal_path()))
            .collect::<Result<_, _>>()?;
        Ok(SelectionPlan {
            cube: cube.gdal_path(),
            grid,
            aoi,
            masks,
            mask_values: req.mask_values.clone(),
            all_touched: req.all_touched,
            existing_only: req.existing_only,
            out_dir: req.out_dir.clone(),
        })
    }
}
