//! A small tmpfs that a filler file fills up during a run and that is freed again once full: what a
//! shared disk does when another job fills it and then deletes its files. Mounting needs root (the
//! tests run as root here and in CI); elsewhere [`Disk::mount`] says so and the test is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct Disk {
    pub dir: PathBuf,
    _root: tempfile::TempDir,
}

impl Disk {
    /// A tmpfs of `bytes`, or `None` (with a message) when this process cannot mount one.
    pub fn mount(test: &str, bytes: u64) -> Option<Disk> {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("disk");
        std::fs::create_dir(&dir).unwrap();
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let mounted = String::from_utf8_lossy(&uid).trim() == "0"
            && Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("SKIPPED {test}: mounting a tmpfs needs root (run the tests as root, as CI does)");
            return None;
        }
        Some(Disk { dir, _root: root })
    }

    /// Fills the disk with a filler file until `leave` bytes are free; once a run has used them up
    /// (the disk is full), a watcher deletes the filler 200 ms later, until [`Watcher::stop`].
    pub fn fill_then_free(&self, leave: u64) -> Watcher {
        // Whole pages (tmpfs counts pages): at least one stays free for the run to fill.
        let leave = leave.div_ceil(4096).max(1) * 4096;
        let filler = self.dir.join("filler");
        let size = free(&self.dir).saturating_sub(leave);
        std::fs::write(&filler, vec![7u8; size as usize]).unwrap();
        assert_eq!(
            free(&self.dir),
            leave,
            "the filler leaves what the test asked for"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let freed = Arc::new(AtomicBool::new(false));
        let dir = self.dir.clone();
        let (s, f) = (stop.clone(), freed.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if free(&dir) == 0 {
                    // Full: a moment for the run's next writes to fail (even when the
                    // write that filled the disk fitted exactly), then the space comes back.
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    std::fs::remove_file(&filler).unwrap();
                    f.store(true, Ordering::Relaxed);
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        Watcher {
            stop,
            freed,
            thread: Some(thread),
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

pub struct Watcher {
    stop: Arc<AtomicBool>,
    freed: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Stops watching; whether the disk filled up (and was freed) during the run.
    pub fn stop(mut self) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.freed.load(Ordering::Relaxed)
    }
}

/// Bytes still free on the file system of `dir`.
fn free(dir: &Path) -> u64 {
    let o = Command::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let v: Vec<u64> = text.split_whitespace().map(|x| x.parse().unwrap()).collect();
    v[0] * v[1]
}

/// Bytes of the files under `dir`.
pub fn bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                bytes(&p)
            } else {
                p.metadata().unwrap().len()
            }
        })
        .sum()
}
