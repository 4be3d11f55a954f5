//! How long a scrape of the metrics endpoint takes for a process with 50 stages (each with a
//! profiled function) and 8 workers, while the pool runs: the target is under 5 ms.
//!
//! Run: `cargo bench --bench metrics_scrape`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::{profiled, stage, Pipeline, Profiler, WorkerConfig, WorkerPool};

#[profiled]
fn work(n: u64) -> u64 {
    std::hint::black_box(n.rotate_left(7) ^ 0x9e37_79b9)
}

macro_rules! stages {
    ($($name:ident),* $(,)?) => {
        $(
            struct $name;
            #[stage]
            impl $name {
                fn process(&self, n: u64) -> u64 {
                    work(n)
                }
            }
        )*
        fn pipeline() -> Pipeline<u64> {
            Pipeline::new()$(.stage($name))*
        }
    };
}

stages!(
    S00, S01, S02, S03, S04, S05, S06, S07, S08, S09, S10, S11, S12, S13, S14, S15, S16, S17, S18,
    S19, S20, S21, S22, S23, S24, S25, S26, S27, S28, S29, S30, S31, S32, S33, S34, S35, S36, S37,
    S38, S39, S40, S41, S42, S43, S44, S45, S46, S47, S48, S49,
);

/// One scrape: its time and the exposition's size.
fn scrape(address: SocketAddr) -> (Duration, usize) {
    let started = Instant::now();
    let body = common::http_get(address, "/metrics").expect("a scrape");
    (started.elapsed(), body.len())
}

fn main() -> Result<(), pipeline::Error> {
    if std::env::args().any(|a| a == "--test") {
        return Ok(());
    }
    let session = Profiler::new().serve_metrics("127.0.0.1:0").start()?;
    let address = session.metrics_address().expect("serving");
    let pool = WorkerPool::start(Arc::new(pipeline()), WorkerConfig::new(8).queue(4096))?;
    // Every stage and function row exists on every worker before the scrapes are timed.
    for n in 0..20_000 {
        pool.submit(n).expect("open");
    }
    while pool.queue_len() > 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (_, bytes) = scrape(address);
    let mut times: Vec<Duration> = (0..200).map(|_| scrape(address).0).collect();
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "metrics scrape, 50 stages x 1 function, 8 workers, pool running: median {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms over {} scrapes; {} bytes of exposition (target: under 5 ms)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3,
        times.len(),
        bytes,
    );
    pool.join()?;
    session.finish()?;
    Ok(())
}
