//! A real headless Chromium loads `/web` from a running daemon, sees the per-stage counts and
//! the failed-and-flagged list change while jobs are completed over HTTP (without reloading),
//! sees a stage paused from the command line marked and logged, follows a worker link to the worker page, and saves screenshots (paths printed).

use std::path::PathBuf;
use std::time::Duration;

use cascade_tests::browser::{browser_available, Browser};
use cascade_tests::{cascade, wait_until, Daemon};
use cascade_tracker::testing::TestDatabase;
use cascade_web::TrackerClient;

/// The subcommand that serves the tracker and the dashboard (`run` once it serves too).
const DAEMON: &str = "run";
/// How long the page may take to show a change (it refreshes every 2 s).
const SHOWS_WITHIN: Duration = Duration::from_secs(30);

/// Where the screenshots go: `target/tmp/dashboard/`.
fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard").join(name)
}

/// Waits until the text of `css` is `want`.
fn wait_for_text(browser: &Browser, css: &str, want: &str) {
    wait_until(&format!("{css} shows {want:?}"), SHOWS_WITHIN, || browser.text(css).as_deref() == Some(want));
}

/// The text of one stage's cell, e.g. `("a", "done")`.
fn stage_cell(stage: &str, column: &str) -> String {
    format!("#stages tr[data-stage=\"{stage}\"] td.{column}")
}

#[test]
fn the_dashboard_updates_live_and_links_to_worker_pages() {
    if !browser_available() {
        return;
    }
    let db = TestDatabase::sqlite();
    let url = db.url_string();
    let (ok, out, err) = cascade(&["init", "--database", &url, "--brace", "crawl/segment-{01..12}.warc.wat.gz"]);
    assert!(ok, "init failed: {out}{err}");
    let daemon = Daemon::start_command(DAEMON, &["--database", &url, "--project", "Browser Test", "--stage", "a=CPU", "--stage", "b=GPU"], 0);
    let browser = Browser::start(1400, 1100);

    browser.goto(&format!("{}/web", daemon.url));
    wait_for_text(&browser, &stage_cell("a", "open"), "12");
    assert_eq!(browser.text("h1").as_deref(), Some("Browser Test"));
    assert_eq!(browser.text(&stage_cell("a", "done")).as_deref(), Some("0"));
    assert_eq!(browser.text("#problems td.empty").as_deref(), Some("No failed or flagged jobs."));
    // Marks this page load: a reload would lose it.
    browser.eval("window.loadedOnce = true;");

    let client = TrackerClient::new(&daemon.url);
    let alice = client.register("alice", "a").unwrap();
    for _ in 0..3 {
        alice.new_job().unwrap();
        alice.complete_job("pairs.parquet").unwrap();
    }
    alice.new_job().unwrap();
    alice.log("parsing record 512").unwrap();
    let bob = client.register("bob", "b").unwrap();
    bob.new_job().unwrap();
    bob.flag_invalid_data_because("truncated parquet footer").unwrap();

    wait_for_text(&browser, &stage_cell("a", "done"), "3");
    assert_eq!(browser.text(&stage_cell("a", "open")).as_deref(), Some("8"));
    assert_eq!(browser.text(&stage_cell("a", "leased")).as_deref(), Some("1"));
    assert_eq!(browser.text(&stage_cell("b", "open")).as_deref(), Some("3"));
    wait_for_text(&browser, "#problems tr.problem td.reason", "truncated parquet footer");
    assert_eq!(browser.text("#actions td.empty").as_deref(), Some("No operator actions yet."));
    let (ok, out, err) = cascade(&["stage", "pause", "b", "--database", &url]);
    assert!(ok, "pause failed: {out}{err}");
    wait_for_text(&browser, &format!("{} .paused", stage_cell("b", "name")), "paused");
    assert_eq!(browser.text("#actions tr.action td.kind").as_deref(), Some("pause"));
    assert_eq!(browser.text("#actions tr.action td.detail").as_deref(), Some("stage b"));
    assert_eq!(browser.eval("return window.loadedOnce === true;"), serde_json::json!(true), "updated in place");
    let rows = browser.eval("return document.querySelectorAll('#workers tr.worker').length;");
    assert_eq!(rows, serde_json::json!(2));
    let alice_link = format!("#workers a.worker-link[href$=\"/{}\"]", alice.display_name);
    assert_eq!(browser.text(&alice_link).as_deref(), Some(alice.display_name.as_str()));
    assert_eq!(browser.text("#leaderboard tbody tr td:nth-child(2)").as_deref(), Some("alice"));
    let overview = browser.screenshot(&screenshot_path("overview.png"));
    println!("dashboard screenshot: {}", overview.display());

    browser.click(&alice_link);
    let worker_page = format!("/worker/cpu/{}", alice.display_name);
    wait_until("the worker page opens", SHOWS_WITHIN, || browser.url().ends_with(&worker_page));
    wait_for_text(&browser, "#worker .progress", "parsing record 512");
    assert_eq!(browser.text("#worker .completed").as_deref(), Some("3"));
    assert_eq!(browser.text("h1").as_deref(), Some(alice.display_name.as_str()));
    let worker = browser.screenshot(&screenshot_path("worker.png"));
    println!("worker page screenshot: {}", worker.display());

    browser.click("#worker a.job-link");
    wait_until("the job page opens", SHOWS_WITHIN, || browser.url().ends_with("/web/job/4"));
    wait_for_text(&browser, "#job .state", "leased");
    assert_eq!(browser.text("#job-history tr.event-claim td:nth-child(4)").as_deref(), Some(alice.display_name.as_str()));
    // The job page is live too: completing the job moves it on to stage b.
    alice.complete_job("pairs.parquet").unwrap();
    wait_for_text(&browser, "#job .state", "open");
    let rows = browser.eval("return [...document.querySelectorAll('#job-data tr td:first-child')].map(td => td.textContent);");
    assert_eq!(rows, serde_json::json!(["CPU (A)", "GPU (B)"]), "its input at each stage");
}
