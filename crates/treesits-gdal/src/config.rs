//! Process-wide GDAL settings.

// The gdal crate has no setter for the block cache limit.
#![allow(unsafe_code)]

/// Sets GDAL's block cache limit for this process (all threads share one cache).
pub fn set_cache_max(bytes: usize) {
    // SAFETY: a plain setter of a process-wide limit; GDAL flushes blocks above it as needed.
    unsafe { gdal_sys::GDALSetCacheMax64(bytes as i64) };
}

/// GDAL's network settings (`/vsis3/` and the other network file systems) that this suite sets
/// unless the user did: without them, GDAL 3.6 waits for ever on a stalled response and never
/// retries. Documented in docs/reliability.md ("S3").
pub const NETWORK_DEFAULTS: [(&str, &str); 6] = [
    // Seconds to connect.
    ("GDAL_HTTP_CONNECTTIMEOUT", "30"),
    // Seconds one request may take in all (a range read of a few MB included).
    ("GDAL_HTTP_TIMEOUT", "300"),
    // A transfer slower than 1 byte/s for 60 s is a stall: abort it (then retried).
    ("GDAL_HTTP_LOW_SPEED_LIMIT", "1"),
    ("GDAL_HTTP_LOW_SPEED_TIME", "60"),
    // Retries of a failed request (429, 5xx, dropped connection), and of a listing found
    // incomplete (treesits_gdal::listing); the delay grows with each.
    ("GDAL_HTTP_MAX_RETRY", "5"),
    ("GDAL_HTTP_RETRY_DELAY", "1"),
];

/// Sets each of [`NETWORK_DEFAULTS`] the user has not set (neither in the environment nor as a
/// GDAL config option); what the user set is left as it is. Called once by every GDAL tool's
/// `main`, before any GDAL call.
pub fn set_network_defaults() {
    for (key, value) in NETWORK_DEFAULTS {
        let env_set = std::env::var_os(key).is_some_and(|v| !v.is_empty());
        let gdal_set = gdal::config::get_config_option(key, "").is_ok_and(|v| !v.is_empty());
        if env_set || gdal_set {
            log::debug!("{key} is set: leaving it as it is");
            continue;
        }
        if let Err(e) = gdal::config::set_config_option(key, value) {
            log::warn!("cannot set {key}={value}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_defaults_fill_only_what_is_unset() {
        // A process-wide setting: one test does all of it, with keys no other test reads.
        std::env::set_var("GDAL_HTTP_TIMEOUT", "7");
        gdal::config::clear_config_option("GDAL_HTTP_MAX_RETRY").unwrap();
        std::env::remove_var("GDAL_HTTP_MAX_RETRY");
        set_network_defaults();
        let get = |k: &str| gdal::config::get_config_option(k, "").unwrap();
        assert_eq!(get("GDAL_HTTP_TIMEOUT"), "7");
        assert_eq!(get("GDAL_HTTP_MAX_RETRY"), "5");
        assert_eq!(get("GDAL_HTTP_CONNECTTIMEOUT"), "30");
        assert_eq!(get("GDAL_HTTP_LOW_SPEED_TIME"), "60");
        std::env::remove_var("GDAL_HTTP_TIMEOUT");
        for (k, _) in NETWORK_DEFAULTS {
            gdal::config::clear_config_option(k).unwrap();
        }
    }
}
