//! `cascade jobs …` and `cascade stage …` from the command line, on the database and through a
//! running tracker's admin API, as an operator uses them.

use cascade_tests::{cascade, Daemon};
use cascade_web::TrackerClient;

const TOKEN: &str = "operator-token-0123456789";

/// Runs `cascade ARGS…`, expects success and returns its standard output.
fn ok(args: &[&str]) -> String {
    let (success, stdout, stderr) = cascade(args);
    assert!(success, "cascade {args:?} failed: {stderr}");
    stdout
}

#[test]
fn operators_pause_cancel_requeue_add_and_read_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cascade.toml");
    std::fs::write(&config, format!("project = \"Operators\"\nadmin-token = \"{TOKEN}\"\n")).unwrap();
    let database = dir.path().join("ops.db");
    let jobs = dir.path().join("more.txt");
    std::fs::write(&jobs, "job-3\njob-4\n").unwrap();
    let (config, database, jobs) = (config.to_str().unwrap(), database.to_str().unwrap(), jobs.to_str().unwrap());
    let local = ["--config", config, "--database", database];
    let run = |args: Vec<String>| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    ok(&[&local[..], &["init", "--brace", "job-{1..3}"]].concat());
    assert_eq!(ok(&[&local[..], &["stage", "pause", "a"]].concat()).trim(), "Stage a paused.");
    assert_eq!(ok(&[&local[..], &["stage", "pause", "a"]].concat()).trim(), "Stage a was already paused.");
    assert!(ok(&[&local[..], &["status"]].concat()).contains("paused"));

    let daemon = Daemon::start(&[&local[..], &["--stage", "a=A"]].concat(), 0);
    let workers = TrackerClient::new(&daemon.url);
    assert_eq!(workers.job_count("a").unwrap(), 0, "the pause made on the database holds for the tracker");
    let remote = |args: &[&str]| -> Vec<String> {
        let mut full: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        full.extend(["--tracker".to_owned(), daemon.url.clone(), "--admin-token".to_owned(), TOKEN.to_owned()]);
        full
    };
    assert_eq!(run(remote(&["stage", "resume", "a"])).trim(), "Stage a resumed.");
    assert_eq!(workers.job_count("a").unwrap(), 3);
    assert_eq!(run(remote(&["jobs", "cancel", "2"])).trim(), "Cancelled 1 jobs.");
    assert_eq!(workers.job_count("a").unwrap(), 2);

    let (success, _, stderr) = cascade(&["jobs", "cancel", "3", "--tracker", &daemon.url, "--admin-token", "wrong-token-0123456789"]);
    assert!(!success && stderr.contains("401"), "{stderr}");
    let (success, _, stderr) = cascade(&["jobs", "cancel", "3", "--tracker", &daemon.url]);
    assert!(!success && stderr.contains("admin token"), "{stderr}");
    let (success, _, stderr) = cascade(&[&local[..], &["jobs", "cancel"]].concat());
    assert!(!success && stderr.contains("nothing was changed"), "{stderr}");

    assert_eq!(ok(&[&local[..], &["jobs", "requeue", "2"]].concat()).trim(), "Requeued 1 failed jobs.");
    assert_eq!(workers.job_count("a").unwrap(), 3);
    assert_eq!(run(remote(&["jobs", "add", "--txt", jobs])).trim(), "Added 1 jobs (1 already there).");
    assert_eq!(workers.job_count("a").unwrap(), 4);

    let log = ok(&[&local[..], &["jobs", "log"]].concat());
    let actions: Vec<&str> = log.lines().map(|line| line.split_whitespace().nth(1).unwrap_or("")).collect();
    assert_eq!(actions, ["add", "requeue", "cancel", "resume", "pause"], "{log}");
    let remote_log = run(remote(&["jobs", "log", "--limit", "2"]));
    assert_eq!(remote_log.lines().count(), 2, "{remote_log}");
    assert!(log.lines().next().unwrap().contains("admin@127.0.0.1"), "{log}");
    assert!(log.lines().nth(1).unwrap().contains("cli:"), "{log}");
}
