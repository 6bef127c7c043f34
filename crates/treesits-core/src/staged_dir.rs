//! Atomic output directories: files are written into a hidden sibling directory and the output
//! directory is replaced by it as a whole, so readers see the earlier run's outputs or this run's,
//! never a mixture (the protocol is described in `docs/reliability.md`, "Commits").
//!
//! - A run holds an exclusive lock on `<parent>/.<name>.lock` from [`StagedDir::new`] until it has
//!   committed or given up (the file goes with the lock): a second run into the same directory is
//!   refused at once.
//! - Holding the lock, it removes what killed runs left beside the directory (`.<name>.partial-*`,
//!   `.<name>.replaced-*`).
//! - [`StagedDir::commit_with`] into an existing directory first gives the staging directory the
//!   files of the old one that this run keeps (hard links: neither stale nor written anew), then
//!   swaps the two by renames (`<name>` → `.<name>.replaced-PID`, staging → `<name>`) and removes
//!   the old one. A kill between the two renames leaves no `<name>` at all (never a mixture); the
//!   next run cleans up.

use std::io;
use std::path::{Path, PathBuf};

use crate::atomic::{abort_point, OutputLock};

/// A directory being filled. Dropped without [`StagedDir::commit`], the staging directory is removed.
#[derive(Debug)]
pub struct StagedDir {
    staging: PathBuf,
    target: PathBuf,
    committed: bool,
    _lock: OutputLock,
}

fn split(target: &Path) -> (PathBuf, String) {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    (parent, name)
}

/// The lock file of an output directory: `<parent>/.<name>.lock`.
pub fn lock_path(target: &Path) -> PathBuf {
    let (parent, name) = split(target);
    parent.join(format!(".{name}.lock"))
}

/// Whether `entry` (a name in the parent directory) is what a killed run writing `name` left.
fn is_leftover(entry: &str, name: &str) -> bool {
    [".partial-", ".replaced-"].iter().any(|k| {
        entry
            .strip_prefix(&format!(".{name}{k}"))
            .is_some_and(|pid| pid.parse::<u32>().is_ok())
    })
}

impl StagedDir {
    /// Locks `target` for this run, removes what killed runs left, and creates the staging directory
    /// next to `target` (same file system, so moving is a rename). Another run holding the lock is an
    /// error of kind `WouldBlock` whose message names the directory.
    pub fn new(target: impl AsRef<Path>) -> io::Result<StagedDir> {
        let target = target.as_ref().to_path_buf();
        let (parent, name) = split(&target);
        std::fs::create_dir_all(&parent)?;
        let lock = OutputLock::acquire(&lock_path(&target), &target)?;
        for entry in std::fs::read_dir(&parent)? {
            let entry = entry?;
            if entry.file_name().to_str().is_some_and(|e| is_leftover(e, &name)) {
                remove_any(&entry.path())?;
            }
        }
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        std::fs::create_dir(&staging)?;
        Ok(StagedDir {
            staging,
            target,
            committed: false,
            _lock: lock,
        })
    }

    /// Where to write now.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Puts the files in place as one step. A missing target directory is simply renamed into being.
    /// An existing one is replaced as a whole: its files that this run neither writes nor finds
    /// `stale` (the products of an earlier run, as the predicate says) are kept, linked into the new
    /// directory first. Where the target cannot be swapped (it is `.`, a symbolic link or a mount
    /// point), the files are moved in one by one instead — `last` last, stale ones removed after —
    /// which is not atomic (documented).
    pub fn commit_with(mut self, stale: impl Fn(&str) -> bool, last: &str) -> io::Result<PathBuf> {
        let meta = std::fs::symlink_metadata(&self.target);
        match meta {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::rename(&self.staging, &self.target)?;
            }
            Err(e) => return Err(e),
            Ok(m) if m.is_dir() && self.swappable() => self.swap(&stale)?,
            Ok(_) => self.move_files(&stale, last)?,
        }
        self.committed = true;
        Ok(self.target.clone())
    }

    /// [`StagedDir::commit_with`] with nothing stale and no ordering.
    pub fn commit(self) -> io::Result<PathBuf> {
        self.commit_with(|_| false, "")
    }

    fn swappable(&self) -> bool {
        use std::path::Component;
        matches!(self.target.components().next_back(), Some(Component::Normal(_)))
    }

    fn swap(&self, stale: &impl Fn(&str) -> bool) -> io::Result<()> {
        for entry in std::fs::read_dir(&self.target)? {
            let entry = entry?;
            let name = entry.file_name();
            let dst = self.staging.join(&name);
            if name.to_str().is_some_and(stale) || dst.symlink_metadata().is_ok() {
                continue;
            }
            if entry.file_type()?.is_file() {
                // A file system without hard links gets a copy.
                if std::fs::hard_link(entry.path(), &dst).is_err() {
                    std::fs::copy(entry.path(), &dst)?;
                }
            } else {
                // A directory (or anything else) of someone else's: moved over whole.
                std::fs::rename(entry.path(), &dst)?;
            }
        }
        let (parent, name) = split(&self.target);
        let replaced = parent.join(format!(".{name}.replaced-{}", std::process::id()));
        if std::fs::rename(&self.target, &replaced).is_err() {
            // A mount point cannot be renamed: fall back to moving the files.
            return self.move_files(stale, "");
        }
        abort_point("staged-dir-swap");
        std::fs::rename(&self.staging, &self.target)?;
        remove_any(&replaced)
    }

    fn move_files(&self, stale: &impl Fn(&str) -> bool, last: &str) -> io::Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(&self.staging)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort_by_key(|n| n == last);
        let new: std::collections::BTreeSet<_> = names.iter().cloned().collect();
        for entry in std::fs::read_dir(&self.target)? {
            let entry = entry?;
            let name = entry.file_name();
            if !new.contains(&name) && name.to_str().is_some_and(stale) && entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
            }
        }
        for (i, n) in names.iter().enumerate() {
            let dst = self.target.join(n);
            if dst.is_dir() {
                remove_any(&dst)?;
            }
            std::fs::rename(self.staging.join(n), dst)?;
            if i == 0 {
                abort_point("staged-dir-move");
            }
        }
        std::fs::remove_dir(&self.staging)
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
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
        std::fs::write(out.join("tiles.csv"), b"old csv").unwrap();
        std::fs::write(out.join("notes.txt"), b"keep").unwrap();
        std::fs::create_dir(out.join("mine")).unwrap();
        std::fs::write(out.join("mine/x"), b"x").unwrap();
        let s = StagedDir::new(&out).unwrap();
        std::fs::write(s.path().join("new.mask.tif"), b"new").unwrap();
        std::fs::write(s.path().join("tiles.csv"), b"csv").unwrap();
        s.commit_with(|n| n.ends_with(".mask.tif"), "tiles.csv").unwrap();
        assert_eq!(
            names(&out),
            vec!["mine", "new.mask.tif", "notes.txt", "tiles.csv"]
        );
        assert_eq!(std::fs::read(out.join("tiles.csv")).unwrap(), b"csv");
        assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"keep");
        assert_eq!(std::fs::read(out.join("mine/x")).unwrap(), b"x");
        assert_eq!(names(root.path()), vec!["sel"]);
    }

    #[test]
    fn a_second_run_into_the_same_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("map");
        let first = StagedDir::new(&out).unwrap();
        let e = StagedDir::new(&out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(e.to_string().contains("another run is writing"), "{e}");
        first.commit().unwrap();
        // Released with the commit: the next run goes ahead.
        StagedDir::new(&out).unwrap().commit().unwrap();
    }

    #[test]
    fn what_killed_runs_left_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("map");
        for left in [".map.partial-4242", ".map.replaced-4243"] {
            std::fs::create_dir(root.path().join(left)).unwrap();
            std::fs::write(root.path().join(left).join("big.tif"), b"half").unwrap();
        }
        std::fs::create_dir(root.path().join(".map.partial-mine")).unwrap();
        std::fs::create_dir(root.path().join(".other.partial-4242")).unwrap();
        let s = StagedDir::new(&out).unwrap();
        s.commit().unwrap();
        assert_eq!(
            names(root.path()),
            vec![".map.partial-mine", ".other.partial-4242", "map"]
        );
    }
}
