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

/// Counts the failures GDAL reports on this thread while writing, so that a failed write is an error.
///
/// GDAL 3.6 reports a block it could not write (disk full, I/O error) only through its error handler:
/// `GDALClose` and `GDALFlushCache` return nothing, and a dataset closed after failed writes leaves an
/// unreadable file. Start a check before creating a file, do every write and the close on this thread,
/// then [`WriteCheck::finish`]: any `CE_Failure` (or worse) GDAL reported in between is the error.
///
/// The check pushes a handler on GDAL's per-thread handler stack (so GDAL's messages during the write
/// go to the log, at debug level, not to stderr) and pops it when finished or dropped; checks on one
/// thread must end in the reverse order they started (as scopes do).
#[derive(Debug)]
pub struct WriteCheck {
    state: Box<WriteFailures>,
    /// The handler stack is per thread: a check stays on the thread that started it.
    _not_send: std::marker::PhantomData<*const ()>,
    popped: bool,
}

#[derive(Debug, Default)]
struct WriteFailures {
    count: usize,
    first: Option<String>,
}

unsafe extern "C" fn count_failures(
    class: gdal_sys::CPLErr::Type,
    number: gdal_sys::CPLErrorNum,
    message: *const std::os::raw::c_char,
) {
    // SAFETY: GDAL passes a NUL-terminated message valid during the call (or NULL), and the user data
    // pushed with this handler: the `WriteFailures` boxed in a live `WriteCheck` on this thread.
    unsafe {
        let text = if message.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(message)
                .to_string_lossy()
                .trim()
                .to_string()
        };
        log::debug!("GDAL {class:?} {number}: {text}");
        if class == gdal_sys::CPLErr::CE_Failure || class == gdal_sys::CPLErr::CE_Fatal {
            let state = gdal_sys::CPLGetErrorHandlerUserData().cast::<WriteFailures>();
            if let Some(state) = state.as_mut() {
                state.count += 1;
                state.first.get_or_insert(text);
            }
        }
    }
}

impl WriteCheck {
    /// Starts counting GDAL's failures on this thread.
    pub fn start() -> WriteCheck {
        let mut state = Box::<WriteFailures>::default();
        let ptr: *mut WriteFailures = &mut *state;
        // SAFETY: the handler only dereferences `ptr` while it is pushed; the box outlives the push
        // (popped in `finish` or `drop`, before the box is freed) and does not move.
        unsafe { gdal_sys::CPLPushErrorHandlerEx(Some(count_failures), ptr.cast()) };
        WriteCheck {
            state,
            _not_send: std::marker::PhantomData,
            popped: false,
        }
    }

    /// How many failures GDAL reported so far.
    pub fn failures(&self) -> usize {
        self.state.count
    }

    /// The first failure GDAL reported so far.
    pub fn first_failure(&self) -> Option<&str> {
        self.state.first.as_deref()
    }

    /// Stops counting; the first failure GDAL reported, if any, as the error.
    pub fn finish(mut self) -> Result<(), WriteFailed> {
        self.pop();
        match self.state.count {
            0 => Ok(()),
            n => Err(WriteFailed {
                failures: n,
                first: self.state.first.take().unwrap_or_default(),
            }),
        }
    }

    /// [`WriteCheck::finish`] as a `GdalError`, for functions that return GDAL's errors.
    pub fn finish_gdal(self) -> gdal::errors::Result<()> {
        self.finish().map_err(|e| gdal::errors::GdalError::CplError {
            class: gdal_sys::CPLErr::CE_Failure,
            number: 0,
            msg: e.to_string(),
        })
    }

    fn pop(&mut self) {
        if !self.popped {
            self.popped = true;
            // SAFETY: pops the handler `start` pushed on this thread (checks end in reverse order).
            unsafe { gdal_sys::CPLPopErrorHandler() };
        }
    }
}

impl Drop for WriteCheck {
    fn drop(&mut self) {
        self.pop();
    }
}

/// GDAL reported failures during a write: the file is incomplete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{first}{}", if *.failures > 1 { format!(" ({} write failures)", .failures) } else { String::new() })]
pub struct WriteFailed {
    pub failures: usize,
    pub first: String,
}

/// Runs `body` (the writes and the close of one or more files) under a [`WriteCheck`]: an error of its
/// own, or else the first failure GDAL reported.
pub fn checked_write<T>(body: impl FnOnce() -> gdal::errors::Result<T>) -> gdal::errors::Result<T> {
    let check = WriteCheck::start();
    let out = body()?;
    check.finish_gdal()?;
    Ok(out)
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
    fn a_write_check_counts_failures_on_its_thread() {
        let ok = WriteCheck::start();
        assert_eq!(ok.finish(), Ok(()));
        let check = WriteCheck::start();
        // SAFETY: CPLError with constant format strings without conversions.
        unsafe {
            gdal_sys::CPLError(gdal_sys::CPLErr::CE_Warning, 1, c"only a warning".as_ptr());
            gdal_sys::CPLError(
                gdal_sys::CPLErr::CE_Failure,
                1,
                c"_tiffWriteProc:No space left on device".as_ptr(),
            );
            gdal_sys::CPLError(gdal_sys::CPLErr::CE_Failure, 1, c"second".as_ptr());
        }
        assert_eq!(check.failures(), 2);
        let e = check.finish().unwrap_err();
        assert_eq!(
            e.to_string(),
            "_tiffWriteProc:No space left on device (2 write failures)"
        );
        clear_last_error();
        // Popped: a later check starts from nothing.
        assert_eq!(WriteCheck::start().finish(), Ok(()));
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
