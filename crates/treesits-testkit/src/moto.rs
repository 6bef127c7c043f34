//! A local S3 server (moto, from the workspace venv) for tests of `s3://` inputs, and the few S3
//! operations those tests need, done with boto3.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The workspace venv's Python (made by `scripts/setup`, with moto, boto3 and pyarrow).
pub fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: create the workspace venv (scripts/setup) with pyarrow and moto",
        p.display()
    );
    p
}

/// A moto S3 server on a free local port, stopped when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CLIENT: &str = r#"
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url="http://" + sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
"#;

impl Moto {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto { child, port };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return moto;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("moto server did not start on port {port}");
    }

    /// `host:port` of the server.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The environment GDAL's `/vsis3/` needs to use this server.
    pub fn gdal_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_S3_ENDPOINT", self.endpoint()),
            ("AWS_VIRTUAL_HOSTING", "FALSE".into()),
            ("AWS_HTTPS", "NO".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Runs `code` after [`CLIENT`] (an `s3` client bound to this server); extra arguments follow
    /// the endpoint in `sys.argv`.
    pub fn python(&self, code: &str, args: &[&str]) {
        let out = Command::new(python())
            .arg("-c")
            .arg(format!("{CLIENT}{code}"))
            .arg(self.endpoint())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Creates `bucket` (if needed) and uploads every file under `dir` to `prefix/<relative path>`.
    pub fn upload_dir(&self, dir: &Path, bucket: &str, prefix: &str) {
        self.python(
            r#"
bucket, root, prefix = sys.argv[2], sys.argv[3], sys.argv[4]
if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket=bucket)
for dirpath, _, files in os.walk(root):
    for f in files:
        p = os.path.join(dirpath, f)
        s3.upload_file(p, bucket, prefix + "/" + os.path.relpath(p, root))
"#,
            &[bucket, dir.to_str().unwrap(), prefix],
        );
    }

    /// Uploads one file to `bucket/key`.
    pub fn put(&self, file: &Path, bucket: &str, key: &str) {
        self.python(
            "s3.upload_file(sys.argv[2], sys.argv[3], sys.argv[4])",
            &[file.to_str().unwrap(), bucket, key],
        );
    }

    /// Creates the empty objects `bucket/prefix/<name>`, one per name: padding that makes a tile
    /// directory span several listing pages (S3 lists 1000 objects a page).
    pub fn put_empty(&self, bucket: &str, prefix: &str, names: &[String]) {
        self.python(
            r#"
bucket, prefix = sys.argv[2], sys.argv[3]
for name in sys.argv[4].split("\n"):
    s3.put_object(Bucket=bucket, Key=prefix + "/" + name, Body=b"")
"#,
            &[bucket, prefix, &names.join("\n")],
        );
    }

    /// Deletes `bucket/key`.
    pub fn delete(&self, bucket: &str, key: &str) {
        self.python(
            "s3.delete_object(Bucket=sys.argv[2], Key=sys.argv[3])",
            &[bucket, key],
        );
    }
}
