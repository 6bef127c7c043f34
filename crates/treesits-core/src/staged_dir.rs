//! Atomic output directories: files are written into a hidden sibling directory and moved into the
//! real one only when all of them are complete. A failed or killed run leaves nothing in the output
//! directory (at most a `.name.partial-PID` sibling, removed on drop).

use std::io;
use std::path::{Path, PathBuf};

/// A directory being filled. Dropped without [`StagedDir::commit`], the staging directory is removed.
#[derive(Debug)]
pub struct StagedDir {
    staging: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl StagedDir {
    /// Creates the staging directory next to `target` (same file system, so moving is a rename).
    pub fn new(target: impl AsRef<Path>) -> io::Result<StagedDir> {
        let target = target.as_ref().to_path_buf();
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)?;
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir(&staging)?;
        Ok(StagedDir {
            staging,
            target,
            committed: false,
        })
    }

    /// Where to write now.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Moves the files into place. A missing target directory is simply renamed into being; into an
    /// existing one the files are moved one by one, `stale` ones from an earlier run (as the
    /// predicate says) are removed first, and files named `last` are moved last.
    pub fn commit_with(mut self, stale: impl Fn(&str) -> bool, last: &str) -> io::Result<PathBuf> {
        if !self.target.exists() {
            std::fs::rename(&self.staging, &self.target)?;
        } else {
            for entry in std::fs::read_dir(&self.target)? {
                let entry = entry?;
                if entry.file_name().to_str().is_some_and(&stale) {
                    std::fs::remove_file(entry.path())?;
                }
            }
            let mut names: Vec<_> = std::fs::read_dir(&self.staging)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?;
            names.sort_by_key(|n| n == last);
            for n in names {
                std::fs::rename(self.staging.join(&n), self.target.join(&n))?;
            }
            std::fs::remove_dir(&self.staging)?;
        }
        self.committed = true;
        Ok(self.target.clone())
    }

    /// [`StagedDir::commit_with`] with nothing stale and no ordering.
    pub fn commit(self) -> io::Result<PathBuf> {
        self.commit_with(|_| false, "")
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn new_directory_appears_whole_or_not_at_all() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("sel");
        let s = StagedDir::new(&out).unwrap();
        std::fs::write(s.path().join("a.tif"), b"a").unwrap();
        drop(s);
        assert!(names(root.path()).is_empty());

        let s = StagedDir::new(&out).unwrap();
        std::fs::write(s.path().join("a.tif"), b"a").unwrap();
        s.commit().unwrap();
        assert_eq!(names(root.path()), vec!["sel"]);
        assert_eq!(names(&out), vec!["a.tif"]);
    }

    #[test]
    fn existing_directory_loses_stale_files_and_keeps_others() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("sel");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("old.mask.tif"), b"old").unwrap();
        std::fs::write(out.join("notes.txt"), b"keep").unwrap();
        let s = StagedDir::new(&out).unwrap();
        std::fs::write(s.path().join("new.mask.tif"), b"new").unwrap();
        std::fs::write(s.path().join("tiles.csv"), b"csv").unwrap();
        s.commit_with(|n| n.ends_with(".mask.tif"), "tiles.csv").unwrap();
        assert_eq!(names(&out), vec!["new.mask.tif", "notes.txt", "tiles.csv"]);
        assert_eq!(names(root.path()), vec!["sel"]);
    }
}
