//! GDAL's error state and message hook.
//!
//! GDAL reports failures twice: as a return value (which the gdal crate turns into a `GdalError`) and
//! through a process-wide handler that prints to stderr. Our tools keep the first, as the `source` of
//! their own typed errors, and send the second to the log ([`log_messages`]), so a failure is one
//! line naming the input, not GDAL's echo of it too.

// The gdal crate has no safe call to read or reset GDAL's last error message.
#![allow(unsafe_code)]

/// The message of the last GDAL error on this thread, if one happened since the last call; resets it.
///
/// Only for calls that return no `GdalError` of their own (`VSIFOpenL`, `OGR_G_Transform`, …): read
/// it right after the failing call, before any other GDAL call resets it.
pub fn take_last_error() -> Option<String> {
    // SAFETY: these read and reset GDAL's thread-local error state; the message pointer is valid and
    // NUL-terminated until the next GDAL call on this thread, and is copied before that.
    unsafe {
        if gdal_sys::CPLGetLastErrorType() == gdal_sys::CPLErr::CE_None {
            return None;
        }
        let msg = std::ffi::CStr::from_ptr(gdal_sys::CPLGetLastErrorMsg())
            .to_string_lossy()
            .trim()
            .to_string();
        gdal_sys::CPLErrorReset();
        Some(msg)
    }
}

/// Like [`take_last_error`], but only a failure (`CE_Failure`, `CE_Fatal`): warnings (GDAL's
/// "Retrying again in …", say) and debug messages are reset and not returned.
pub fn take_last_failure() -> Option<String> {
    // SAFETY: reads GDAL's thread-local error type; no pointer is kept.
    let kind = unsafe { gdal_sys::CPLGetLastErrorType() };
    let failed = kind == gdal_sys::CPLErr::CE_Failure || kind == gdal_sys::CPLErr::CE_Fatal;
    take_last_error().filter(|_| failed)
}

/// Resets GDAL's last-error state on this thread (before a call whose failure is read with
/// [`take_last_error`]).
pub fn clear_last_error() {
    let _ = take_last_error();
}

/// Sends GDAL's own messages to the log (debug level) instead of stderr: every failure that matters
/// comes back as an error naming the file, so a tool prints one line, not GDAL's echo of it too.
pub fn log_messages() {
    gdal::config::set_error_handler(|class, number, message| {
        log::debug!("GDAL {class:?} {number}: {message}");
    });
}

/// A `GdalError` as the cause inside one of our messages: shown as GDAL's own reason, without the
/// gdal crate's wrapper ("GDAL method 'GDALOpenEx' returned a NULL pointer. Error msg: '…'"), and
/// kept whole as the error's `source()`.
///
/// Boxed: a `GdalError` is large, and errors travel in every `Result`.
#[derive(Debug)]
pub struct GdalCause(pub Box<gdal::errors::GdalError>);

impl GdalCause {
    pub fn new(e: gdal::errors::GdalError) -> GdalCause {
        GdalCause(Box::new(e))
    }

    /// GDAL's reason, or `fallback` when GDAL gave none.
    pub fn reason_or<'a>(&'a self, fallback: &'a str) -> &'a str {
        match reason(&self.0) {
            "" => fallback,
            r => r,
        }
    }
}

/// A message GDAL left in its error state for a call that returns no error of its own (read with
/// [`take_last_error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GdalMessage(pub String);

/// The words of a `GdalError` that say why, without the wrapper.
pub fn reason(e: &gdal::errors::GdalError) -> &str {
    use gdal::errors::GdalError;
    match e {
        GdalError::NullPointer { msg, .. } | GdalError::CplError { msg, .. } => msg.trim(),
        _ => "",
    }
}

impl std::fmt::Display for GdalCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match reason(&self.0) {
            "" => f.write_str("GDAL gave no reason"),
            r => f.write_str(r),
        }
    }
}

impl std::error::Error for GdalCause {
    /// The whole `GdalError`; none when GDAL gave no reason (its text would only say "NULL pointer").
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        (!reason(&self.0).is_empty()).then_some(&*self.0 as _)
    }
}

impl From<gdal::errors::GdalError> for GdalCause {
    fn from(e: gdal::errors::GdalError) -> GdalCause {
        GdalCause::new(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_verbose(path: &str) -> gdal::errors::Result<gdal::Dataset> {
        gdal::Dataset::open_ex(
            path,
            gdal::DatasetOptions {
                open_flags: gdal::GdalOpenFlags::GDAL_OF_VERBOSE_ERROR,
                ..Default::default()
            },
        )
    }

    #[test]
    fn the_last_error_is_read_once() {
        clear_last_error();
        assert_eq!(take_last_error(), None);
        // What a C call that returns no error of its own leaves behind (the gdal crate resets the
        // state after reading it, so its calls leave nothing).
        // SAFETY: CPLError with a constant format string without conversions.
        unsafe {
            gdal_sys::CPLError(gdal_sys::CPLErr::CE_Failure, 1, c"x.tif: broken".as_ptr());
        }
        assert_eq!(take_last_error().as_deref(), Some("x.tif: broken"));
        assert_eq!(take_last_error(), None);
    }

    #[test]
    fn a_cause_shows_gdals_reason_and_keeps_the_error() {
        let e = open_verbose("/nonexistent/treesits/y.tif").unwrap_err();
        let cause = GdalCause::new(e);
        let text = cause.to_string();
        assert!(text.contains("y.tif") && !text.contains("NULL pointer"), "{text}");
        assert!(std::error::Error::source(&cause).is_some());
    }
}
