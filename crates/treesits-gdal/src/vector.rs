//! Opening vector datasets and choosing their layer, with errors that keep GDAL's reason.

use std::path::Path;

use gdal::vector::{Layer, LayerAccess};
use gdal::{Dataset, DatasetOptions, GdalOpenFlags};

use crate::error::GdalCause;

/// Why a dataset could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A local path that does not exist.
    #[error("no such file")]
    Missing,
    /// GDAL's reason (an S3 error, an unknown format, a corrupt file, …), or the fallback when GDAL
    /// gave none. The message already shows the reason, so the `GdalError` is kept as data, not
    /// chained as a source (which would print GDAL's wrapper text after the fallback).
    #[error("{}", .0.reason_or(.1))]
    Gdal(GdalCause, &'static str),
}

/// Opens `path` (local or `/vsi…`) read-only with `flags` (`GDAL_OF_VECTOR`, `GDAL_OF_RASTER`, …).
/// `unknown` names the failure when GDAL gives no reason (e.g. "not a vector format OGR recognises").
pub fn open(path: &str, flags: GdalOpenFlags, unknown: &'static str) -> Result<Dataset, OpenError> {
    Dataset::open_ex(
        path,
        DatasetOptions {
            // Without VERBOSE_ERROR, GDALOpenEx fails silently: no reason (an S3 403, a timeout).
            open_flags: flags | GdalOpenFlags::GDAL_OF_READONLY | GdalOpenFlags::GDAL_OF_VERBOSE_ERROR,
            ..Default::default()
        },
    )
    .map_err(|e| {
        if !path.starts_with("/vsi") && !Path::new(path).exists() {
            OpenError::Missing
        } else {
            OpenError::Gdal(GdalCause::new(e), unknown)
        }
    })
}

/// Why no layer could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("has no layer named '{layer}': its layers are {available}")]
    NoSuchLayer { layer: String, available: String },
    #[error("has {count} layers ({available}): choose one with --layer")]
    Ambiguous { count: usize, available: String },
    #[error("has no layers")]
    NoLayers,
    #[error("cannot read its layer: {0}")]
    Unreadable(#[source] GdalCause),
}

/// The layer called `name`, or the only layer when `name` is `None`.
pub fn choose_layer<'a>(ds: &'a Dataset, name: Option<&str>) -> Result<Layer<'a>, LayerError> {
    let names: Vec<String> = ds.layers().map(|l| l.name()).collect();
    match name {
        Some(name) => ds.layer_by_name(name).map_err(|_| LayerError::NoSuchLayer {
            layer: name.to_string(),
            available: names.join(", "),
        }),
        None => match names.len() {
            0 => Err(LayerError::NoLayers),
            1 => ds.layer(0).map_err(|e| LayerError::Unreadable(GdalCause::new(e))),
            count => Err(LayerError::Ambiguous {
                count,
                available: names.join(", "),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_local_files_and_unknown_formats_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.gpkg");
        let e = open(
            missing.to_str().unwrap(),
            GdalOpenFlags::GDAL_OF_VECTOR,
            "unknown",
        )
        .unwrap_err();
        assert!(matches!(e, OpenError::Missing), "{e}");
        let junk = dir.path().join("junk.gpkg");
        std::fs::write(&junk, b"not a vector").unwrap();
        let e = open(
            junk.to_str().unwrap(),
            GdalOpenFlags::GDAL_OF_VECTOR,
            "not a vector format",
        )
        .unwrap_err();
        assert!(matches!(e, OpenError::Gdal(..)), "{e}");
    }
}
