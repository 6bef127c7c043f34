//! Command-line plumbing shared by every treesits binary.
//!
//! - stdout carries data only; logs go to stderr ([`init_logging`]).
//! - `main` returns [`ExitCode`] through [`run`]: errors become one line on stderr, a broken pipe
//!   (`tool | head`) is success.
//! - [`default_threads`] respects cgroup CPU limits, so pods do not oversubscribe their nodes.
//! - [`progress`]: a bar on a terminal, periodic log lines elsewhere.
//! - [`allocator`]: [`run`] first makes the C allocator return large freed buffers to the system, so
//!   that a tool's resident memory is what its memory budget planned.

pub mod allocator;
pub mod progress;

use std::io::Write;
use std::process::ExitCode;

/// Exit status for success.
pub const EXIT_OK: u8 = 0;
/// Exit status for any failure with a message (bad input, I/O error, …).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for command-line usage errors (clap's own).
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a check that found nothing to do (`cube-inventory check`: no tile changed).
pub const EXIT_UNCHANGED: u8 = 3;

/// Logging options every tool takes.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Print only warnings and errors on stderr.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// More detail on stderr (repeat for debug output).
    #[arg(long, short = 'v', action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// Sets up logging on stderr. `RUST_LOG` overrides the level chosen by the flags.
pub fn init_logging(args: &LogArgs) {
    let level = if args.quiet {
        "warn"
    } else {
        match args.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let env = env_logger::Env::default().default_filter_or(level);
    let _ = env_logger::Builder::from_env(env)
        .format(|buf, record| {
            writeln!(
                buf,
                "[{} {}] {}",
                buf.timestamp_seconds(),
                record.level(),
                record.args()
            )
        })
        .target(env_logger::Target::Stderr)
        .try_init();
}

/// How many threads per usable CPU `--threads` may ask for: more only adds switching and memory
/// (each worker holds its own GDAL handles and buffers), and `--threads 100000` would run for minutes
/// just starting them.
pub const MAX_THREADS_PER_CPU: usize = 4;

/// `requested` threads, capped at [`MAX_THREADS_PER_CPU`] × `cpus` (at least 1); a capped request is
/// said once, as a warning.
pub fn cap_threads(requested: usize, cpus: usize) -> usize {
    let cap = MAX_THREADS_PER_CPU * cpus.max(1);
    if requested > cap {
        log::warn!(
            "--threads {requested} is more than {MAX_THREADS_PER_CPU} per CPU ({} usable): using {cap}",
            cpus.max(1)
        );
        cap
    } else {
        requested.max(1)
    }
}

/// Starts rayon's global thread pool with `requested` threads (default: [`default_threads`]; capped
/// by [`cap_threads`]) and returns how many it has. Every tool calls this once, before any parallel
/// work.
pub fn start_thread_pool(requested: Option<usize>) -> anyhow::Result<usize> {
    let threads = match requested {
        Some(n) => cap_threads(n, default_threads()),
        None => default_threads(),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| anyhow::anyhow!("starting {threads} threads: {e}"))?;
    Ok(threads)
}

/// The number of CPUs this process may use: the cgroup quota when there is one, else the machine's.
pub fn default_threads() -> usize {
    let machine = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    cgroup_cpus().map_or(machine, |c| c.min(machine)).max(1)
}

fn cgroup_cpus() -> Option<usize> {
    // cgroup v2: "max 100000" or "200000 100000".
    let text = std::fs::read_to_string("/sys/fs/cgroup/cpu.max").ok()?;
    parse_cpu_max(&text)
}

fn parse_cpu_max(text: &str) -> Option<usize> {
    let mut it = text.split_whitespace();
    let quota: f64 = it.next()?.parse().ok()?;
    let period: f64 = it.next()?.parse().ok()?;
    (period > 0.0).then(|| (quota / period).ceil() as usize)
}

/// Runs a tool's body, turning its error into one line on stderr and an exit status.
/// A broken pipe on stdout counts as success, as it does for `grep | head`.
pub fn run(tool: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    run_status(tool, || body().map(|()| EXIT_OK))
}

/// [`run`] for a body that chooses its own success status (such as [`EXIT_UNCHANGED`]).
pub fn run_status(tool: &str, body: impl FnOnce() -> anyhow::Result<u8>) -> ExitCode {
    allocator::return_large_buffers();
    match body() {
        Ok(status) => ExitCode::from(status),
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("{tool}: error: {}", one_line(&e));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// An error and its causes as one line, `outer: inner: …`. A cause already said by the text before it
/// is left out, and so is a cause that only restates the one before it in more words (a typed error
/// that shows GDAL's reason keeps the whole `GdalError` as its source, whose text wraps that reason).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.trim();
        let restates = !previous.is_empty() && text.contains(previous.as_str());
        if !text.is_empty() && !line.contains(text) && !restates {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(text);
        }
        previous = text.to_string();
    }
    line
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open x.gpkg ({0}): give a vector file")]
    struct Outer(#[source] Reason);
    #[derive(Debug, thiserror::Error)]
    #[error("HTTP 403")]
    struct Reason(#[source] Wrapper);
    #[derive(Debug, thiserror::Error)]
    #[error("GDAL method 'GDALOpenEx' returned a NULL pointer. Error msg: 'HTTP 403'")]
    struct Wrapper;

    #[test]
    fn causes_already_said_are_not_repeated() {
        let e = anyhow::Error::new(Outer(Reason(Wrapper)));
        assert_eq!(one_line(&e), "cannot open x.gpkg (HTTP 403): give a vector file");
        let e = anyhow::Error::new(std::io::Error::other("disk full")).context("writing a.tif");
        assert_eq!(one_line(&e), "writing a.tif: disk full");
    }

    #[test]
    fn cpu_max_is_read_as_quota_over_period() {
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("150000 100000"), Some(2));
        assert_eq!(parse_cpu_max("max 100000"), None);
        assert!(default_threads() >= 1);
    }

    #[test]
    fn threads_are_capped_at_a_multiple_of_the_cpus() {
        assert_eq!(cap_threads(100_000, 2), 2 * MAX_THREADS_PER_CPU);
        assert_eq!(cap_threads(8, 2), 8);
        assert_eq!(cap_threads(3, 2), 3);
        assert_eq!(cap_threads(0, 2), 1);
        assert_eq!(cap_threads(9, 0), MAX_THREADS_PER_CPU);
    }

    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let e = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).context("writing");
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
