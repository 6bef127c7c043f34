//! Progress of a long run on stderr, shared by the tools.
//!
//! On a terminal it is an `indicatif` bar; elsewhere (pods, CI, a redirected stderr) it is a plain
//! `info` log line about every tenth of the work and at least every `interval` (default 10 s), plus
//! one when the work is complete, so logs stay short and greppable. `--quiet` hides both. The
//! counter is `Sync`: workers call [`Progress::inc`] directly.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A bar redrawn in place (stderr is a terminal).
    Bar,
    /// Periodic `info` log lines.
    Log,
    /// Nothing (`--quiet`).
    Hidden,
}

impl Mode {
    /// The mode for a tool run: hidden when quiet, a bar on a terminal, log lines otherwise.
    pub fn choose(quiet: bool, stderr_is_terminal: bool) -> Mode {
        match (quiet, stderr_is_terminal) {
            (true, _) => Mode::Hidden,
            (false, true) => Mode::Bar,
            (false, false) => Mode::Log,
        }
    }

    /// [`Mode::choose`] for this process's stderr.
    pub fn detect(quiet: bool) -> Mode {
        Mode::choose(quiet, std::io::stderr().is_terminal())
    }
}

/// A counter of `total` units of work (chunks, tiles, batches, …) with a label and a message.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    label: String,
    unit: String,
    total: u64,
    done: AtomicU64,
    started: Instant,
    interval: Duration,
    /// Milliseconds since `started` of the last log line.
    last_log_ms: AtomicU64,
    /// Fraction of the work (in units) logged last, so each tenth is logged once.
    last_step: AtomicU64,
    message: Mutex<String>,
    /// One step at a time (message, count, log line), so parallel workers' lines come out in count
    /// order and each with its own message.
    step: Mutex<()>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts counting `total` units named `unit` ("chunks") for `label` (a tile id, a tool name).
    pub fn new(label: impl Into<String>, total: u64, unit: impl Into<String>, mode: Mode) -> Progress {
        let label = label.into();
        let unit = unit.into();
        let bar = (mode == Mode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template =
                format!("{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed}} (eta {{eta}}) {{msg}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(label.clone());
            bar
        });
        Progress {
            mode,
            label,
            unit,
            total,
            done: AtomicU64::new(0),
            started: Instant::now(),
            interval: Duration::from_secs(10),
            last_log_ms: AtomicU64::new(0),
            last_step: AtomicU64::new(0),
            message: Mutex::new(String::new()),
            step: Mutex::new(()),
            bar,
        }
    }

    /// Log at least this often in [`Mode::Log`] (default 10 s).
    pub fn with_interval(mut self, interval: Duration) -> Progress {
        self.interval = interval;
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Units done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// A short note shown with the count (the bar's message, the end of each log line).
    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        if let Some(bar) = &self.bar {
            bar.set_message(message.clone());
        }
        *self.message.lock().unwrap_or_else(|e| e.into_inner()) = message;
    }

    /// Counts `n` more units done; in [`Mode::Log`] returns the line it logged, if any.
    pub fn inc(&self, n: u64) -> Option<String> {
        let _one_at_a_time = self.step.lock().unwrap_or_else(|e| e.into_inner());
        self.count(n)
    }

    /// Counts `n` more units done with the message `message()` gives (computed in turn with the other
    /// workers' steps, so a line's message always belongs to its count); returns the line logged.
    pub fn inc_with(&self, n: u64, message: impl FnOnce() -> String) -> Option<String> {
        let _one_at_a_time = self.step.lock().unwrap_or_else(|e| e.into_inner());
        self.set_message(message());
        self.count(n)
    }

    fn count(&self, n: u64) -> Option<String> {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        match self.mode {
            Mode::Hidden => None,
            Mode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.inc(n);
                }
                None
            }
            Mode::Log => {
                let ms = self.started.elapsed().as_millis() as u64;
                if !self.claim_log(done, ms) {
                    return None;
                }
                let line = self.line(done, ms);
                log::info!("{line}");
                Some(line)
            }
        }
    }

    /// Whether this increment should log: the first to reach a new tenth of the work, the last unit,
    /// or the first after `interval` without a line. Only one caller wins each.
    fn claim_log(&self, done: u64, ms: u64) -> bool {
        let step = (done.min(self.total) * 10).checked_div(self.total).unwrap_or(10);
        let last_step = self.last_step.fetch_max(step, Ordering::Relaxed);
        let last_ms = self.last_log_ms.load(Ordering::Relaxed);
        let timed = ms.saturating_sub(last_ms) >= self.interval.as_millis() as u64
            && self
                .last_log_ms
                .compare_exchange(last_ms, ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if step > last_step {
            self.last_log_ms.store(ms, Ordering::Relaxed);
            return true;
        }
        timed
    }

    /// The text of a log line: `label: done/total unit (pct%), seconds s[, rate unit/s, eta seconds
    /// s][, message]` (the rate and the time left while work remains and some is done).
    fn line(&self, done: u64, ms: u64) -> String {
        let pct = (done * 100).checked_div(self.total).unwrap_or(100);
        let message = self.message.lock().unwrap_or_else(|e| e.into_inner());
        let seconds = ms as f64 / 1000.0;
        let mut line = format!(
            "{}: {done}/{} {} ({pct}%), {seconds:.1} s",
            self.label, self.total, self.unit
        );
        if done > 0 && done < self.total && seconds > 0.0 {
            let rate = done as f64 / seconds;
            let eta = (self.total - done) as f64 / rate;
            line.push_str(&format!(", {} {}/s, eta {eta:.0} s", round_rate(rate), self.unit));
        }
        if !message.is_empty() {
            line.push_str(", ");
            line.push_str(&message);
        }
        line
    }

    /// Ends the bar (left on screen with its final count); log mode has logged the last unit already.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// A rate for a log line: three significant digits at most, no fraction above 100.
fn round_rate(rate: f64) -> String {
    if rate >= 100.0 {
        format!("{rate:.0}")
    } else if rate >= 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.2}")
    }
}

/// Which of a tile's row windows are done, when parallel workers finish them in any order: the log
/// says how far the tile is done from its first row ("rows 0..768 of 3000 done"), not which rows the
/// worker that happened to finish last had.
#[derive(Debug)]
pub struct RowsDone {
    /// (first row, rows) of each window, in row order.
    windows: Vec<(usize, usize)>,
    total_rows: usize,
    done: Mutex<Vec<bool>>,
}

impl RowsDone {
    /// `windows`: (first row, rows) of each window, in row order; `total_rows`: the tile's rows.
    pub fn new(windows: Vec<(usize, usize)>, total_rows: usize) -> RowsDone {
        let n = windows.len();
        RowsDone {
            windows,
            total_rows,
            done: Mutex::new(vec![false; n]),
        }
    }

    /// Marks window `index` done; returns the words for the progress message.
    pub fn mark(&self, index: usize) -> String {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = done.get_mut(index) {
            *d = true;
        }
        let prefix = done.iter().take_while(|d| **d).count();
        let beyond = done.iter().skip(prefix).filter(|d| **d).count();
        let rows = self.windows.get(prefix).map_or(self.total_rows, |w| w.0);
        let mut words = format!("rows 0..{rows} of {} done", self.total_rows);
        if beyond > 0 {
            words.push_str(&format!(" (and {beyond} later chunks)"));
        }
        words
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A bar dropped on an error path disappears instead of staying half-drawn above the error.
        if let Some(bar) = &self.bar {
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_steps_log_each_count_with_its_own_message() {
        let p = Progress::new("t", 400, "chunks", Mode::Log).with_interval(Duration::ZERO);
        let lines = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        let line = p.inc_with(1, || {
                            let words = format!("after {}", p.done() + 1);
                            // Leave room for another worker's step, as real work between the two does.
                            std::thread::sleep(Duration::from_micros(20));
                            words
                        });
                        lines.lock().unwrap().extend(line);
                    }
                });
            }
        });
        let lines = lines.into_inner().unwrap();
        assert_eq!(p.done(), 400);
        assert!(lines.len() >= 10, "{lines:?}");
        for l in &lines {
            let count: u64 = l["t: ".len()..l.find('/').unwrap()].parse().unwrap();
            assert!(l.ends_with(&format!("after {count}")), "{l}");
        }
    }

    #[test]
    fn mode_follows_quiet_and_terminal() {
        assert_eq!(Mode::choose(true, true), Mode::Hidden);
        assert_eq!(Mode::choose(true, false), Mode::Hidden);
        assert_eq!(Mode::choose(false, true), Mode::Bar);
        assert_eq!(Mode::choose(false, false), Mode::Log);
    }

    #[test]
    fn log_mode_logs_each_tenth_once_and_the_end() {
        let p =
            Progress::new("X0001_Y0002", 20, "chunks", Mode::Log).with_interval(Duration::from_secs(3600));
        let logged: Vec<u64> = (1..=20).filter(|_| p.inc(1).is_some()).collect::<Vec<_>>();
        // Every second unit is a new tenth of 20.
        assert_eq!(logged, vec![2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
        assert_eq!(p.done(), 20);

        let p = Progress::new("tile", 3, "chunks", Mode::Log).with_interval(Duration::from_secs(3600));
        p.set_message("rows 0..120");
        let lines: Vec<String> = (0..3).filter_map(|_| p.inc(1)).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("tile: 1/3 chunks (33%), "), "{}", lines[0]);
        assert!(lines[2].starts_with("tile: 3/3 chunks (100%), "), "{}", lines[2]);
        assert!(lines[2].ends_with(" s, rows 0..120"), "{}", lines[2]);
    }

    #[test]
    fn log_mode_logs_by_time_between_tenths() {
        let p = Progress::new("t", 1000, "tiles", Mode::Log).with_interval(Duration::ZERO);
        // With a zero interval every increment is due: each logs, none twice.
        assert!(p.inc(1).is_some());
        std::thread::sleep(Duration::from_millis(2));
        assert!(p.inc(1).is_some());
        let p = Progress::new("t", 1000, "tiles", Mode::Log).with_interval(Duration::from_secs(3600));
        assert_eq!((0..99).filter(|_| p.inc(1).is_some()).count(), 0);
        assert!(p.inc(1).is_some(), "the 100th of 1000 is a tenth");
    }

    #[test]
    fn hidden_and_bar_modes_log_nothing_but_count() {
        let p = Progress::new("t", 5, "chunks", Mode::Hidden);
        assert!((0..5).all(|_| p.inc(1).is_none()));
        assert_eq!(p.done(), 5);
        let p = Progress::new("t", 5, "chunks", Mode::Bar);
        assert!((0..5).all(|_| p.inc(1).is_none()));
        assert_eq!(p.done(), 5);
        p.finish();
    }

    #[test]
    fn log_lines_carry_rate_and_eta_while_work_remains() {
        let p = Progress::new("predict", 1000, "pixels", Mode::Log).with_interval(Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(20));
        let line = p.inc(250).expect("a tenth");
        let re = line
            .strip_prefix("predict: 250/1000 pixels (25%), ")
            .expect(&line);
        let parts: Vec<&str> = re.split(", ").collect();
        assert!(parts[0].ends_with(" s"), "{line}");
        let rate: f64 = parts[1].strip_suffix(" pixels/s").expect(&line).parse().unwrap();
        assert!(rate > 0.0 && rate <= 250.0 / 0.02, "{line}");
        let eta: f64 = parts[2]
            .strip_prefix("eta ")
            .unwrap()
            .strip_suffix(" s")
            .unwrap()
            .parse()
            .unwrap();
        // Three quarters left at the rate so far: three times the time so far.
        assert!((eta - 750.0 / rate).abs() <= 0.5 + 1e-9, "{line}");
        let last = p.inc(750).unwrap();
        assert!(!last.contains("eta"), "{last}");
    }

    #[test]
    fn rows_done_counts_from_the_first_row_whatever_order_chunks_finish_in() {
        let r = RowsDone::new(vec![(0, 768), (768, 768), (1536, 768), (2304, 696)], 3000);
        assert_eq!(r.mark(1), "rows 0..0 of 3000 done (and 1 later chunks)");
        assert_eq!(r.mark(0), "rows 0..1536 of 3000 done");
        assert_eq!(r.mark(3), "rows 0..1536 of 3000 done (and 1 later chunks)");
        assert_eq!(r.mark(2), "rows 0..3000 of 3000 done");
    }

    #[test]
    fn zero_total_does_not_divide_by_zero() {
        let p = Progress::new("empty", 0, "chunks", Mode::Log).with_interval(Duration::from_secs(3600));
        let line = p.inc(0).expect("the end is logged");
        assert!(line.starts_with("empty: 0/0 chunks (100%)"), "{line}");
    }
}
