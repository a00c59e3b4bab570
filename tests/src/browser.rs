//! A headless Chromium driven over WebDriver (plain HTTP to `chromedriver`), for tests that
//! load the dashboard as a person would and assert on its DOM.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::wait_until;

/// Debian's Chromium.
const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's driver for it.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser tests can run here. `Ok(false)` (after printing why) only when Chromium
/// or its driver is missing **and** `CI` is not set; in CI a missing browser is an error.
///
/// # Panics
/// In CI (`CI` set to anything but `false`/`0`) when Chromium or chromedriver is missing.
pub fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !Path::new(p).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!in_ci, "browser tests need {missing:?} (Debian packages chromium and chromium-driver; .ci/run installs them)");
    eprintln!("SKIPPED: browser test: {missing:?} not installed (apt-get install chromium chromium-driver)");
    false
}

/// One Chromium session behind its own `chromedriver` process; both end when dropped.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    session: String,
    agent: ureq::Agent,
}

impl Browser {
    /// Starts `chromedriver` on a free loopback port and opens a headless session with a
    /// `width`×`height` window.
    ///
    /// # Panics
    /// When the driver does not start or refuses the session.
    pub fn start(width: u32, height: u32) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut browser = Self { driver, session: format!("http://127.0.0.1:{port}"), agent };
        wait_until("chromedriver answers", Duration::from_secs(30), || {
            browser.agent.get(format!("{}/status", browser.session)).call().is_ok()
        });
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         format!("--window-size={width},{height}")],
            },
        }}});
        let created = browser.call("POST", "/session", Some(capabilities));
        let id = created["sessionId"].as_str().expect("a session id").to_owned();
        browser.session = format!("{}/session/{id}", browser.session);
        browser
    }

    /// Sends one WebDriver command (`path` relative to the session, or `/session` itself while
    /// starting) and returns its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, body) => self.agent.post(&url).send_json(body.unwrap_or_else(|| json!({}))),
        };
        let mut response = response.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status().as_u16();
        let answer: Value = response.body_mut().read_json().unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        assert_eq!(status, 200, "WebDriver {method} {path}: {answer}");
        answer["value"].clone()
    }

    /// Opens `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// The URL now shown.
    pub fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` (a function body; `return` gives the answer) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    /// The text of the first element matching `css`, or `None` when there is none.
    pub fn text(&self, css: &str) -> Option<String> {
        let script = format!("const e = document.querySelector({}); return e ? e.textContent : null;", json!(css));
        self.eval(&script).as_str().map(str::to_owned)
    }

    /// Clicks the first element matching `css`, as a user would.
    ///
    /// # Panics
    /// When no element matches.
    pub fn click(&self, css: &str) {
        let found = self.call("POST", "/element", Some(json!({ "using": "css selector", "value": css })));
        let element = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned();
        self.call("POST", &format!("/element/{element}/click"), None);
    }

    /// Saves a PNG screenshot of the window to `path` (creating its folder) and returns it.
    ///
    /// # Panics
    /// When the screenshot cannot be taken or written.
    pub fn screenshot(&self, path: &Path) -> PathBuf {
        let encoded = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64 text"))
            .expect("valid base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot folder");
        }
        std::fs::write(path, png).expect("screenshot written");
        path.to_path_buf()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.session.contains("/session/") {
            let _ = self.agent.delete(&self.session).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
