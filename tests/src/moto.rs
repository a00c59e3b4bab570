//! An S3-compatible server on loopback for the object-store tests: moto's server
//! (`python -m moto.server`), over HTTP or HTTPS with a certificate authority made for the test,
//! and boto3 (a moto dependency) to look into its buckets with a client other than Cascade's own.

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

/// A certificate authority of its own and a server certificate it signed for `127.0.0.1` and
/// `localhost`, as PEM files, made with the Python `cryptography` package (a moto dependency).
/// The files are removed when this is dropped.
#[derive(Debug)]
pub struct TestCertificates {
    _dir: tempfile::TempDir,
    /// The authority's certificate: what a client must trust.
    pub authority: PathBuf,
    /// The server's certificate.
    pub certificate: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

/// Writes `ca.pem`, `cert.pem` and `key.pem` into `sys.argv[1]`.
const MAKE_CERTIFICATES: &str = r#"
import datetime, ipaddress, pathlib, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
out = pathlib.Path(sys.argv[1])
now = datetime.datetime.now(datetime.timezone.utc)
def name(text):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])
def certificate(subject, key, issuer, issuer_key, extensions):
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())
ca_key = ec.generate_private_key(ec.SECP256R1())
ca = certificate(name("Cascade test authority"), ca_key, name("Cascade test authority"), ca_key, [
    (x509.BasicConstraints(ca=True, path_length=0), True),
    (x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False), True),
])
key = ec.generate_private_key(ec.SECP256R1())
server = certificate(name("127.0.0.1"), key, ca.subject, ca_key, [
    (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), False),
    (x509.BasicConstraints(ca=False, path_length=None), True),
    (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
])
(out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
(out / "cert.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
(out / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption()))
"#;

impl TestCertificates {
    /// Makes a new authority and server certificate with `python` (one that can run moto).
    ///
    /// # Panics
    /// When the script fails.
    pub fn make(python: &Path) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let status = Command::new(python).arg("-c").arg(MAKE_CERTIFICATES).arg(dir.path()).status().expect("python runs");
        assert!(status.success(), "making the test certificates failed");
        Self {
            authority: dir.path().join("ca.pem"),
            certificate: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            _dir: dir,
        }
    }
}

/// A moto server on a free loopback port, killed when dropped.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    python: PathBuf,
    /// `http://127.0.0.1:PORT`, or `https://…` for [`start_https`](Self::start_https).
    pub endpoint: String,
    /// The authority boto3 trusts for an HTTPS server.
    authority: Option<PathBuf>,
}

impl MotoServer {
    /// Starts moto's server with `python` and waits until it accepts connections.
    ///
    /// # Panics
    /// When it does not start within 30 s.
    pub fn start(python: &Path) -> Self {
        Self::start_with(python, None)
    }

    /// Starts moto's server over HTTPS with the server certificate of `certificates`.
    ///
    /// # Panics
    /// When it does not start within 30 s.
    pub fn start_https(python: &Path, certificates: &TestCertificates) -> Self {
        Self::start_with(python, Some(certificates))
    }

    fn start_with(python: &Path, tls: Option<&TestCertificates>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut command = Command::new(python);
        command.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()]);
        if let Some(tls) = tls {
            command.arg("--ssl-cert").arg(&tls.certificate).arg("--ssl-key").arg(&tls.key);
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("moto's server starts");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = Self {
            child,
            python: python.to_owned(),
            endpoint: format!("{scheme}://127.0.0.1:{port}"),
            authority: tls.map(|tls| tls.authority.clone()),
        };
        wait_until("moto accepts connections", Duration::from_secs(30), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        server
    }

    /// The `AWS_*` variables that point an S3 client at this server (`AWS_ALLOW_HTTP` only
    /// for plain HTTP).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID", "cascade-test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "cascade-test-secret".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
        ];
        if self.authority.is_none() {
            env.push(("AWS_ALLOW_HTTP", "true".to_owned()));
        }
        env
    }

    /// Runs the Python `script` with a boto3 S3 client of this server as `s3` and `args` as
    /// `args`; returns what it printed as JSON (`null` when nothing).
    ///
    /// # Panics
    /// When the script fails or prints something other than JSON.
    pub fn boto(&self, script: &str, args: &[&str]) -> serde_json::Value {
        let program = format!(
            "import json, sys, boto3\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', verify=sys.argv[2] or None,\n\
             \x20   aws_access_key_id='cascade-test', aws_secret_access_key='cascade-test-secret')\n\
             args = sys.argv[3:]\n{script}\n"
        );
        let authority = self.authority.as_deref().map(|path| path.display().to_string()).unwrap_or_default();
        let output = Command::new(&self.python)
            .arg("-c")
            .arg(program)
            .arg(&self.endpoint)
            .arg(authority)
            .args(args)
            .output()
            .expect("python runs");
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
