//! Small text files (a cube's `datacube-definition.prj`) read through GDAL's virtual file systems,
//! so `/vsis3/…` works with the same credentials and endpoint settings as every raster read.

// The gdal crate has no safe call to read a file's bytes or GDAL's last error message.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;

/// Files larger than this are not text inputs of ours.
const MAX_BYTES: usize = 16 << 20;

/// Reads a whole file of at most `max_bytes` from any GDAL path (local, `/vsis3/`, `/vsimem/`, …).
/// A file that does not exist is [`io::ErrorKind::NotFound`]; a file that exists but cannot be read
/// (S3 access denied, a network error) is another kind, with GDAL's message.
pub fn read_bytes(path: &str, max_bytes: usize) -> io::Result<Vec<u8>> {
    let c_path =
        CString::new(path).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    crate::error::take_last_error();
    // SAFETY: both strings are valid NUL-terminated C strings that outlive the call.
    let fp = unsafe { gdal_sys::VSIFOpenL(c_path.as_ptr(), c"rb".as_ptr()) };
    if fp.is_null() {
        let gdal = crate::error::take_last_error().unwrap_or_default();
        let missing = gdal.is_empty() || gdal.contains("404") || gdal.contains("No such file");
        return Err(if missing {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{path}: no such file or not readable"),
            )
        } else {
            io::Error::other(format!("{path}: {gdal}"))
        });
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes, `fp` is an open handle.
        let n = unsafe { gdal_sys::VSIFReadL(buf.as_mut_ptr().cast(), 1, buf.len(), fp) };
        out.extend_from_slice(&buf[..n.min(buf.len())]);
        if n < buf.len() || out.len() > max_bytes {
            break;
        }
    }
    // SAFETY: `fp` is open and not used after this.
    unsafe { gdal_sys::VSIFCloseL(fp) };
    if out.len() > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: larger than {max_bytes} bytes"),
        ));
    }
    Ok(out)
}

/// Reads a whole UTF-8 file from any GDAL path (local, `/vsis3/`, `/vsimem/`, …).
pub fn read_to_string(path: &str) -> io::Result<String> {
    let out = read_bytes(path, MAX_BYTES)?;
    String::from_utf8(out)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: not UTF-8 text")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_local_and_in_memory_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.prj");
        let text = "PROJECTION = x\n".repeat(10_000);
        std::fs::write(&p, &text).unwrap();
        assert_eq!(read_to_string(p.to_str().unwrap()).unwrap(), text);
        gdal::vsi::create_mem_file("/vsimem/vsi_text.prj", b"ORIGIN_MAP_X = 1\n".to_vec()).unwrap();
        assert_eq!(
            read_to_string("/vsimem/vsi_text.prj").unwrap(),
            "ORIGIN_MAP_X = 1\n"
        );
        let e = read_to_string(dir.path().join("missing").to_str().unwrap()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
