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
pub enum ListError {
    #[error("cannot list {path}: no such directory, or not readable with the current credentials")]
    Missing { path: String },
    /// A remote listing whose pages did not all arrive, or arrived different from a second
    /// listing of the same directory: using it would silently drop (or misdescribe) files.
    #[error(
        "cannot list {path} completely ({reason}, {attempts} attempt(s)): the object store did not \
         answer every page of the listing; nothing was used from it. Check the network and the \
         endpoint and run again (GDAL_HTTP_TIMEOUT, GDAL_HTTP_MAX_RETRY and GDAL_HTTP_RETRY_DELAY \
         set how long to wait and how often to retry)"
    )]
    Incomplete {
        path: String,
        reason: String,
        attempts: u32,
    },
}

impl ListError {
    /// The directory, as given.
    pub fn path(&self) -> &str {
        match self {
            ListError::Missing { path } | ListError::Incomplete { path, .. } => path,
        }
    }
}

/// The files (not subdirectories) directly in `dir`, sorted by name.
///
/// On an object store (`/vsis3/`, `/vsigs/`, `/vsiaz/`, …) the listing is checked: GDAL (3.6) ends a
/// paginated listing without an error when a continuation page fails (an HTTP 5xx, a dropped or
/// stalled connection, a body it cannot parse), so a tile of more than one page (1000 objects)
/// would quietly lose its later files. [`list_entries`] lists twice, with different page sizes,
/// and accepts only two identical listings with no GDAL failure in between.
pub fn list_files(dir: &Location) -> Result<Vec<FileEntry>, ListError> {
    let mut files: Vec<FileEntry> = list_entries(&dir.gdal_path(), &dir.to_string())?
        .into_iter()
        .filter(|e| !e.is_dir)
        .map(|e| FileEntry {
            name: e.name,
            size: e.size,
            mtime: e.mtime,
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// The tile directories (`Xdddd_Ydddd`) present in a cube root (a GDAL path: local or `/vsis3/…`),
/// sorted; checked as [`list_files`] checks its listings.
pub fn cube_tiles(cube: &str) -> Result<Vec<TileId>, ListError> {
    let mut tiles: Vec<TileId> = list_entries(cube, cube)?
        .iter()
        .filter_map(|e| e.name.parse().ok())
        .collect();
    tiles.sort();
    tiles.dedup();
    Ok(tiles)
}

/// One entry of a directory listing, file or subdirectory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    size: u64,
    mtime: i64,
    is_dir: bool,
}

/// GDAL's page size of object-store listings (`max-keys`): `AWS_MAX_KEYS`, else S3's 1000.
const DEFAULT_PAGE: u32 = 1000;

/// Virtual file systems whose listings are paginated requests to an object store.
const PAGED_PREFIXES: [&str; 6] = [
    "/vsis3/",
    "/vsigs/",
    "/vsiaz/",
    "/vsiadls/",
    "/vsioss/",
    "/vsiswift/",
];

fn is_paged(path: &str) -> bool {
    PAGED_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// A config option as GDAL reads it (thread-local, set, environment), if set and not empty.
fn config(key: &str) -> Option<String> {
    gdal::config::get_config_option(key, "")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// The entries of `path` (a GDAL path; `shown` names it in errors), complete or an error.
fn list_entries(path: &str, shown: &str) -> Result<Vec<Entry>, ListError> {
    if !is_paged(path) {
        return read_dir_once(path, None)
            .map_err(|_| ListError::Missing {
                path: shown.to_string(),
            })?
            .ok_or_else(|| ListError::Missing {
                path: shown.to_string(),
            });
    }
    let page: u32 = config("AWS_MAX_KEYS")
        .and_then(|v| v.trim().parse().ok())
        .filter(|&p| p > 0)
        .unwrap_or(DEFAULT_PAGE);
    // A second page size whose page boundaries fall elsewhere: a listing cut at a failed page
    // then differs from the other one (k * page != k' * other below page * other entries).
    let other = if page > 1 { page - 1 } else { 2 };
    let retries: u32 = config("GDAL_HTTP_MAX_RETRY")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
        .min(10);
    let delay: f64 = config("GDAL_HTTP_RETRY_DELAY")
        .and_then(|v| v.trim().parse().ok())
        .filter(|d: &f64| d.is_finite() && *d >= 0.0)
        .unwrap_or(1.0)
        .min(60.0);
    let attempts = retries + 1;
    let mut reason = String::new();
    for attempt in 1..=attempts {
        if attempt > 1 {
            log::debug!("{shown}: incomplete listing: {reason}");
            log::warn!(
                "{shown}: the listing came back incomplete; listing again (attempt {attempt} of {attempts})"
            );
            std::thread::sleep(std::time::Duration::from_secs_f64(delay * f64::from(attempt - 1)));
            clear_cached(path);
        }
        let first = match read_dir_once(path, None) {
            Ok(Some(entries)) => entries,
            // No such prefix, or the first page failed: GDAL cannot tell which.
            Ok(None) => {
                return Err(ListError::Missing {
                    path: shown.to_string(),
                })
            }
            Err(msg) => {
                reason = msg;
                continue;
            }
        };
        let second = match read_dir_once(path, Some(other)) {
            Ok(Some(entries)) => entries,
            Ok(None) => {
                reason = "a second listing found nothing".to_string();
                continue;
            }
            Err(msg) => {
                reason = msg;
                continue;
            }
        };
        if first == second {
            return Ok(first);
        }
        reason = format!(
            "two listings disagree: {} entries by pages of {page}, {} by pages of {other}",
            first.len(),
            second.len()
        );
        if first.len() == second.len() {
            reason = format!(
                "two listings of {} entries disagree on names or sizes",
                first.len()
            );
        }
    }
    // What the failed listings may have cached (sizes of a damaged page) is not kept.
    clear_cached(path);
    Err(ListError::Incomplete {
        path: shown.to_string(),
        reason,
        attempts,
    })
}

/// Forgets what GDAL's network file systems cached under `path` (file sizes, times, listings).
fn clear_cached(path: &str) {
    if let Ok(c) = CString::new(path) {
        // SAFETY: `c` is a valid C string for the call; GDAL copies what it needs.
        unsafe { gdal_sys::VSICurlPartialClearCache(c.as_ptr()) };
    }
}

/// One pass over `path`'s entries with VSIOpenDir, with pages of `page` objects on object stores
/// (`None`: GDAL's default). `Ok(None)`: GDAL could not open the directory; `Err`: the message of a
/// GDAL failure during the listing.
fn read_dir_once(path: &str, page: Option<u32>) -> Result<Option<Vec<Entry>>, String> {
    let c_path = CString::new(path).map_err(|_| "a path with a NUL byte".to_string())?;
    if let Some(p) = page {
        // Thread-local: other threads listing at the same time keep their page size.
        let _ = gdal::config::set_thread_local_config_option("AWS_MAX_KEYS", &p.to_string());
    }
    crate::error::clear_last_error();
    let entries = read_dir_entries(&c_path);
    let failure = crate::error::take_last_failure();
    if page.is_some() {
        let _ = gdal::config::clear_thread_local_config_option("AWS_MAX_KEYS");
    }
    match failure {
        Some(msg) => Err(format!("GDAL: {msg}")),
        None => Ok(entries),
    }
}

fn read_dir_entries(path: &CStr) -> Option<Vec<Entry>> {
    // SAFETY: `path` is a valid C string for the call; a null options list is allowed.
    let handle = unsafe { gdal_sys::VSIOpenDir(path.as_ptr(), 0, std::ptr::null()) };
    if handle.is_null() {
        return None;
    }
    let mut entries = Vec::new();
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
        // S_IFDIR, or (object stores) a name ending in '/'.
        let is_dir = (e.bModeKnown != 0 && (e.nMode & 0o170000) == 0o040000) || name.ends_with('/');
        entries.push(Entry {
            name: name.trim_end_matches('/').to_string(),
            size: if e.bSizeKnown != 0 { e.nSize } else { 0 },
            mtime: if e.bMTimeKnown != 0 { e.nMTime } else { 0 },
            is_dir,
        });
    }
    // SAFETY: `handle` is open and not used after this.
    unsafe { gdal_sys::VSICloseDir(handle) };
    Some(entries)
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

    #[test]
    fn cube_tiles_are_the_tile_named_entries_and_only_object_stores_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["X0002_Y0001", "X0001_Y0001", "notatile"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("datacube-definition.prj"), b"x").unwrap();
        let tiles = cube_tiles(dir.path().to_str().unwrap()).unwrap();
        let names: Vec<String> = tiles.iter().map(|t| t.to_string()).collect();
        assert_eq!(names, ["X0001_Y0001", "X0002_Y0001"]);
        let e = cube_tiles("/nonexistent/treesits/cube").unwrap_err();
        assert!(matches!(e, ListError::Missing { .. }), "{e}");
        assert_eq!(e.path(), "/nonexistent/treesits/cube");
        assert!(is_paged("/vsis3/cube/germany/X0001_Y0001"));
        assert!(!is_paged("/vsimem/cube") && !is_paged("/data/cube"));
    }
}
