//! Atomic outputs: write under a hidden temporary name in the same directory, rename when complete.
//! A killed task leaves at most a `.name.partial-PID…` file, never one that looks complete.

use std::io;
use std::path::{Path, PathBuf};

/// A file being written. Dropped without [`AtomicPath::commit`], the temporary file is removed.
#[derive(Debug)]
pub struct AtomicPath {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicPath {
    /// Plans an output at `target`. The temporary name keeps the extension, so drivers that look at it
    /// still see `.tif`, `.gpkg`, …
    pub fn new(target: impl AsRef<Path>) -> AtomicPath {
        let target = target.as_ref().to_path_buf();
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
            _ => (name.clone(), String::new()),
        };
        let temp = target.with_file_name(format!(".{stem}.partial-{}{ext}", std::process::id()));
        AtomicPath {
            temp,
            target,
            committed: false,
        }
    }

    /// Where to write now.
    pub fn temp(&self) -> &Path {
        &self.temp
    }

    /// Where the file ends up.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the finished file into place (replacing an older one).
    pub fn commit(mut self) -> io::Result<PathBuf> {
        std::fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for AtomicPath {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// An exclusive lock on an output (an advisory `flock` on a lock file), held until dropped: two runs
/// writing one output at once would otherwise each replace the other's files. The lock file is
/// removed when the lock is released (a killed run leaves it, unlocked, for the next run to take).
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    file: std::fs::File,
}

impl OutputLock {
    /// Takes the lock at `path` (created if missing) for writing `what`; refuses at once, with an
    /// error of kind `WouldBlock` naming `what`, when another run holds it.
    pub fn acquire(path: &Path, what: &Path) -> io::Result<OutputLock> {
        use std::os::unix::fs::MetadataExt;
        loop {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!(
                            "another run is writing {} (it holds {}): wait for it to end, or write elsewhere",
                            what.display(),
                            path.display()
                        ),
                    ))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
            // The holder before us removes the file as it lets go: our lock counts only if the
            // file we locked is still the one at `path`.
            let (mine, there) = (file.metadata()?, std::fs::metadata(path));
            if there.is_ok_and(|t| t.dev() == mine.dev() && t.ino() == mine.ino()) {
                return Ok(OutputLock {
                    path: path.to_path_buf(),
                    file,
                });
            }
        }
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so no one can lock this file after we let go of it.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Removes the temporary files ([`AtomicPath`]'s `.stem.partial-PID.ext`) that killed runs left in
/// `dir` for targets whose names `owned` accepts; call it holding the lock on those targets. Returns
/// the paths removed.
pub fn remove_partials(dir: &Path, owned: impl Fn(&str) -> bool) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(target) = partial_target(name) {
            if owned(&target) && entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                removed.push(entry.path());
            }
        }
    }
    Ok(removed)
}

/// The target name of a temporary file name `.stem.partial-PID[.ext]`: `stem[.ext]`.
pub fn partial_target(name: &str) -> Option<String> {
    let rest = name.strip_prefix('.')?;
    let (stem, tail) = rest.rsplit_once(".partial-")?;
    let (pid, ext) = match tail.split_once('.') {
        Some((p, e)) => (p, format!(".{e}")),
        None => (tail, String::new()),
    };
    (!stem.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{stem}{ext}"))
}

/// For tests of the commit protocol only: when the environment variable `TREESITS_TEST_ABORT` names
/// this point, the process aborts here (as a kill would: nothing is cleaned up).
pub fn abort_point(point: &str) {
    if std::env::var_os("TREESITS_TEST_ABORT").is_some_and(|v| v == point) {
        eprintln!("TREESITS_TEST_ABORT: aborting at {point}");
        std::process::abort();
    }
}

/// Writes bytes atomically.
pub fn write_bytes(target: impl AsRef<Path>, bytes: &[u8]) -> io::Result<PathBuf> {
    let out = AtomicPath::new(target);
    std::fs::write(out.temp(), bytes)?;
    out.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_give_their_targets() {
        assert_eq!(
            partial_target(".X0001_Y0002_chunk0003.partial-77.arrows").as_deref(),
            Some("X0001_Y0002_chunk0003.arrows")
        );
        assert_eq!(partial_target(".tiles.partial-8").as_deref(), Some("tiles"));
        assert_eq!(partial_target(".a.partial-x.tif"), None);
        assert_eq!(partial_target("a.partial-1.tif"), None);
        let dir = tempfile::tempdir().unwrap();
        for n in [
            ".a_chunk0.partial-1.arrows",
            ".b_chunk0.partial-1.arrows",
            "a_chunk0.arrows",
        ] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let removed = remove_partials(dir.path(), |t| t.starts_with("a_")).unwrap();
        assert_eq!(removed, vec![dir.path().join(".a_chunk0.partial-1.arrows")]);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec![".b_chunk0.partial-1.arrows", "a_chunk0.arrows"]);
    }

    #[test]
    fn an_output_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".x.lock");
        let a = OutputLock::acquire(&path, dir.path()).unwrap();
        let e = OutputLock::acquire(&path, dir.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        OutputLock::acquire(&path, dir.path()).unwrap();
    }

    #[test]
    fn commit_renames_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let a = AtomicPath::new(dir.path().join("map.tif"));
        assert!(a.temp().to_string_lossy().ends_with(".tif"));
        std::fs::write(a.temp(), b"x").unwrap();
        let p = a.commit().unwrap();
        assert_eq!(std::fs::read(p).unwrap(), b"x");

        let b = AtomicPath::new(dir.path().join("half.tif"));
        std::fs::write(b.temp(), b"half").unwrap();
        drop(b);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("map.tif")]);
    }
}
