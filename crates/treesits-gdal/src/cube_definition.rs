//! The one reader of a cube's `datacube-definition.prj`, local or on S3 (through GDAL's virtual file
//! systems, so `/vsis3/` uses the same credentials and endpoint as every raster read). Parsing is
//! `treesits_core::CubeDefinition::parse`, which knows both of FORCE's forms.

use std::io;

use treesits_core::grid::PrjError;
use treesits_core::{CubeDefinition, Location};

/// Why a cube definition could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CubeDefinitionError {
    #[error("cannot read {path}: {source}")]
    Read { path: Location, source: io::Error },
    #[error("malformed {path}: {source}")]
    Parse { path: Location, source: PrjError },
}

impl CubeDefinitionError {
    /// The file does not exist (as opposed to existing but being unreadable or malformed).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CubeDefinitionError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Reads and parses the cube definition at `prj`.
pub fn read_cube_definition(prj: &Location) -> Result<CubeDefinition, CubeDefinitionError> {
    let text =
        crate::vsi_text::read_to_string(&prj.gdal_path()).map_err(|source| CubeDefinitionError::Read {
            path: prj.clone(),
            source,
        })?;
    CubeDefinition::parse(&text).map_err(|source| CubeDefinitionError::Parse {
        path: prj.clone(),
        source,
    })
}

/// As [`read_cube_definition`], but a missing file is `Ok(None)`.
pub fn read_cube_definition_if_present(
    prj: &Location,
) -> Result<Option<CubeDefinition>, CubeDefinitionError> {
    match read_cube_definition(prj) {
        Ok(def) => Ok(Some(def)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use treesits_core::grid::PrjForm;

    #[test]
    fn reads_both_forms_and_names_the_file_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let def = CubeDefinition {
            projection_wkt: "PROJCS[\"x\"]".into(),
            origin_geo: (10.0, 52.0),
            origin_map: (4_000_000.0, 3_000_000.0),
            tile_size: (30_000.0, 30_000.0),
            block_size: (30_000.0, 3_000.0),
        };
        for form in [PrjForm::Lines, PrjForm::Tagged] {
            let p = dir.path().join("datacube-definition.prj");
            std::fs::write(&p, def.to_prj(form)).unwrap();
            let loc = Location::Local(p);
            assert_eq!(read_cube_definition(&loc).unwrap(), def);
        }
        let missing = Location::Local(dir.path().join("none.prj"));
        assert!(read_cube_definition_if_present(&missing).unwrap().is_none());
        let bad = dir.path().join("bad.prj");
        std::fs::write(&bad, "PROJECTION = x\n").unwrap();
        let e = read_cube_definition(&Location::Local(bad)).unwrap_err();
        assert!(matches!(e, CubeDefinitionError::Parse { .. }), "{e}");
        assert!(e.to_string().starts_with("malformed "), "{e}");
        assert!(e.to_string().contains("bad.prj"), "{e}");
    }
}
