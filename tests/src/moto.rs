//! An S3-compatible server on loopback for the object-store tests: moto's server
//! (`python -m moto.server`), and boto3 (a moto dependency) to look into its buckets with a
//! client other than Cascade's own.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::{wait_until, workspace_root};

/// The moto release `.ci/run` installs.
pub const MOTO_REQUIREMENT: &str = "moto[server]==5.2.1";

/// A Python interpreter that can run moto's server: `CASCADE_TEST_MOTO_PYTHON`, the workspace's
/// `.venv-moto` (which `.ci/run` makes), or the system's `python3`. `None` when there is none,
/// after saying so: the caller skips its test.
///
/// # Panics
/// When `CASCADE_TEST_MOTO_PYTHON` cannot import moto's server, or when there is no such
/// interpreter under CI (`CI=true`): there the test must run.
pub fn python_with_moto() -> Option<&'static Path> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let can_run = |python: &Path| {
                Command::new(python)
                    .args(["-c", "import moto.server, boto3"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if let Ok(python) = std::env::var("CASCADE_TEST_MOTO_PYTHON") {
                let python = PathBuf::from(python);
                assert!(can_run(&python), "CASCADE_TEST_MOTO_PYTHON cannot import moto.server and boto3");
                return Some(python);
            }
            let found = [workspace_root().join(".venv-moto/bin/python"), PathBuf::from("python3")]
                .into_iter()
                .find(|python| can_run(python));
            if found.is_none() {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI needs moto for the S3 tests: pip install \"{MOTO_REQUIREMENT}\" and set CASCADE_TEST_MOTO_PYTHON"
                );
                eprintln!("skipped: no Python with moto (pip install \"{MOTO_REQUIREMENT}\", CASCADE_TEST_MOTO_PYTHON)");
            }
            found
        })
        .as_deref()
}

/// A moto server on a free loopback port, killed when dropped.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    python: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl MotoServer {
    /// Starts moto's server with `python` and waits until it accepts connections.
    ///
    /// # Panics
    /// When it does not start within 30 s.
    pub fn start(python: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto's server starts");
        let server = Self { child, python: python.to_owned(), endpoint: format!("http://127.0.0.1:{port}") };
        wait_until("moto accepts connections", Duration::from_secs(30), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        server
    }

    /// The `AWS_*` variables that point an S3 client at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "cascade-test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "cascade-test-secret".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    /// Runs the Python `script` with a boto3 S3 client of this server as `s3` and `args` as
    /// `args`; returns what it printed as JSON (`null` when nothing).
    ///
    /// # Panics
    /// When the script fails or prints something other than JSON.
    pub fn boto(&self, script: &str, args: &[&str]) -> serde_json::Value {
        let program = format!(
            "import json, sys, boto3\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
             \x20   aws_access_key_id='cascade-test', aws_secret_access_key='cascade-test-secret')\n\
             args = sys.argv[2:]\n{script}\n"
        );
        let output =
            Command::new(&self.python).arg("-c").arg(program).arg(&self.endpoint).args(args).output().expect("python runs");
        assert!(output.status.success(), "boto3 script failed: {}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8_lossy(&output.stdout);
        if text.trim().is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
