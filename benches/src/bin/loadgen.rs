//! HTTP load generator: N concurrent workers run newJob → updateProgress → completeJob cycles
//! against a running tracker and report cycles/s and per-request latency percentiles.
//!
//! ```text
//! loadgen --url http://127.0.0.1:8080 --workers 64 --seconds 10 --stage a
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cascade_web::{ClientError, TrackerClient};
use clap::Parser;
use hdrhistogram::Histogram;

/// Load generator for the worker API.
#[derive(Debug, Parser)]
struct Args {
    /// Tracker URL.
    #[arg(long)]
    url: String,
    /// Concurrent workers (one thread and one keep-alive connection each).
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
}

/// What one worker measured.
struct WorkerResult {
    cycles: u64,
    latencies: Histogram<u64>,
    ran_dry: bool,
}

fn timed<T>(histogram: &mut Histogram<u64>, call: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let result = call();
    let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
    result
}

fn run_worker(client: &TrackerClient, stage: &str, stop: &AtomicBool) -> Result<WorkerResult, ClientError> {
    let session = client.register("loadgen", stage)?;
    // unwrap: these bounds are valid constants.
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut cycles = 0;
    let mut ran_dry = false;
    while !stop.load(Ordering::Relaxed) {
        let job = match timed(&mut latencies, || session.new_job()) {
            Ok(job) => job,
            Err(ClientError::NoJob(_)) => {
                ran_dry = true;
                break;
            }
            Err(e) => return Err(e),
        };
        timed(&mut latencies, || session.log("working"))?;
        timed(&mut latencies, || session.complete_job(&job.data))?;
        cycles += 1;
    }
    session.bye();
    Ok(WorkerResult { cycles, latencies, ran_dry })
}

fn main() {
    let args = Args::parse();
    let client = TrackerClient::new(&args.url);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..args.workers)
        .map(|_| {
            let (client, stop, stage) = (client.clone(), Arc::clone(&stop), args.stage.clone());
            std::thread::spawn(move || run_worker(&client, &stage, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut cycles = 0;
    let mut ran_dry = false;
    for thread in threads {
        match thread.join() {
            Ok(Ok(result)) => {
                cycles += result.cycles;
                ran_dry |= result.ran_dry;
                // unwrap: histograms with identical bounds always merge.
                total.add(&result.latencies).unwrap();
            }
            Ok(Err(e)) => {
                eprintln!("worker failed: {e}");
                std::process::exit(1);
            }
            Err(_) => {
                eprintln!("worker panicked");
                std::process::exit(1);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if ran_dry {
        eprintln!("warning: the stage ran out of jobs; load more jobs for a full-length run");
    }
    let rate = cycles as f64 / elapsed;
    let (p50, p99) = (total.value_at_quantile(0.50) as f64 / 1000.0, total.value_at_quantile(0.99) as f64 / 1000.0);
    if args.csv {
        println!("{},{cycles},{rate:.0},{p50:.2},{p99:.2}", args.workers);
    } else {
        println!(
            "{} workers: {cycles} cycles in {elapsed:.1}s = {rate:.0} cycles/s; request latency p50 {p50:.2} ms, p99 {p99:.2} ms",
            args.workers
        );
    }
}
