//! A fault-injecting HTTP proxy on 127.0.0.1 in front of [`Moto`], for tests of what the tools do
//! when an S3 listing page fails, stalls or arrives damaged (`fault_proxy.py`, run with the
//! workspace venv's Python).
//!
//! ```ignore
//! let moto = Moto::start();
//! let proxy = FaultProxy::start(&moto, &[Fault::new(FaultKind::Status(503), 2)]);
//! TOOL.command().envs(proxy.gdal_env())…   // GDAL's /vsis3/ goes through the proxy
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use crate::moto::{python, Moto};

/// What a faulty listing page gets instead of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// This HTTP status (500, 503) with an S3 error body.
    Status(u16),
    /// No byte for two minutes, then the connection closes.
    Stall,
    /// Headers with the full Content-Length, half the body, then the connection closes.
    Truncate,
    /// Bytes flipped in the middle of the body (XML that no longer parses).
    Garble,
    /// Well-formed, but every object's `<Size>` one more than it is.
    WrongSizes,
}

/// A fault on listing page `page` (1: the first request of a listing; 2: the first continuation
/// page), `times` times in all (`None`: every time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub page: u32,
    pub times: Option<u32>,
}

impl Fault {
    /// `kind` on every request for page `page`.
    pub fn new(kind: FaultKind, page: u32) -> Fault {
        Fault {
            kind,
            page,
            times: None,
        }
    }

    /// The same fault, only the first `times` times that page is asked for.
    pub fn times(self, times: u32) -> Fault {
        Fault {
            times: Some(times),
            ..self
        }
    }

    fn arg(&self) -> String {
        let kind = match self.kind {
            FaultKind::Status(code) => code.to_string(),
            FaultKind::Stall => "stall".into(),
            FaultKind::Truncate => "truncate".into(),
            FaultKind::Garble => "garble".into(),
            FaultKind::WrongSizes => "size".into(),
        };
        match self.times {
            Some(t) => format!("{kind}:{}:{t}", self.page),
            None => format!("{kind}:{}", self.page),
        }
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// Listing page number; `None` for any request that is not a bucket listing.
    pub page: Option<u32>,
    /// The fault injected (`"503"`, `"stall"`, …), `None` when forwarded as it was.
    pub fault: Option<String>,
    pub method: String,
    /// Path and query.
    pub target: String,
}

/// The proxy process, stopped when dropped (stalled connections with it).
pub struct FaultProxy {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub port: u16,
    gdal_env: Vec<(&'static str, String)>,
    log: PathBuf,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl FaultProxy {
    /// Starts a proxy in front of `moto` with `faults`, and waits until it listens.
    pub fn start(moto: &Moto, faults: &[Fault]) -> FaultProxy {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fault_proxy.py");
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("treesits-fault-proxy-{}-{n}.log", std::process::id()));
        std::fs::write(&log, "").unwrap();
        let mut child = Command::new(python())
            .arg(&script)
            .arg(moto.port.to_string())
            .arg(&log)
            .args(faults.iter().map(Fault::arg))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port: u16 = match line.trim().parse() {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("fault proxy did not start (printed {line:?})");
            }
        };
        let endpoint = format!("127.0.0.1:{port}");
        let gdal_env = moto
            .gdal_env()
            .into_iter()
            .map(|(k, v)| match k {
                "AWS_S3_ENDPOINT" => (k, endpoint.clone()),
                _ => (k, v),
            })
            .collect();
        FaultProxy {
            child,
            _stdout: stdout,
            port,
            gdal_env,
            log,
        }
    }

    /// The environment GDAL's `/vsis3/` needs to reach moto through this proxy.
    pub fn gdal_env(&self) -> Vec<(&'static str, String)> {
        self.gdal_env.clone()
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(4, ' ');
                let (page, fault, method, target) = (f.next()?, f.next()?, f.next()?, f.next()?);
                Some(ProxiedRequest {
                    page: page.parse().ok(),
                    fault: (fault != "ok").then(|| fault.to_string()),
                    method: method.to_string(),
                    target: target.to_string(),
                })
            })
            .collect()
    }

    /// How many faults were injected so far.
    pub fn faults_injected(&self) -> usize {
        self.requests().iter().filter(|r| r.fault.is_some()).count()
    }
}
