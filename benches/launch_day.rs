//! The launch-day pipeline as a regression benchmark.
//!
//! Run: `cargo bench --bench launch_day`. The first run records a baseline in
//! `target/bench/launch_day.json`; later runs compare with it and exit non-zero on a regression
//! (`BASELINE=path` to use another file; delete the file to record afresh).

mod common;

#[path = "../examples/launch_day.rs"]
#[allow(dead_code)]
mod launch_day;

use pipeline::bench::{Baseline, Bench};
use pipeline::trace::FlightRecorder;
use pipeline::{Error, Profiler, WorkerConfig};

/// How a throughput run is profiled.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    NotStarted,
    Statistics,
    /// Statistics and CPU samples at this rate (Hz).
    Sampled(u32),
    /// Statistics and a Chrome trace of every event (the native writer).
    Traced,
    /// Statistics and the flight recorder armed, keeping this many milliseconds (nothing
    /// written). A run is ~0.8 s: a 2 s window fills its buffers for the first time (page
    /// faults a service pays once); a 100 ms window lets go of and reuses them, as a service
    /// does all day.
    FlightRecorder(u64),
    /// Statistics, with the metrics endpoint scraped every 100 ms.
    Scraped,
}

/// GETs `/metrics` from `address` every `every` until `stop`; returns the scrapes made.
fn scrape_every(
    address: std::net::SocketAddr,
    every: std::time::Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut scrapes = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if common::http_get(address, "/metrics").is_ok_and(|body| !body.is_empty()) {
                scrapes += 1;
            }
            std::thread::sleep(every);
        }
        scrapes
    })
}

/// One mode's runs: throughput and whole-process CPU per order.
#[derive(Default)]
struct Figures {
    throughput: Vec<f64>,
    cpu_us_per_order: Vec<f64>,
    left_out: u64,
    samples: u64,
    scrapes: u64,
}

/// Orders per second through 2 workers flooded with 40,000 orders: profiler not started,
/// recording statistics, recording with CPU samples at 99 and 999 Hz, and recording with every
/// event traced (built with `--features off`, all are the bare pipeline). Interleaved, medians
/// of 11 rounds (`ROUNDS`), with the whole process's CPU per order (getrusage) beside each. Each ratio is
/// the median of the rounds' own ratios (a mode against recording in the same round), which
/// drift on a shared machine cancels out of.
fn throughput_on_two_workers() -> Result<(), Error> {
    const ORDERS: u64 = 40_000;
    // `ROUNDS=31 cargo bench --bench launch_day` for a closer look at a small difference.
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(11);
    let pipeline = launch_day::pipeline();
    let trace = std::env::temp_dir().join(format!("launch-day-bench-{}.json", std::process::id()));
    let modes = [
        Mode::NotStarted,
        Mode::Statistics,
        Mode::Sampled(99),
        Mode::Sampled(999),
        Mode::Traced,
        Mode::FlightRecorder(2_000),
        Mode::FlightRecorder(100),
        Mode::Scraped,
    ];
    let mut figures: Vec<Figures> = modes.iter().map(|_| Figures::default()).collect();
    for _ in 0..rounds {
        for (mode, figures) in modes.iter().zip(&mut figures) {
            let cpu_before = common::process_cpu_ns();
            let profiler = match *mode {
                Mode::NotStarted => None,
                Mode::Statistics => Some(Profiler::new().start()?),
                Mode::Sampled(hz) => Some(Profiler::new().sample_cpu(hz).start()?),
                Mode::Traced => Some(Profiler::new().chrome_trace(&trace).start()?),
                Mode::FlightRecorder(ms) => Some(
                    Profiler::new()
                        .flight_recorder(
                            FlightRecorder::new(std::time::Duration::from_millis(ms))
                                .tail(std::time::Duration::ZERO)
                                .max_bytes(256 << 20),
                        )
                        .start()?,
                ),
                Mode::Scraped => Some(Profiler::new().serve_metrics("127.0.0.1:0").start()?),
            };
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let scraper = profiler.as_ref().and_then(|p| p.metrics_address()).map(|address| {
                scrape_every(address, std::time::Duration::from_millis(100), stop.clone())
            });
            let run = pipeline
                .run_concurrent(launch_day::orders(ORDERS), WorkerConfig::new(2).queue(1024))?;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(scraper) = scraper {
                figures.scrapes += scraper.join().unwrap_or(0);
            }
            if let Some(profiler) = profiler {
                let report = profiler.finish()?;
                figures.left_out += report.trace.map_or(0, |t| t.spans_left_out);
                figures.left_out += report.flight.map_or(0, |f| f.spans_left_out);
                figures.samples += report.cpu_samples.map_or(0, |cpu| cpu.samples_taken);
            }
            let cpu = (common::process_cpu_ns() - cpu_before) as f64 / 1e9;
            figures.throughput.push(run.throughput_per_sec);
            figures.cpu_us_per_order.push(cpu * 1e6 / ORDERS as f64);
        }
    }
    let _ = std::fs::remove_file(&trace);
    let build = if cfg!(feature = "off") { " (built with --features off)" } else { "" };
    println!("launch_day on 2 workers{build}, medians of {rounds} runs of {ORDERS} orders:");
    let recording = figures[1].throughput.clone();
    for (mode, figures) in modes.iter().zip(figures) {
        let label = match mode {
            Mode::NotStarted => "profiler not started".to_owned(),
            Mode::Statistics => "recording statistics".to_owned(),
            Mode::Sampled(hz) => format!("statistics + CPU samples at {hz} Hz"),
            Mode::Traced => "statistics + every event traced".to_owned(),
            Mode::FlightRecorder(2_000) => {
                "statistics + flight recorder, 2 s (first fill)".to_owned()
            }
            Mode::FlightRecorder(ms) => format!("statistics + flight recorder, {ms} ms (reused)"),
            Mode::Scraped => "statistics + metrics scraped every 100 ms".to_owned(),
        };
        let ratios = figures.throughput.iter().zip(&recording).map(|(x, r)| x / r).collect();
        let throughput = common::median(figures.throughput);
        println!(
            "  {label:<38} {throughput:>8.0} orders/s ({:.3} of recording), {:.2} µs of process \
             CPU per order; {} samples, {} spans left out, {} scrapes",
            common::median(ratios),
            common::median(figures.cpu_us_per_order),
            figures.samples,
            figures.left_out,
            figures.scrapes,
        );
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    if std::env::args().any(|a| a == "--test") {
        return Ok(()); // `cargo test --benches`: nothing to time
    }
    throughput_on_two_workers()?;
    let path =
        std::env::var("BASELINE").unwrap_or_else(|_| "target/bench/launch_day.json".to_owned());
    let pipeline = launch_day::pipeline();
    let bench = Bench::new("launch_day").samples(30).batch(200);
    let result = bench.run(&pipeline, launch_day::order)?;
    println!("{result}");
    match Baseline::load(&path) {
        Ok(baseline) => {
            let comparison = bench.check(&pipeline, launch_day::order, &baseline)?;
            println!("{comparison}");
            if comparison.regressed() {
                std::process::exit(1);
            }
        }
        Err(Error::BaselineMissing { .. }) => {
            if let Some(dir) = std::path::Path::new(&path).parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            result.save_baseline(&path)?;
            println!("recorded the baseline in {path}; later runs compare with it");
        }
        Err(other) => return Err(other),
    }
    Ok(())
}
