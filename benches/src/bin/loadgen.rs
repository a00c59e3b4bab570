//! HTTP load generator: N concurrent workers run newJob → updateProgress → completeJob cycles
//! against a running tracker and report cycles/s and per-request latency percentiles. Beside
//! them it can keep thousands of idle workers polling as distcompute workers without work do
//! (`jobCount`, then `validateWorker` as a heartbeat, every `--idle-every` seconds each).
//!
//! ```text
//! loadgen --url http://127.0.0.1:8080 --workers 64 --seconds 10 --stage a
//! loadgen --url http://127.0.0.1:8080 --url http://127.0.0.1:8081 --workers 0 \
//!     --idle-workers 10000 --idle-every 30 --idle-stages a,b,c --seconds 600 --endpoints
//! ```
//!
//! Every worker is a task with its own keep-alive HTTP/1.1 connection, all on one thread
//! (hyper's client on a current-thread tokio runtime): a thread per worker would spend more CPU
//! switching between threads than the tracker spends answering, on the same cores.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;

/// Load generator for the worker API.
#[derive(Debug, Parser)]
struct Args {
    /// Tracker URL (`http://host:port`); repeat it to spread the workers over several daemons.
    #[arg(long, required = true)]
    url: Vec<String>,
    /// Concurrent workers (one keep-alive connection each).
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Stage to work on.
    #[arg(long, default_value = "a")]
    stage: String,
    /// Print one machine-readable line instead of a sentence.
    #[arg(long)]
    csv: bool,
    /// Also print the latency percentiles of each endpoint.
    #[arg(long)]
    endpoints: bool,
    /// When a stage has no job, wait a little and ask again instead of stopping the worker
    /// (for stages that the stage before them feeds while the load runs).
    #[arg(long)]
    keep_polling: bool,
    /// Idle workers: registered, then polling `jobCount` and `validateWorker` without claiming.
    #[arg(long, default_value_t = 0)]
    idle_workers: usize,
    /// Seconds between two polls of one idle worker.
    #[arg(long, default_value_t = 30)]
    idle_every: u64,
    /// Stages the idle workers register for, in turn (comma-separated; default: `--stage`).
    #[arg(long, value_delimiter = ',')]
    idle_stages: Vec<String>,
    /// Connections the idle workers' requests share.
    #[arg(long, default_value_t = 32)]
    idle_connections: usize,
}

/// Why a worker stopped early.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    #[error("{uri} answered {status}: {body}")]
    Status { uri: String, status: StatusCode, body: String },
    #[error("cannot decode the answer of {uri}: {error}")]
    Decode { uri: &'static str, error: serde_json::Error },
    #[error("{0}")]
    Request(#[from] hyper::http::Error),
}

/// `GET /api/new` answer (the fields the load needs).
#[derive(Deserialize)]
struct Registered {
    token: String,
}

/// `POST /api/newJob` answer.
#[derive(Deserialize)]
struct NewJob {
    data: String,
}

/// One worker's connection to the tracker.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

impl Connection {
    async fn open(authority: &str) -> Result<Self, LoadError> {
        let stream = TcpStream::connect(authority).await.map_err(|e| LoadError::Connect(authority.to_owned(), e))?;
        stream.set_nodelay(true).map_err(|e| LoadError::Connect(authority.to_owned(), e))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::task::spawn_local(async move {
            if let Err(error) = connection.await {
                eprintln!("connection error: {error}");
            }
        });
        Ok(Self { sender, authority: authority.to_owned() })
    }

    /// Sends one request and returns the status and body of the answer.
    async fn call(&mut self, method: Method, uri: &str, body: Option<String>) -> Result<(StatusCode, Bytes), LoadError> {
        let mut request = Request::builder().method(method).uri(uri).header(hyper::header::HOST, &self.authority);
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Sends a request that must succeed.
    async fn expect_ok(&mut self, method: Method, uri: &str, body: Option<String>) -> Result<Bytes, LoadError> {
        let (status, answer) = self.call(method, uri, body).await?;
        if status != StatusCode::OK {
            return Err(refused(uri, status, &answer));
        }
        Ok(answer)
    }
}

fn refused(uri: &str, status: StatusCode, answer: &[u8]) -> LoadError {
    LoadError::Status { uri: uri.to_owned(), status, body: String::from_utf8_lossy(answer).into_owned() }
}

/// What one worker measured.
struct WorkerResult {
    cycles: u64,
    ran_dry: bool,
}

/// The requests measured: a cycle's, in order, then an idle worker's poll.
#[derive(Clone, Copy)]
enum Endpoint {
    NewJob,
    UpdateProgress,
    CompleteJob,
    JobCount,
    ValidateWorker,
}

impl Endpoint {
    const ALL: [Self; 5] = [Self::NewJob, Self::UpdateProgress, Self::CompleteJob, Self::JobCount, Self::ValidateWorker];
    /// The requests of a cycle.
    const CYCLE: usize = 3;

    fn path(self) -> &'static str {
        match self {
            Self::NewJob => "/api/newJob",
            Self::UpdateProgress => "/api/updateProgress",
            Self::CompleteJob => "/api/completeJob",
            Self::JobCount => "/api/jobCount",
            Self::ValidateWorker => "/api/validateWorker",
        }
    }
}

/// Request latencies in microseconds, one histogram per endpoint.
struct Latencies([Histogram<u64>; 5]);

impl Latencies {
    fn new() -> Self {
        // unwrap: these bounds are valid constants.
        Self(std::array::from_fn(|_| Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()))
    }

    /// Every request of the cycles, whatever its endpoint.
    fn cycles(&self) -> Histogram<u64> {
        let mut all = self.0[0].clone();
        for histogram in &self.0[1..Endpoint::CYCLE] {
            // unwrap: histograms with the same bounds always merge.
            all.add(histogram).unwrap();
        }
        all
    }
}

fn record(latencies: &RefCell<Latencies>, endpoint: Endpoint, started: Instant) {
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    latencies.borrow_mut().0[endpoint as usize].saturating_record(micros.max(1));
}

/// The median and 99th percentile of `histogram`, in milliseconds.
fn p50_p99(histogram: &Histogram<u64>) -> (f64, f64) {
    (histogram.value_at_quantile(0.50) as f64 / 1000.0, histogram.value_at_quantile(0.99) as f64 / 1000.0)
}

/// How long a worker that found no job waits before asking again (`--keep-polling`).
const NO_JOB_WAIT: Duration = Duration::from_millis(50);

async fn run_worker(
    authority: String,
    stage: String,
    keep_polling: bool,
    stop: Arc<AtomicBool>,
    latencies: Rc<RefCell<Latencies>>,
) -> Result<WorkerResult, LoadError> {
    let mut conn = Connection::open(&authority).await?;
    let registered = conn.expect_ok(Method::GET, &format!("/api/new?nickname=loadgen&stage={stage}"), None).await?;
    let token = serde_json::from_slice::<Registered>(&registered)
        .map_err(|error| LoadError::Decode { uri: "/api/new", error })?
        .token;
    let token_body = json!({ "token": token }).to_string();
    let progress_body = json!({ "token": token, "progress": "working" }).to_string();
    let (mut cycles, mut ran_dry) = (0, false);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let (status, answer) = conn.call(Method::POST, Endpoint::NewJob.path(), Some(token_body.clone())).await?;
        record(&latencies, Endpoint::NewJob, started);
        if status == StatusCode::FORBIDDEN && keep_polling {
            tokio::time::sleep(NO_JOB_WAIT).await;
            continue;
        }
        if status == StatusCode::FORBIDDEN {
            ran_dry = true;
            break;
        }
        if status != StatusCode::OK {
            return Err(refused("/api/newJob", status, &answer));
        }
        let job: NewJob = serde_json::from_slice(&answer).map_err(|error| LoadError::Decode { uri: "/api/newJob", error })?;
        let started = Instant::now();
        conn.expect_ok(Method::POST, Endpoint::UpdateProgress.path(), Some(progress_body.clone())).await?;
        record(&latencies, Endpoint::UpdateProgress, started);
        let started = Instant::now();
        let complete = json!({ "token": token, "data": job.data }).to_string();
        conn.expect_ok(Method::POST, Endpoint::CompleteJob.path(), Some(complete)).await?;
        record(&latencies, Endpoint::CompleteJob, started);
        cycles += 1;
    }
    conn.expect_ok(Method::POST, "/api/bye", Some(token_body)).await?;
    Ok(WorkerResult { cycles, ran_dry })
}

/// What the idle workers of one connection did.
struct IdleResult {
    polls: u64,
    /// Polls that started later than planned by more than a tenth of the interval.
    late: u64,
}

/// Registers `stages.len()` idle workers over one connection (the i-th for `stages[i]`), then
/// polls for each in turn, spread evenly over `every`, until `stop`.
async fn run_idle(
    authority: String,
    stages: Vec<String>,
    every: Duration,
    stop: Arc<AtomicBool>,
    latencies: Rc<RefCell<Latencies>>,
) -> Result<IdleResult, LoadError> {
    let mut conn = Connection::open(&authority).await?;
    let mut workers = Vec::with_capacity(stages.len());
    for stage in stages {
        let registered = conn.expect_ok(Method::GET, &format!("/api/new?nickname=idle&stage={stage}"), None).await?;
        let token = serde_json::from_slice::<Registered>(&registered)
            .map_err(|error| LoadError::Decode { uri: "/api/new", error })?
            .token;
        workers.push((format!("/api/jobCount?stage={stage}"), json!({ "token": token }).to_string()));
    }
    let spacing = every / u32::try_from(workers.len().max(1)).unwrap_or(u32::MAX);
    let (mut polls, mut late) = (0, 0);
    let mut next = tokio::time::Instant::now();
    'polling: loop {
        for (count_uri, token_body) in &workers {
            if stop.load(Ordering::Relaxed) {
                break 'polling;
            }
            tokio::time::sleep_until(next).await;
            if next.elapsed() > every / 10 {
                late += 1;
            }
            let started = Instant::now();
            conn.expect_ok(Method::GET, count_uri, None).await?;
            record(&latencies, Endpoint::JobCount, started);
            let started = Instant::now();
            conn.expect_ok(Method::POST, Endpoint::ValidateWorker.path(), Some(token_body.clone())).await?;
            record(&latencies, Endpoint::ValidateWorker, started);
            polls += 1;
            next += spacing;
        }
    }
    for (_, token_body) in workers {
        conn.expect_ok(Method::POST, "/api/bye", Some(token_body)).await?;
    }
    Ok(IdleResult { polls, late })
}

/// Deals `n` idle workers' stages (from `stages`, in turn) out to `connections` connections.
fn deal_idle_workers(n: usize, stages: &[String], connections: usize) -> Vec<Vec<String>> {
    let mut dealt = vec![Vec::new(); connections.clamp(1, n.max(1))];
    let parts = dealt.len();
    for i in 0..n {
        dealt[i % parts].push(stages[i % stages.len()].clone());
    }
    dealt.retain(|part| !part.is_empty());
    dealt
}

/// Exits with `message` when a task failed.
fn expect_task<T>(result: Result<Result<T, LoadError>, tokio::task::JoinError>, what: &str) -> T {
    match result {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => {
            eprintln!("{what} failed: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("{what} panicked: {e}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let args = Args::parse();
    let authorities: Vec<String> =
        args.url.iter().map(|url| url.trim_start_matches("http://").trim_end_matches('/').to_owned()).collect();
    let idle_stages = if args.idle_stages.is_empty() { vec![args.stage.clone()] } else { args.idle_stages.clone() };
    // unwrap: a current-thread runtime with I/O and timers always builds.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    let latencies = Rc::new(RefCell::new(Latencies::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (results, idle_results) = local.block_on(&runtime, async {
        let idle: Vec<_> = deal_idle_workers(args.idle_workers, &idle_stages, args.idle_connections)
            .into_iter()
            .enumerate()
            .map(|(i, stages)| {
                let authority = authorities[i % authorities.len()].clone();
                let every = Duration::from_secs(args.idle_every);
                tokio::task::spawn_local(run_idle(authority, stages, every, Arc::clone(&stop), Rc::clone(&latencies)))
            })
            .collect();
        let workers: Vec<_> = (0..args.workers)
            .map(|i| {
                let authority = authorities[i % authorities.len()].clone();
                let worker = run_worker(authority, args.stage.clone(), args.keep_polling, Arc::clone(&stop), Rc::clone(&latencies));
                tokio::task::spawn_local(worker)
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut results = Vec::with_capacity(workers.len());
        for worker in workers {
            results.push(worker.await);
        }
        let mut idle_results = Vec::with_capacity(idle.len());
        for connection in idle {
            idle_results.push(connection.await);
        }
        (results, idle_results)
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (mut cycles, mut ran_dry) = (0, false);
    for result in results {
        let result = expect_task(result, "worker");
        cycles += result.cycles;
        ran_dry |= result.ran_dry;
    }
    let (mut polls, mut late) = (0, 0);
    for result in idle_results {
        let result = expect_task(result, "idle workers");
        polls += result.polls;
        late += result.late;
    }
    if ran_dry {
        eprintln!("warning: the stage ran out of jobs; load more jobs for a full-length run");
    }
    let latencies = latencies.borrow();
    let rate = cycles as f64 / elapsed;
    let (p50, p99) = p50_p99(&latencies.cycles());
    if args.csv {
        println!("{},{cycles},{rate:.0},{p50:.2},{p99:.2}", args.workers);
    } else {
        println!(
            "{} workers: {cycles} cycles in {elapsed:.1}s = {rate:.0} cycles/s; request latency p50 {p50:.2} ms, p99 {p99:.2} ms",
            args.workers
        );
    }
    if args.idle_workers > 0 {
        println!(
            "{} idle workers: {polls} polls in {elapsed:.1}s = {:.0} polls/s, {late} started late",
            args.idle_workers,
            polls as f64 / elapsed
        );
    }
    if args.endpoints {
        for endpoint in Endpoint::ALL {
            let histogram = &latencies.0[endpoint as usize];
            if histogram.is_empty() {
                continue;
            }
            let (p50, p99) = p50_p99(histogram);
            println!("  {}: {} requests, p50 {p50:.2} ms, p99 {p99:.2} ms", endpoint.path(), histogram.len());
        }
    }
}
