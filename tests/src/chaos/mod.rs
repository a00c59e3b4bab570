//! The chaos soak: a three-stage pipeline (`append` stages a, b and c of the
//! `cascade-test-pipeline` binary) runs N jobs on the daemon's local pools and on remote
//! `cascade worker` processes (two for stage b, one for stage c) while a seeded script of
//! faults plays: remote workers and the daemon are killed with SIGKILL and restarted, a remote
//! worker is frozen with SIGSTOP past its lease and thawed, so is the daemon (a stalled host:
//! on waking, its sweep and its own workers holding expired leases race; every 40th job is slow
//! so that some are still running then), the remote workers' connections to the tracker are
//! cut and slowed, and, on PostgreSQL, so are the daemon's connections to the database.
//! Afterwards every job's history is checked ([`history`]): done with the right output, every
//! stage completed exactly once, by the lease current at the time.
//!
//! # Layout
//! - [`Soak`]: what to run (backend, jobs, faults per kind, seed); [`Soak::run`] runs it and
//!   returns a [`Report`] (its `Display` is the summary line).
//! - [`plan`]: the seeded fault script.
//! - [`history`]: the per-job check of the lease protocol.

pub mod history;
pub mod plan;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cascade_tracker::testing::TestDatabase;
use cascade_tracker::{DatabaseUrl, JobStore, StageId, StoreConfig, SystemClock};

use self::history::Tally;
use self::plan::{Fault, FaultKind, Timing};
use crate::fault_proxy::FaultProxy;
use crate::process_log::ProcessLog;
use crate::Daemon;

/// The pipeline's stages and the suffix each appends.
const STAGES: [(StageId, &str); 3] = [(StageId::A, "|a"), (StageId::B, "|b"), (StageId::C, "|c")];
/// The stage of each remote worker process.
const REMOTE_STAGES: [StageId; 3] = [StageId::B, StageId::B, StageId::C];
/// A remote worker's lease (the tracker's idle timeout): a freeze outlasts it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// A local worker's lease (`lease-ttl`): a stall of the daemon outlasts it.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// Every this many-th job takes [`SLOW_MS`] at each stage instead of the soak's stage delay: a
/// job still running when a stalled daemon wakes, so that its sweep and another worker can
/// take the job from under the worker still holding the expired lease.
const SLOW_EVERY: u64 = 40;
/// The work of a slow job at each stage, in milliseconds.
const SLOW_MS: u64 = 500;
/// How long the pipeline may go without completing a stage before the soak gives up on it.
const STALL_LIMIT: Duration = Duration::from_secs(180);
/// How often the chaos loop looks at the clock and the progress.
const TICK: Duration = Duration::from_millis(50);

/// The database a soak runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A database on the test PostgreSQL server, reached by the daemon through a fault proxy.
    Postgres,
}

impl Backend {
    /// The backend's name in logs and the summary.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// What a soak runs.
#[derive(Debug, Clone)]
pub struct Soak {
    /// The database.
    pub backend: Backend,
    /// Jobs loaded.
    pub jobs: u64,
    /// Faults of each kind the script holds.
    pub faults_per_kind: usize,
    /// The script's seed.
    pub seed: u64,
    /// The `cascade-test-pipeline` binary (the `cascade` CLI with the `append` stage).
    pub binary: PathBuf,
    /// Work per job at every stage, local and remote: it sets the pace of the pipeline, and so
    /// how many jobs pass between two faults.
    pub stage_delay: Duration,
}

/// A number from the environment variable `name`, if set.
///
/// # Panics
/// When it is set but not a number.
fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name}={value:?} is not a number")))
}

impl Soak {
    /// The CI soak: 2,000 jobs at 25 ms of work per stage (about a minute on two cores),
    /// four faults of each kind. The seed is `CASCADE_CHAOS_SEED`, else taken from the clock
    /// (and printed, to replay the script).
    pub fn ci(backend: Backend, binary: &Path) -> Self {
        let seed = env_number("CASCADE_CHAOS_SEED").unwrap_or_else(clock_seed);
        let stage_delay = Duration::from_millis(25);
        Self { backend, jobs: 2_000, faults_per_kind: 4, seed, binary: binary.to_owned(), stage_delay }
    }

    /// The full soak: `CASCADE_CHAOS_JOBS` jobs (100,000 by default), `CASCADE_CHAOS_FAULTS`
    /// faults of each kind (by default one per 1,000 jobs, at least four) and
    /// `CASCADE_CHAOS_DELAY_MS` of work per stage (3 ms by default: the long run needs no slow
    /// pace to spread its faults); seeded as [`Soak::ci`].
    pub fn full(backend: Backend, binary: &Path) -> Self {
        let jobs = env_number("CASCADE_CHAOS_JOBS").unwrap_or(100_000).max(1);
        let faults = env_number("CASCADE_CHAOS_FAULTS").map_or((jobs / 1000).max(4) as usize, |n| n as usize);
        let stage_delay = Duration::from_millis(env_number("CASCADE_CHAOS_DELAY_MS").unwrap_or(3));
        Self { jobs, faults_per_kind: faults, stage_delay, ..Self::ci(backend, binary) }
    }

    /// The kinds of fault that apply to the backend.
    fn kinds(&self) -> Vec<FaultKind> {
        let mut kinds = FaultKind::PROCESS_AND_WORKER_LINKS.to_vec();
        if self.backend == Backend::Postgres {
            kinds.extend(FaultKind::DATABASE_LINKS);
        }
        kinds
    }

    /// Runs the soak: loads the jobs, starts the daemon and the remote workers, plays the fault
    /// script, waits for every job, stops everything gracefully and checks the history.
    ///
    /// # Panics
    /// When anything is wrong: a process does not start or stop cleanly, a process panicked,
    /// the pipeline stalls, or a job's history breaks the lease protocol (the message names the
    /// job and shows its history).
    pub fn run(&self) -> Report {
        let started = Instant::now();
        let db = match self.backend {
            Backend::Sqlite => TestDatabase::sqlite(),
            Backend::Postgres => TestDatabase::postgres(),
        };
        let database_proxy = (self.backend == Backend::Postgres).then(|| {
            let (server, authority) = database_server(&db.url_string());
            let proxy = FaultProxy::start(server);
            let url = db.url_string().replacen(&authority, &proxy.addr().to_string(), 1);
            (proxy, url)
        });
        let daemon_database = database_proxy.as_ref().map_or_else(|| db.url_string(), |(_, url)| url.clone());
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("cascade.toml");
        std::fs::write(&config, pipeline_config(&daemon_database, self.stage_delay)).expect("the configuration is written");
        let timing = Timing { worker_lease: IDLE_TIMEOUT, local_lease: LEASE_TTL };
        let script = plan::script(self.seed, &self.kinds(), self.faults_per_kind, REMOTE_STAGES.len(), timing);
        println!(
            "chaos {}: seed {} (CASCADE_CHAOS_SEED={} replays the script), {} jobs, {:?} per stage, {} faults",
            self.backend.name(),
            self.seed,
            self.seed,
            self.jobs,
            self.stage_delay,
            script.len()
        );

        let daemon_log = ProcessLog::new();
        let brace = format!("job-{{1..{}}}", self.jobs);
        let config_arg = config.to_str().expect("a UTF-8 path");
        let first_args = ["run", "--config", config_arg, "--no-progress", "--brace", &brace];
        let daemon = Daemon::start_logged(&self.binary, &first_args, 0, Some(dir.path()), Some(Arc::clone(&daemon_log)));
        let tracker_proxy = FaultProxy::start(daemon.url.trim_start_matches("http://").parse().expect("the daemon's address"));
        let store = reader(&db);
        let mut chaos = Chaos {
            soak: self,
            dir: dir.path().to_owned(),
            config: config.clone(),
            port: daemon.port(),
            daemon: Some(daemon),
            daemon_log,
            workers: Vec::new(),
            worker_log: ProcessLog::new(),
            tracker_url: format!("http://{}", tracker_proxy.addr()),
            tracker_proxy,
            database_proxy: database_proxy.map(|(proxy, _)| proxy),
            store,
            active: Vec::new(),
            injected: BTreeMap::new(),
            started,
            progress: Progress::default(),
            late: 0,
        };
        chaos.workers = REMOTE_STAGES.iter().map(|&stage| Remote { stage, child: None, frozen: false }).collect();
        for index in 0..REMOTE_STAGES.len() {
            chaos.spawn_worker(index);
        }
        chaos.play(&script);
        chaos.wait_until_done();
        chaos.stop_everything();
        let tally = chaos.check_history();
        Report {
            backend: self.backend,
            seed: self.seed,
            jobs: self.jobs,
            injected: chaos.injected.clone(),
            late: chaos.late,
            tally,
            wall: started.elapsed(),
        }
    }
}

/// A seed from the clock.
fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
}

/// The PostgreSQL server of `url` (`postgres://user@host:port/db`): its address, and the
/// `host:port` text to replace with a proxy's address.
fn database_server(url: &str) -> (SocketAddr, String) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let with_port = if host.contains(':') { host.to_owned() } else { format!("{host}:5432") };
    let addr = with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("cannot resolve the PostgreSQL server {host}"));
    (addr, host.to_owned())
}

/// `cascade.toml` of the soak's pipeline: short leases and sweeps so faults resolve in
/// seconds, attempts enough that no job runs out of them, and local pools for every stage.
fn pipeline_config(database: &str, stage_delay: Duration) -> String {
    let delay_ms = stage_delay.as_millis();
    let stage = |(stage, suffix): (StageId, &str), workers: usize| {
        let letter = stage.letter();
        format!(
            "[stages.{letter}]\nname = \"{letter}\"\nkind = \"append\"\nworkers = {workers}\nqueue = 8\n\
             [stages.{letter}.settings]\nsuffix = \"{suffix}\"\ndelay-ms = {delay_ms}\n\
             slow-every = {SLOW_EVERY}\nslow-ms = {SLOW_MS}\n"
        )
    };
    format!(
        "project = \"chaos\"\ndatabase = \"{database}\"\nsweep-interval = \"250ms\"\nidle-timeout = \"{}ms\"\n\
         [engine]\nartifacts = \"artifacts\"\nlease-ttl = \"{}ms\"\nmax-attempts = 1000\nretry-backoff = \"50ms\"\n\
         max-retry-backoff = \"500ms\"\nshutdown-grace = \"1s\"\npoll-interval = \"50ms\"\n{}{}{}",
        IDLE_TIMEOUT.as_millis(),
        LEASE_TTL.as_millis(),
        stage(STAGES[0], 2),
        stage(STAGES[1], 1),
        stage(STAGES[2], 1),
    )
}

/// A store on the soak's database, beside the daemon (never through a proxy).
fn reader(db: &TestDatabase) -> JobStore {
    let config = StoreConfig {
        stage_names: [Some("a".into()), Some("b".into()), Some("c".into()), None, None],
        ..StoreConfig::default()
    };
    JobStore::open(&DatabaseUrl::parse(&db.url_string()), config, Arc::new(SystemClock), 4).expect("the store opens")
}

/// One remote worker process slot.
#[derive(Debug)]
struct Remote {
    stage: StageId,
    /// The process, while it runs.
    child: Option<Child>,
    /// Whether it is stopped with SIGSTOP.
    frozen: bool,
}

impl Remote {
    fn is_up(&self) -> bool {
        self.child.is_some()
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with SIGKILL (frozen or not) and reaps it.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.frozen = false;
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends `signal` (`-STOP`, `-CONT`, `-TERM`) to `pid`.
///
/// # Panics
/// When `kill` fails.
fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill").args([signal, &pid.to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill {signal} {pid} failed");
}

/// Stage completions so far, and when they last grew.
#[derive(Debug)]
struct Progress {
    completions: i64,
    done: i64,
    since: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Self { completions: 0, done: 0, since: Instant::now() }
    }
}

/// How a fault in progress ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Restart remote worker `index`.
    RestartWorker(usize),
    /// Restart the daemon (once the database link is up again).
    RestartDaemon,
    /// Thaw remote worker `index` if it is still the process that was frozen (`pid`).
    Thaw { index: usize, pid: u32 },
    /// Thaw the daemon if it is still the process that was frozen (`pid`).
    ThawDaemon { pid: u32 },
    /// Reconnect the remote workers' links.
    RestoreWorkerLinks,
    /// Stop delaying the remote workers' links.
    UndelayWorkerLinks,
    /// Reconnect the database link.
    RestoreDatabase,
    /// Stop delaying the database link.
    UndelayDatabase,
}

/// The running soak: its processes, proxies and the faults in progress.
struct Chaos<'a> {
    soak: &'a Soak,
    dir: PathBuf,
    config: PathBuf,
    port: u16,
    /// The daemon, while it runs.
    daemon: Option<Daemon>,
    daemon_log: Arc<ProcessLog>,
    workers: Vec<Remote>,
    worker_log: Arc<ProcessLog>,
    /// The tracker's URL as the remote workers see it (through the proxy).
    tracker_url: String,
    tracker_proxy: FaultProxy,
    database_proxy: Option<FaultProxy>,
    store: JobStore,
    /// Faults in progress: kind, when each ends, and how.
    active: Vec<(FaultKind, Instant, Ending)>,
    injected: BTreeMap<FaultKind, usize>,
    started: Instant,
    progress: Progress,
    /// Faults that started after the last job was done.
    late: usize,
}

impl Chaos<'_> {
    fn log(&self, what: &str) {
        println!("chaos {:>8.1}s  {what}", self.started.elapsed().as_secs_f64());
    }

    /// Starts remote worker `index` (for its stage).
    fn spawn_worker(&mut self, index: usize) {
        let stage = self.workers[index].stage;
        let (_, suffix) = STAGES.iter().find(|(s, _)| *s == stage).expect("a pipeline stage");
        let delay_ms = self.soak.stage_delay.as_millis();
        let settings = format!(
            r#"{{"suffix": "{suffix}", "delay-ms": {delay_ms}, "slow-every": {SLOW_EVERY}, "slow-ms": {SLOW_MS}}}"#
        );
        let mut child = Command::new(&self.soak.binary)
            .args(["worker", "--config", self.config.to_str().expect("a UTF-8 path"), "--tracker", &self.tracker_url])
            .args(["--stage", stage.letter(), "--kind", "append", "--nickname", "remote", "--settings", &settings])
            .current_dir(&self.dir)
            .env("CASCADE_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("a remote worker starts");
        if let Some(stderr) = child.stderr.take() {
            self.worker_log.attach(&format!("worker {index} ({stage}) {}", child.id()), stderr);
        }
        self.workers[index] = Remote { stage, child: Some(child), frozen: false };
    }

    fn start_daemon(&mut self) {
        let config = self.config.to_str().expect("a UTF-8 path");
        let args = ["run", "--config", config, "--no-progress"];
        let log = Some(Arc::clone(&self.daemon_log));
        self.daemon = Some(Daemon::start_logged(&self.soak.binary, &args, self.port, Some(&self.dir), log));
    }

    /// Reads the progress; panics with the logs when it has not moved for [`STALL_LIMIT`].
    fn observe(&mut self) {
        let Ok(counts) = self.store.stage_counts() else { return };
        let completions: i64 = counts.iter().map(|c| c.done).sum();
        let done = counts[STAGES.len() - 1].done;
        if completions != self.progress.completions {
            self.progress = Progress { completions, done, since: Instant::now() };
        }
        if self.progress.since.elapsed() > STALL_LIMIT {
            panic!(
                "the pipeline stalled at {completions} stage completions: {counts:?}\n--- daemon log:\n{}\n--- worker log:\n{}",
                self.daemon_log.tail(60),
                self.worker_log.tail(60)
            );
        }
    }

    fn is_active(&self, kind: FaultKind) -> bool {
        self.active.iter().any(|(active, _, _)| *active == kind)
    }

    /// Ends the faults that are due.
    fn end_due(&mut self) {
        let now = Instant::now();
        let mut index = 0;
        while index < self.active.len() {
            let (kind, at, ending) = self.active[index];
            // The daemon cannot start while its database is unreachable: it stays down longer.
            let blocked = matches!(ending, Ending::RestartDaemon) && self.is_active(FaultKind::CutDatabase);
            if at > now || blocked {
                index += 1;
                continue;
            }
            self.active.remove(index);
            self.end(kind, ending);
        }
    }

    fn end(&mut self, kind: FaultKind, ending: Ending) {
        match ending {
            Ending::RestartWorker(index) => {
                self.spawn_worker(index);
                self.log(&format!("{}: worker {index} restarted (pid {})", kind.name(), self.workers[index].pid().unwrap_or(0)));
            }
            Ending::RestartDaemon => {
                self.start_daemon();
                self.log(&format!("{}: daemon restarted", kind.name()));
            }
            Ending::Thaw { index, pid } => {
                let worker = &mut self.workers[index];
                if worker.frozen && worker.pid() == Some(pid) {
                    signal(pid, "-CONT");
                    worker.frozen = false;
                    self.log(&format!("{}: worker {index} thawed (SIGCONT)", kind.name()));
                } else {
                    self.log(&format!("{}: worker {index} was killed while frozen", kind.name()));
                }
            }
            Ending::ThawDaemon { pid } => {
                if self.daemon.as_ref().is_some_and(|daemon| daemon.pid() == pid) {
                    signal(pid, "-CONT");
                    self.log(&format!("{}: daemon thawed (SIGCONT)", kind.name()));
                } else {
                    self.log(&format!("{}: the daemon was killed while frozen", kind.name()));
                }
            }
            Ending::RestoreWorkerLinks => {
                self.tracker_proxy.restore();
                self.log(&format!("{}: links restored", kind.name()));
            }
            Ending::UndelayWorkerLinks => {
                self.tracker_proxy.delay(Duration::ZERO);
                self.log(&format!("{}: delay off", kind.name()));
            }
            Ending::RestoreDatabase => {
                self.database().restore();
                self.log(&format!("{}: database link restored", kind.name()));
            }
            Ending::UndelayDatabase => {
                self.database().delay(Duration::ZERO);
                self.log(&format!("{}: database delay off", kind.name()));
            }
        }
    }

    fn database(&self) -> &FaultProxy {
        self.database_proxy.as_ref().expect("database faults only on PostgreSQL")
    }

    /// The live, unfrozen remote worker at or after `index` (cyclically).
    fn live_worker(&self, index: usize) -> Option<usize> {
        let n = self.workers.len();
        (0..n).map(|step| (index + step) % n).find(|&i| self.workers[i].is_up() && !self.workers[i].frozen)
    }

    /// Starts `fault`; returns how it ends, or `None` when it cannot start yet (its target is
    /// down).
    fn start(&mut self, fault: &Fault) -> Option<Ending> {
        let kind = fault.kind.name();
        let ending = match fault.kind {
            FaultKind::KillWorker => {
                let n = self.workers.len();
                let index = (0..n).map(|step| (fault.worker + step) % n).find(|&i| self.workers[i].is_up())?;
                let (pid, frozen) = (self.workers[index].pid().unwrap_or(0), self.workers[index].frozen);
                self.workers[index].kill9();
                let note = if frozen { " (frozen)" } else { "" };
                self.log(&format!("{kind}: kill -9 worker {index}{note} (pid {pid}), down for {:?}", fault.hold));
                Ending::RestartWorker(index)
            }
            FaultKind::KillDaemon => {
                let mut daemon = self.daemon.take()?;
                daemon.kill9();
                self.log(&format!("{kind}: kill -9 daemon (pid {}), down for {:?}", daemon.pid(), fault.hold));
                Ending::RestartDaemon
            }
            FaultKind::FreezeWorker => {
                let index = self.live_worker(fault.worker)?;
                let pid = self.workers[index].pid()?;
                signal(pid, "-STOP");
                self.workers[index].frozen = true;
                self.log(&format!("{kind}: SIGSTOP worker {index} (pid {pid}) for {:?}", fault.hold));
                Ending::Thaw { index, pid }
            }
            FaultKind::FreezeDaemon => {
                let pid = self.daemon.as_ref()?.pid();
                signal(pid, "-STOP");
                self.log(&format!("{kind}: SIGSTOP daemon (pid {pid}) for {:?}", fault.hold));
                Ending::ThawDaemon { pid }
            }
            FaultKind::CutWorkerLinks => {
                self.tracker_proxy.cut();
                self.log(&format!("{kind}: remote workers cut off from the tracker for {:?}", fault.hold));
                Ending::RestoreWorkerLinks
            }
            FaultKind::DelayWorkerLinks => {
                self.tracker_proxy.delay(fault.delay);
                self.log(&format!("{kind}: {:?} per chunk to the tracker for {:?}", fault.delay, fault.hold));
                Ending::UndelayWorkerLinks
            }
            FaultKind::CutDatabase => {
                self.database().cut();
                self.log(&format!("{kind}: daemon cut off from PostgreSQL for {:?}", fault.hold));
                Ending::RestoreDatabase
            }
            FaultKind::DelayDatabase => {
                self.database().delay(fault.delay);
                self.log(&format!("{kind}: {:?} per chunk to PostgreSQL for {:?}", fault.delay, fault.hold));
                Ending::UndelayDatabase
            }
        };
        Some(ending)
    }

    /// Plays the script. Fault `i` of `K` starts once the previous one started `gap` ago, no
    /// fault of its kind is in progress, its target is up, and the pipeline has made
    /// `(i + 1) / (K + 2)` of its stage completions, so the faults spread over the whole run.
    /// Returns once every fault has ended.
    fn play(&mut self, script: &[Fault]) {
        let total = 3 * self.soak.jobs as i64;
        let mut previous = Instant::now();
        for (i, fault) in script.iter().enumerate() {
            let due = total * (i as i64 + 1) / (script.len() as i64 + 2);
            loop {
                self.end_due();
                self.observe();
                if previous.elapsed() >= fault.gap && self.progress.completions >= due && !self.is_active(fault.kind) {
                    if let Some(ending) = self.start(fault) {
                        self.active.push((fault.kind, Instant::now() + fault.hold, ending));
                        *self.injected.entry(fault.kind).or_default() += 1;
                        if self.progress.done == self.soak.jobs as i64 {
                            self.late += 1;
                        }
                        previous = Instant::now();
                        break;
                    }
                }
                std::thread::sleep(TICK);
            }
        }
        while !self.active.is_empty() {
            self.end_due();
            self.observe();
            std::thread::sleep(TICK);
        }
        self.log("every fault has ended");
    }

    fn wait_until_done(&mut self) {
        while self.progress.done < self.soak.jobs as i64 {
            self.observe();
            std::thread::sleep(Duration::from_millis(200));
        }
        let counts = self.store.stage_counts().expect("the counts");
        assert!(counts.iter().all(|c| c.open == 0 && c.leased == 0 && c.failed == 0), "{counts:?}");
        self.log("every job is done");
    }

    /// Stops the remote workers and the daemon with SIGTERM: each must exit successfully; and
    /// no process may have panicked at any point.
    fn stop_everything(&mut self) {
        for (index, worker) in self.workers.iter_mut().enumerate() {
            let Some(mut child) = worker.child.take() else { continue };
            signal(child.id(), "-TERM");
            let status = wait_child(&mut child, Duration::from_secs(30));
            assert!(status.is_some_and(|s| s.success()), "remote worker {index} stopped with {status:?}");
        }
        if let Some(mut daemon) = self.daemon.take() {
            daemon.terminate();
            let status = daemon.wait_exit(Duration::from_secs(30));
            assert!(status.is_some_and(|s| s.success()), "the daemon stopped with {status:?}\n{}", self.daemon_log.tail(40));
        }
        let panics: Vec<String> = self.daemon_log.panics().into_iter().chain(self.worker_log.panics()).collect();
        assert!(panics.is_empty(), "processes panicked:\n{}", panics.join("\n"));
    }

    /// Checks every job's history on a few threads; panics listing the first violations.
    fn check_history(&self) -> Tally {
        let jobs = self.soak.jobs as i64;
        let loaded = self.store.jobs(None, None, 0, 1).expect("the job list").total;
        assert_eq!(loaded, jobs, "jobs in the database");
        const THREADS: i64 = 4;
        let results: Vec<(Tally, Vec<String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|offset| {
                    let store = self.store.clone();
                    scope.spawn(move || {
                        let (mut tally, mut errors) = (Tally::default(), Vec::new());
                        for number in (1 + offset..=jobs).step_by(THREADS as usize) {
                            let job = store.job(number).expect("the job's history");
                            match history::check_job(number, &job, &STAGES, &format!("job-{number}")) {
                                Ok(one) => tally.add(&one),
                                Err(error) => errors.push(error),
                            }
                        }
                        (tally, errors)
                    })
                })
                .collect();
            handles.into_iter().map(|handle| handle.join().expect("a checker thread")).collect()
        });
        let mut tally = Tally::default();
        let mut errors = Vec::new();
        for (one, mut found) in results {
            tally.add(&one);
            errors.append(&mut found);
        }
        errors.truncate(10);
        assert!(errors.is_empty(), "histories that break the lease protocol:\n{}", errors.join("\n"));
        assert_eq!(tally.completions, 3 * jobs as usize, "every stage of every job completed once");
        assert!(
            tally.duplicates <= tally.expiries + tally.releases,
            "{} stages ran again, but only {} leases expired and {} were given back",
            tally.duplicates,
            tally.expiries,
            tally.releases
        );
        tally
    }
}

/// Waits up to `limit` for `child` to exit.
fn wait_child(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a soak did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The database.
    pub backend: Backend,
    /// The script's seed.
    pub seed: u64,
    /// Jobs run.
    pub jobs: u64,
    /// Faults injected, by kind.
    pub injected: BTreeMap<FaultKind, usize>,
    /// Faults that started after the last job was done (on an idle pipeline).
    pub late: usize,
    /// The histories' totals.
    pub tally: Tally,
    /// From the database's creation to the end of the history check.
    pub wall: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let faults: Vec<String> = self.injected.iter().map(|(kind, n)| format!("{}={n}", kind.name())).collect();
        let t = &self.tally;
        write!(
            f,
            "chaos summary: backend={} jobs={} seed={} faults[{}] total={} late={} claims={} completions={} \
             duplicates={} expiries={} releases={} lost=0 stale=0 wall={:.1}s",
            self.backend.name(),
            self.jobs,
            self.seed,
            faults.join(" "),
            self.injected.values().sum::<usize>(),
            self.late,
            t.claims,
            t.completions,
            t.duplicates,
            t.expiries,
            t.releases,
            self.wall.as_secs_f64()
        )
    }
}
