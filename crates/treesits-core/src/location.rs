//! Where an input or output lives: a local path or an S3 object.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a string is not a location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("'{0}' has no bucket name: expected s3://bucket/key")]
    NoBucket(String),
}

/// A local path or an `s3://bucket/key` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, key: String },
}

impl Location {
    /// Parses a command-line argument. Anything not starting with `s3://` is a local path.
    pub fn parse(s: &str) -> Result<Location, LocationError> {
        match s.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(LocationError::NoBucket(s.to_string()));
                }
                Ok(Location::S3 {
                    bucket: bucket.to_string(),
                    key: key.trim_end_matches('/').to_string(),
                })
            }
            None => Ok(Location::Local(PathBuf::from(s))),
        }
    }

    /// The name GDAL opens: the path itself, or `/vsis3/bucket/key` (GDAL's S3 virtual file system;
    /// credentials and endpoint come from the usual `AWS_*` variables).
    pub fn gdal_path(&self) -> String {
        match self {
            Location::Local(p) => p.to_string_lossy().into_owned(),
            Location::S3 { bucket, key } if key.is_empty() => format!("/vsis3/{bucket}"),
            Location::S3 { bucket, key } => format!("/vsis3/{bucket}/{key}"),
        }
    }

    /// A child location (`dir/name`).
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(p) => Location::Local(p.join(name)),
            Location::S3 { bucket, key } if key.is_empty() => Location::S3 {
                bucket: bucket.clone(),
                key: name.to_string(),
            },
            Location::S3 { bucket, key } => Location::S3 {
                bucket: bucket.clone(),
                key: format!("{key}/{name}"),
            },
        }
    }

    /// A location beside this one (`dir/a.csv` → `dir/name`); `name` may itself be absolute.
    pub fn sibling(&self, name: &str) -> Location {
        match self {
            Location::Local(p) => {
                Location::Local(p.parent().map_or_else(|| PathBuf::from(name), |d| d.join(name)))
            }
            Location::S3 { bucket, key } => Location::S3 {
                bucket: bucket.clone(),
                key: match key.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/{name}"),
                    None => name.to_string(),
                },
            },
        }
    }

    /// The last path component.
    pub fn file_name(&self) -> Option<&str> {
        match self {
            Location::Local(p) => p.file_name().and_then(|n| n.to_str()),
            Location::S3 { key, .. } => key.rsplit('/').next().filter(|n| !n.is_empty()),
        }
    }

    pub fn as_local(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::S3 { .. } => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_map_to_vsis3() {
        let l = Location::parse("s3://cube/germany/X0058_Y0056/").unwrap();
        assert_eq!(
            l,
            Location::S3 {
                bucket: "cube".into(),
                key: "germany/X0058_Y0056".into()
            }
        );
        assert_eq!(l.gdal_path(), "/vsis3/cube/germany/X0058_Y0056");
        assert_eq!(l.file_name(), Some("X0058_Y0056"));
        assert_eq!(
            l.join("a.tif").gdal_path(),
            "/vsis3/cube/germany/X0058_Y0056/a.tif"
        );
        assert_eq!(
            Location::parse("s3://cube").unwrap().join("a.tif").gdal_path(),
            "/vsis3/cube/a.tif"
        );
        assert!(Location::parse("s3:///key").is_err());
        assert_eq!(
            Location::parse("s3://b/run/selection/tiles.csv")
                .unwrap()
                .sibling("X1_Y2.mask.tif")
                .gdal_path(),
            "/vsis3/b/run/selection/X1_Y2.mask.tif"
        );
    }

    #[test]
    fn other_strings_are_local_paths() {
        let l = Location::parse("data/cube").unwrap();
        assert_eq!(l.gdal_path(), "data/cube");
        assert_eq!(l.join("x").as_local(), Some(Path::new("data/cube/x")));
        let csv = Location::parse("sel/tiles.csv").unwrap();
        assert_eq!(csv.sibling("m.tif").as_local(), Some(Path::new("sel/m.tif")));
        let bare = Location::parse("tiles.csv").unwrap();
        assert_eq!(bare.sibling("m.tif").as_local(), Some(Path::new("m.tif")));
    }
}
