//! An async service on tokio: requests are authenticated against a session store (a network
//! call), get recommendations computed (CPU), and are written through to a cache (another
//! network call). Worker tasks take them from a bounded queue. Then traffic doubles.
//!
//! The slowest stage by the clock is the session lookup, but it spends its time awaiting, not
//! computing; the report's `busy` column and the diagnoses tell the two apart and name the stage
//! that holds the CPU.
//!
//! Run: `cargo run --release --example async_service`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::run::RunSummary;
use pipeline::{
    profiled, stage, AsyncPipeline, AsyncWorkerPool, CountingAllocator, Profiler, Report,
    WorkerConfig,
};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

/// A request as it arrives.
#[derive(Clone, Debug)]
pub struct Request {
    pub id: u64,
    pub user: String,
}

/// A request whose user is known.
#[derive(Debug)]
pub struct Session {
    pub request: Request,
    pub tier: u8,
}

/// A response ready to send.
#[derive(Debug)]
pub struct Response {
    pub id: u64,
    pub items: Vec<u64>,
}

/// Looks the user's session up in a remote store: a network round trip of ~2 ms.
pub struct Authenticate;

#[stage]
impl Authenticate {
    async fn process(&self, request: Request) -> Session {
        let tier = fetch_session(&request.user).await;
        Session { request, tier }
    }
}

/// The session store's answer, after the network's delay.
#[profiled]
async fn fetch_session(user: &str) -> u8 {
    tokio::time::sleep(Duration::from_millis(2)).await;
    (user.len() % 3) as u8
}

/// Scores candidate items for the user: the CPU-heavy step.
pub struct Recommend;

#[stage]
impl Recommend {
    fn process(&self, session: Session) -> Response {
        let items = score_candidates(session.request.id, session.tier);
        Response { id: session.request.id, items }
    }
}

/// A synthetic ranking model: ~250 µs of arithmetic per request.
#[profiled]
fn score_candidates(id: u64, tier: u8) -> Vec<u64> {
    let mut scores = Vec::with_capacity(8);
    let mut h = id ^ u64::from(tier);
    for candidate in 0..8u64 {
        for round in 0..15_000u64 {
            h = black_box(h.rotate_left(5) ^ round ^ candidate).wrapping_mul(0x100_0000_01b3);
        }
        scores.push(h % 1000);
    }
    scores
}

/// Writes the response through to a remote cache: ~1 ms round trip.
pub struct CacheWrite;

#[stage]
impl CacheWrite {
    async fn process(&self, response: Response) -> Response {
        store(&response).await;
        response
    }
}

#[profiled]
async fn store(response: &Response) {
    tokio::time::sleep(Duration::from_millis(1)).await;
    black_box((response.id, response.items.len()));
}

/// The service's pipeline.
pub fn pipeline() -> Arc<AsyncPipeline<Request, Response>> {
    Arc::new(
        AsyncPipeline::new().stage_async(Authenticate).stage(Recommend).stage_async(CacheWrite),
    )
}

/// Request number `id`.
pub fn request(id: u64) -> Request {
    const USERS: [&str; 4] = ["ana", "bo", "chidi", "dmitri"];
    Request { id, user: USERS[(id % 4) as usize].to_owned() }
}

/// Worker tasks: requests in flight at once (most of them awaiting the network).
pub const WORKERS: usize = 64;
const QUEUE: usize = 1024;

/// Feeds `events` requests to a fresh pool at `rate` per second (as fast as the queue takes
/// them for `None`) and returns the run's summary.
pub async fn serve(
    pipeline: &Arc<AsyncPipeline<Request, Response>>,
    events: u64,
    rate: Option<f64>,
) -> Result<RunSummary, pipeline::Error> {
    let pool =
        AsyncWorkerPool::start(Arc::clone(pipeline), WorkerConfig::new(WORKERS).queue(QUEUE))?;
    let start = tokio::time::Instant::now();
    for id in 0..events {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(id as f64 / rate);
            if due > tokio::time::Instant::now() {
                tokio::time::sleep_until(due).await;
            }
        }
        if pool.submit(request(id)).await.is_err() {
            break; // closed: cannot happen while `pool` is ours
        }
    }
    pool.finish().await
}

/// One phase of the day.
pub struct Phase {
    pub label: &'static str,
    pub arrival_rate: f64,
    pub report: Report,
}

impl Phase {
    /// The phase's run (the load section of its report).
    pub fn run(&self) -> &RunSummary {
        &self.report.runs[0]
    }
}

/// The scenario's figures: capacity with and without recording, then the two phases.
pub struct Day {
    pub capacity_per_sec: f64,
    pub capacity_unrecorded_per_sec: f64,
    pub normal: Phase,
    pub doubled: Phase,
}

/// The most requests per second the service takes (best of three short runs, since another
/// process taking a core can only slow a run down), with the profiler on or off.
async fn capacity(
    pipeline: &Arc<AsyncPipeline<Request, Response>>,
    events: u64,
    recorded: bool,
) -> Result<f64, pipeline::Error> {
    let mut best: f64 = 0.0;
    for _ in 0..3 {
        let session = if recorded { Some(Profiler::new().start()?) } else { None };
        let run = serve(pipeline, events, None).await?;
        if let Some(session) = session {
            session.finish()?;
        }
        best = best.max(run.throughput_per_sec);
    }
    Ok(best)
}

async fn phase(
    pipeline: &Arc<AsyncPipeline<Request, Response>>,
    label: &'static str,
    rate: f64,
    events: u64,
    trace: Option<&Path>,
) -> Result<Phase, pipeline::Error> {
    let profiler = Profiler::new();
    let profiler = match trace {
        Some(path) => profiler.name("async_service").chrome_trace(path),
        None => profiler,
    };
    let session = profiler.start()?;
    serve(pipeline, events, Some(rate)).await?;
    let report = session.finish()?;
    Ok(Phase { label, arrival_rate: rate, report })
}

/// Runs the day on the current runtime: capacity, then `events` requests at 60 % of it, then
/// `events` at twice that rate. With `trace_dir`, each phase writes a Chrome trace there.
pub async fn run_scenario(events: u64, trace_dir: Option<&Path>) -> Result<Day, pipeline::Error> {
    let pipeline = pipeline();
    let capacity_unrecorded_per_sec = capacity(&pipeline, events / 2, false).await?;
    let capacity_per_sec = capacity(&pipeline, events / 2, true).await?;
    let trace = |name: &str| trace_dir.map(|dir| dir.join(name));
    let normal_rate = 0.6 * capacity_per_sec;
    let normal =
        phase(&pipeline, "normal traffic", normal_rate, events, trace("normal.json").as_deref())
            .await?;
    let doubled_trace = trace("doubled.json");
    let doubled =
        phase(&pipeline, "doubled traffic", 2.0 * normal_rate, events, doubled_trace.as_deref())
            .await?;
    Ok(Day { capacity_per_sec, capacity_unrecorded_per_sec, normal, doubled })
}

/// A runtime like a small service's: two worker threads.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a tokio runtime")
}

#[allow(dead_code)] // tests include this file as a module and call `run_scenario` directly
fn main() -> Result<(), pipeline::Error> {
    let trace_dir = Path::new("target/async_service");
    std::fs::create_dir_all(trace_dir).map_err(|source| pipeline::Error::Write {
        what: "trace directory",
        path: trace_dir.into(),
        source,
    })?;
    let started = Instant::now();
    let day = runtime().block_on(run_scenario(5_000, Some(trace_dir)))?;
    println!(
        "Async service: {WORKERS} worker tasks on 2 runtime threads; capacity {:.0} requests/s \
         recorded, {:.0}/s without the profiler ({:.1} % of it).\n",
        day.capacity_per_sec,
        day.capacity_unrecorded_per_sec,
        100.0 * day.capacity_per_sec / day.capacity_unrecorded_per_sec.max(1.0),
    );
    for phase in [&day.normal, &day.doubled] {
        println!(
            "=== {} ({:.0} requests/s) ===\n{}\n",
            phase.label, phase.arrival_rate, phase.report
        );
    }
    println!("Normal traffic:  {}", day.normal.run().diagnosis);
    println!("Doubled traffic: {}", day.doubled.run().diagnosis);
    println!(
        "\nTraces: {0}/normal.json and {0}/doubled.json (one async slice per request, its stages \
         nested, each poll on the thread that ran it): open them in https://ui.perfetto.dev\n\
         ({1:.1} s in all)",
        trace_dir.display(),
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}
