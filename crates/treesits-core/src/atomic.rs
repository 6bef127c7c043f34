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
