//! Support for Cascade's end-to-end tests: the real `cascade` binary started on a loopback port
//! against a throw-away database, and a Python environment with the real `distcompute-client`.
//!
//! # Layout
//! - [`cascade_binary`]: locates (building if missing) the `cascade` executable.
//! - [`Daemon`]: a running `cascade serve` child process, killable with SIGKILL and restartable.
//! - [`python_with_distcompute`]: a Python interpreter that can import `distcompute_client`;
//!   [`python_with_data_libraries`]: the same with numpy and pyarrow;
//!   [`python_with_img2dataset`]: a separate one with the real `img2dataset` 1.47.0;
//!   [`python_with_schemathesis`]: one with `schemathesis`, the API fuzzer.
//! - [`wait_until`]: polling with a deadline instead of sleeps.
//! - [`get_answer`]: the status, `Retry-After` and body of a GET, whatever the status;
//!   [`append_stage_toml`]: the configuration of a test pipeline's `append` stage.
//! - [`browser`]: a headless Chromium over WebDriver, for tests that load the dashboard.
//! - [`moto`]: an S3-compatible server (moto) on loopback, for the object-store tests.
//! - [`process_log`]: child processes' standard error, kept for assertions.
//! - [`fault_proxy`]: a TCP proxy that cuts or slows connections on command.
//! - [`chaos`]: the seeded chaos soak (kills, freezes, partitions) and its history check.

pub mod browser;
pub mod chaos;
pub mod fault_proxy;
pub mod moto;
pub mod process_log;
pub mod replay;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use process_log::ProcessLog;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The `cascade` executable of this build profile.
///
/// `cargo test --workspace` (the README's test command) builds it fresh before any test runs,
/// because `cascade-engine`'s own integration tests need it. It is built here only when it is
/// missing (e.g. `cargo test -p cascade-tests` on a clean target directory); rebuilding an
/// existing one from here would resolve other features than the workspace build and relink it
/// for minutes.
///
/// # Panics
/// When the binary is missing and the build fails.
pub fn cascade_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // The test executable lives in target/<profile>/deps/.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile> directory");
        let binary = profile_dir.join("cascade");
        if !binary.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut build = Command::new(cargo);
            build.current_dir(workspace_root()).args(["build", "--quiet", "-p", "cascade-engine", "--bin", "cascade"]);
            if !cfg!(debug_assertions) {
                build.arg("--release");
            }
            let status = build.status().expect("cargo can be started");
            assert!(status.success(), "building the cascade binary failed");
        }
        assert!(binary.exists(), "{} was not built", binary.display());
        binary
    })
}

/// Runs `cascade ARGS…` to completion and returns (success, stdout, stderr).
///
/// # Panics
/// When the process cannot be started.
pub fn cascade(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(cascade_binary())
        .args(args)
        .env("CASCADE_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("cascade can be started");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A `cascade serve` (or `cascade run`, or another binary's) process on a loopback port.
/// Killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    binary: PathBuf,
    args: Vec<String>,
    dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    log: Option<Arc<ProcessLog>>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Daemon {
    /// Starts `cascade serve ARGS… --bind 127.0.0.1:PORT` (port 0 picks a free one) and waits
    /// until it prints its address.
    ///
    /// # Panics
    /// When the daemon does not start within 60 s.
    pub fn start(args: &[&str], port: u16) -> Self {
        Self::start_command("serve", args, port)
    }

    /// Like [`Daemon::start`] with another subcommand that serves the tracker (`serve`, `run`).
    ///
    /// # Panics
    /// When the daemon does not start within 60 s.
    pub fn start_command(command: &str, args: &[&str], port: u16) -> Self {
        let mut full = vec![command];
        full.extend_from_slice(args);
        Self::start_binary(cascade_binary(), &full, port)
    }

    /// Starts `BINARY ARGS… --bind 127.0.0.1:PORT` in the current directory and waits until it
    /// prints its address. `ARGS` starts with the subcommand (`serve`, `run`).
    ///
    /// # Panics
    /// When the daemon does not start within 60 s.
    pub fn start_binary(binary: &Path, args: &[&str], port: u16) -> Self {
        Self::start_in(binary, args, port, None)
    }

    /// As [`start_binary`](Self::start_binary), in directory `dir`.
    ///
    /// # Panics
    /// When the daemon does not start within 60 s.
    pub fn start_in(binary: &Path, args: &[&str], port: u16, dir: Option<&Path>) -> Self {
        Self::spawn(binary, args, port, dir, Vec::new(), None)
    }

    /// As [`start_in`](Self::start_in), with the environment variables `env` added (and
    /// again on a [`restart`](Self::restart)).
    ///
    /// # Panics
    /// When the daemon does not start within 60 s.
    pub fn start_with_env(binary: &Path, args: &[&str], port: u16, dir: Option<&Path>, env: &[(&str, &str)]) -> Self {
        let env = env.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        Self::spawn(binary, args, port, dir, env, None)
    }

    /// As [`start_in`](Self::start_in), with the process's standard error read into `log`
    /// (uncoloured) instead of shown; a [`restart`](Self::restart) logs there too.
    ///
    /// # Panics
    /// When the daemon does not start within 60 s.
    pub fn start_logged(binary: &Path, args: &[&str], port: u16, dir: Option<&Path>, log: Option<Arc<ProcessLog>>) -> Self {
        Self::spawn(binary, args, port, dir, Vec::new(), log)
    }

    /// Starts `binary` with `args`, the environment variables `env` added and standard error
    /// in `log` (when given), and waits until it prints its address.
    fn spawn(
        binary: &Path,
        args: &[&str],
        port: u16,
        dir: Option<&Path>,
        env: Vec<(String, String)>,
        log: Option<Arc<ProcessLog>>,
    ) -> Self {
        let mut full: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        full.push("--bind".to_owned());
        full.push(format!("127.0.0.1:{port}"));
        let mut command = Command::new(binary);
        command.args(&full).env("CASCADE_LOG", "warn").stdout(Stdio::piped());
        match &log {
            Some(_) => command.stderr(Stdio::piped()).env("NO_COLOR", "1"),
            None => command.stderr(Stdio::inherit()),
        };
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        command.envs(env.iter().map(|(name, value)| (name, value)));
        let mut child = command.spawn().unwrap_or_else(|e| panic!("{} can be started: {e}", binary.display()));
        if let (Some(log), Some(stderr)) = (&log, child.stderr.take()) {
            log.attach(&format!("daemon {}", child.id()), stderr);
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Cascade tracker listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            let tail = log.as_ref().map(|log| log.tail(20)).unwrap_or_default();
            panic!("{} did not start: {full:?}\n{tail}", binary.display())
        });
        full.truncate(full.len() - 2);
        Self { child, binary: binary.to_owned(), args: full, dir: dir.map(Path::to_path_buf), env, log, url }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port the daemon listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("url has a port")
    }

    /// Kills the process with SIGKILL (no shutdown code runs) and waits for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (a graceful stop).
    ///
    /// # Panics
    /// When `kill` cannot be run.
    pub fn terminate(&self) {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM failed");
    }

    /// Waits up to `limit` for the process to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the same command again on the same port (after killing this one if it runs).
    pub fn restart(&mut self) {
        let port = self.port();
        self.kill9();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        *self = Self::spawn(&self.binary.clone(), &args, port, self.dir.clone().as_deref(), self.env.clone(), self.log.clone());
    }

    /// GETs `path` and parses the JSON answer.
    ///
    /// # Panics
    /// When the request fails or the answer is not JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let mut response = ureq::get(format!("{}{path}", self.url)).call().expect("GET succeeds");
        let text = response.body_mut().read_to_string().expect("body");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `condition` every 50 ms until it holds, for at most `limit`.
///
/// # Panics
/// When the condition does not hold in time (naming `what`).
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Python interpreter that can import `modules`: the one `env_var` names, or the one of the
/// workspace's virtual environment `folder`, created and filled with `requirements` from PyPI
/// on first use (as `.ci/run` does).
///
/// # Panics
/// When no such interpreter can be found or made.
fn python_in_venv(env_var: &str, folder: &str, requirements: &[&str], modules: &str) -> PathBuf {
    let can_import = |python: &Path| {
        Command::new(python)
            .args(["-c", &format!("import {modules}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Ok(python) = std::env::var(env_var) {
        let python = PathBuf::from(python);
        assert!(can_import(&python), "{env_var} cannot import {modules}");
        return python;
    }
    let venv = workspace_root().join(folder);
    let python = venv.join("bin/python");
    if !can_import(&python) {
        let created = Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
        assert!(created.is_ok_and(|s| s.success()), "python3 -m venv failed");
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(requirements)
            .status();
        assert!(installed.is_ok_and(|s| s.success()), "pip install {requirements:?} failed");
    }
    assert!(can_import(&python), "{} cannot import {modules}", python.display());
    python
}

/// A Python interpreter with `distcompute-client==1.0.0` importable: `CASCADE_TEST_PYTHON`, or
/// the workspace's `.venv` (created and filled from PyPI on first use, as `.ci/run` does).
///
/// # Panics
/// When no such interpreter can be found or made.
pub fn python_with_distcompute() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| python_in_venv("CASCADE_TEST_PYTHON", ".venv", &["distcompute-client==1.0.0"], "distcompute_client"))
}

/// [`python_with_distcompute`] with numpy, pyarrow and webdataset importable too (installed from PyPI into
/// that environment when missing, as `.ci/run` does), for tests that read Cascade's output files
/// the way dataset users do.
///
/// # Panics
/// When the packages cannot be imported or installed.
pub fn python_with_data_libraries() -> &'static Path {
    static PYTHON: OnceLock<&'static Path> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let python = python_with_distcompute();
        let can_import =
            || Command::new(python).args(["-c", "import numpy, pyarrow, webdataset"]).status().is_ok_and(|s| s.success());
        if !can_import() {
            let installed = Command::new(python).args(["-m", "pip", "install", "--quiet", "numpy", "pyarrow", "webdataset==0.2.111"]).status();
            assert!(installed.is_ok_and(|s| s.success()), "pip install numpy pyarrow webdataset failed");
        }
        assert!(can_import(), "{} cannot import numpy, pyarrow and webdataset", python.display());
        python
    })
}

/// The `img2dataset` release Cascade's downloader is compared with (docs/download.md).
pub const IMG2DATASET_REQUIREMENT: &str = "img2dataset==1.47.0";

/// A Python interpreter with [`IMG2DATASET_REQUIREMENT`] importable (with its OpenCV, pandas,
/// pyarrow and webdataset): `CASCADE_TEST_IMG2DATASET_PYTHON`, or the workspace's
/// `.venv-img2dataset` (created and filled from PyPI on first use, as `.ci/run` does). A venv of
/// its own because img2dataset pins versions (webdataset < 0.3, albumentations < 2) that the
/// other tests need not share. Its `img2dataset` command sits next to it.
///
/// # Panics
/// When no such interpreter can be found or made.
pub fn python_with_img2dataset() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        python_in_venv(
            "CASCADE_TEST_IMG2DATASET_PYTHON",
            ".venv-img2dataset",
            &[IMG2DATASET_REQUIREMENT],
            "img2dataset, cv2, pyarrow",
        )
    })
}

/// The `schemathesis` release that fuzzes the HTTP API from its OpenAPI description.
pub const SCHEMATHESIS_REQUIREMENT: &str = "schemathesis==4.32.5";

/// A Python interpreter with [`SCHEMATHESIS_REQUIREMENT`] importable:
/// `CASCADE_TEST_SCHEMATHESIS_PYTHON`, or the workspace's `.venv-schemathesis` (created and
/// filled from PyPI on first use, as `.ci/run` does). Its `schemathesis` command sits next to it.
///
/// # Panics
/// When no such interpreter can be found or made.
pub fn python_with_schemathesis() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        python_in_venv("CASCADE_TEST_SCHEMATHESIS_PYTHON", ".venv-schemathesis", &[SCHEMATHESIS_REQUIREMENT], "schemathesis")
    })
}

/// `(status, Retry-After, body)` of `GET url`, whatever the status; status 0 (and the error
/// as the body) when no answer came within 20 s.
pub fn get_answer(url: &str) -> (u16, Option<String>, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    match agent.get(url).call() {
        Ok(mut response) => {
            let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = response.body_mut().read_to_string().unwrap_or_default();
            (response.status().as_u16(), retry_after, body)
        }
        Err(e) => (0, None, e.to_string()),
    }
}

/// The configuration of stage `letter` as the test pipeline's `append` stage: `workers` local
/// workers, each appending `suffix` to its input after `delay_ms` of pretended work.
pub fn append_stage_toml(letter: &str, suffix: &str, workers: usize, delay_ms: u64) -> String {
    format!(
        "[stages.{letter}]\nname = \"{letter}\"\nkind = \"append\"\nworkers = {workers}\n\
         [stages.{letter}.settings]\nsuffix = \"{suffix}\"\ndelay-ms = {delay_ms}\n"
    )
}
