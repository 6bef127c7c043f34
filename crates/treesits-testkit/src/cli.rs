//! The one CLI test harness: run a tool, read its output, assert how it ended, compare text with a
//! committed snapshot.
//!
//! ```ignore
//! const TOOL: Tool = Tool::new("mosaic", env!("CARGO_BIN_EXE_mosaic"));
//! let out = TOOL.run(&["--input", "chunks", "--out-dir", "map"]);
//! TOOL.fails_with(&out, "no prediction chunks");
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A binary under test.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// Its name, as it prefixes its error lines (`mosaic: error: …`).
    pub name: &'static str,
    /// Its executable (`env!("CARGO_BIN_EXE_<name>")`).
    pub bin: &'static str,
}

impl Tool {
    pub const fn new(name: &'static str, bin: &'static str) -> Tool {
        Tool { name, bin }
    }

    /// Another binary of the workspace, next to this one (`cube-extract` beside `predict`); built
    /// with cargo first (in the same profile) when a test run limited to one package lacks it.
    pub fn sibling(&self, package: &str) -> PathBuf {
        let path = Path::new(self.bin).with_file_name(format!("{package}{}", std::env::consts::EXE_SUFFIX));
        if !path.exists() {
            let release = Path::new(self.bin)
                .parent()
                .is_some_and(|p| p.ends_with("release"));
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "--quiet", "-p", package]);
            if release {
                build.arg("--release");
            }
            let ok = build.status().is_ok_and(|s| s.success());
            assert!(ok && path.exists(), "building {package} failed");
        }
        path
    }

    /// A command for the tool, to add environment or a working directory before running it.
    pub fn command(&self) -> Command {
        Command::new(self.bin)
    }

    /// Runs the tool with `args` and no stdin.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin))
    }

    /// Runs the tool with `args`, feeding `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin));
        let mut stdin = child.stdin.take().expect("piped stdin");
        // The tool may stop reading early (an error): a broken pipe here is its answer, not ours.
        let _ = stdin.write_all(input);
        drop(stdin);
        child.wait_with_output().expect("the tool ran")
    }

    /// Panics with the tool's stderr unless it succeeded.
    pub fn ok(&self, out: &Output) {
        assert!(out.status.success(), "{} failed: {}", self.name, stderr(out));
    }

    /// Asserts exit status 1, exactly one line `<tool>: error: …` on stderr that contains `want`,
    /// and nothing on stdout.
    pub fn fails_with(&self, out: &Output, want: &str) {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", self.name);
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "one error line expected: {err}");
        let prefix = format!("{}: error: ", self.name);
        assert!(lines[0].starts_with(&prefix), "{err}");
        assert!(lines[0].contains(want), "wanted '{want}' in: {}", lines[0]);
        assert!(out.stdout.is_empty(), "stdout must stay empty on error");
    }

    /// The `--help` text (what `tool --help` prints), for [`assert_snapshot`].
    pub fn help(&self, subcommand: &[&str]) -> String {
        let mut args: Vec<&str> = subcommand.to_vec();
        args.push("--help");
        // clap wraps help to the terminal; a fixed width makes the text the same everywhere.
        let out = self
            .command()
            .args(&args)
            .env("COLUMNS", "100")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin));
        self.ok(&out);
        stdout(&out)
    }
}

/// The tool's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The tool's stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The names in `dir`, hidden ones too, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Compares `text` with the committed snapshot `<package>/tests/snapshots/<name>.txt`, so a changed
/// interface (help text, report layout) shows up in review as a changed file. With
/// `UPDATE_SNAPSHOTS=1` the snapshot is (re)written instead; a missing snapshot is an error
/// otherwise, so CI never passes on a snapshot nobody looked at.
///
/// `manifest_dir` is `env!("CARGO_MANIFEST_DIR")` of the test's package.
pub fn assert_snapshot(manifest_dir: &str, name: &str, text: &str) {
    let path: PathBuf = Path::new(manifest_dir)
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("a parent")).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}: run the test with UPDATE_SNAPSHOTS=1, read the file, commit it",
            path.display()
        )
    });
    if want != text {
        let first = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| want.lines().count().min(text.lines().count()));
        panic!(
            "{} differs from the snapshot {} at line {}:\n  snapshot: {:?}\n  now:      {:?}\n\
             (if the change is intended: UPDATE_SNAPSHOTS=1 cargo test, then review and commit the file)",
            name,
            path.display(),
            first + 1,
            want.lines().nth(first).unwrap_or(""),
            text.lines().nth(first).unwrap_or("")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_pass_when_equal_and_fail_when_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        std::fs::create_dir_all(dir.path().join("tests/snapshots")).unwrap();
        std::fs::write(dir.path().join("tests/snapshots/a.txt"), "one\ntwo\n").unwrap();
        assert_snapshot(root, "a", "one\ntwo\n");
        let r = std::panic::catch_unwind(|| assert_snapshot(root, "a", "one\nthree\n"));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains("at line 2") && msg.contains("three"), "{msg}");
        let r = std::panic::catch_unwind(|| assert_snapshot(root, "missing", "x"));
        assert!(r.is_err());
    }
}
