//! Directory listings with file sizes and modification times, through GDAL's virtual file systems,
//! so a tile directory lists the same way on a local disk, an NFS mount and `/vsis3/` (where one
//! paginated `ListObjectsV2` request per 1000 files returns the sizes and times too: no request per
//! file).

// The gdal crate lists names only; VSIOpenDir gives the sizes and times of the same listing.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};

use treesits_core::{Location, TileId};

/// One file of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// File name, without the directory.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Modification time, seconds since 1970-01-01 UTC (S3: the object's LastModified).
    pub mtime: i64,
}

/// Why a directory could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot list {path}: no such directory, or not readable with the current credentials")]
pub struct ListError {
    pub path: String,
}

/// The files (not subdirectories) directly in `dir`, sorted by name.
pub fn list_files(dir: &Location) -> Result<Vec<FileEntry>, ListError> {
    let err = || ListError {
        path: dir.to_string(),
    };
    let path = CString::new(dir.gdal_path()).map_err(|_| err())?;
    // SAFETY: `path` is a valid C string for the call; a null options list is allowed.
    let handle = unsafe { gdal_sys::VSIOpenDir(path.as_ptr(), 0, std::ptr::null()) };
    if handle.is_null() {
        return Err(err());
    }
    let mut files = Vec::new();
    loop {
        // SAFETY: `handle` is an open VSIDIR; the entry stays valid until the next call on it.
        let entry = unsafe { gdal_sys::VSIGetNextDirEntry(handle) };
        if entry.is_null() {
            break;
        }
        // SAFETY: non-null entries point to a VSIDIREntry whose pszName is a C string.
        let e = unsafe { &*entry };
        let name = unsafe { CStr::from_ptr(e.pszName) }
            .to_string_lossy()
            .into_owned();
        // S_IFDIR: directories are not files of the tile.
        let is_dir = e.bModeKnown != 0 && (e.nMode & 0o170000) == 0o040000;
        if is_dir || name.ends_with('/') {
            continue;
        }
        files.push(FileEntry {
            name,
            size: if e.bSizeKnown != 0 { e.nSize } else { 0 },
            mtime: if e.bMTimeKnown != 0 { e.nMTime } else { 0 },
        });
    }
    // SAFETY: `handle` is open and not used after this.
    unsafe { gdal_sys::VSICloseDir(handle) };
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// The tile directories (`Xdddd_Ydddd`) present in a cube root (a GDAL path: local or `/vsis3/…`),
/// sorted.
pub fn cube_tiles(cube: &str) -> Result<Vec<TileId>, ListError> {
    let entries = gdal::vsi::read_dir(cube, false).map_err(|_| ListError {
        path: cube.to_string(),
    })?;
    let mut tiles: Vec<TileId> = entries
        .iter()
        .filter_map(|p| p.file_name()?.to_str()?.trim_end_matches('/').parse().ok())
        .collect();
    tiles.sort();
    tiles.dedup();
    Ok(tiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_files_with_sizes_and_times_but_not_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.tif"), vec![0u8; 1234]).unwrap();
        std::fs::write(dir.path().join("a.txt"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let loc = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let files = list_files(&loc).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "b.tif"]);
        assert_eq!(files[1].size, 1234);
        let mtime = std::fs::metadata(dir.path().join("b.tif"))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert_eq!(files[1].mtime, mtime);
        let missing = Location::parse(dir.path().join("nope").to_str().unwrap()).unwrap();
        let e = list_files(&missing).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
