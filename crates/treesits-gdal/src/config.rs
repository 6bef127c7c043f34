//! Process-wide GDAL settings.

// The gdal crate has no setter for the block cache limit.
#![allow(unsafe_code)]

/// Sets GDAL's block cache limit for this process (all threads share one cache).
pub fn set_cache_max(bytes: usize) {
    // SAFETY: a plain setter of a process-wide limit; GDAL flushes blocks above it as needed.
    unsafe { gdal_sys::GDALSetCacheMax64(bytes as i64) };
}
