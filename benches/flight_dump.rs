//! What writing a flight recorder dump costs a busy pipeline: how long writing a 2 s window
//! takes, and how many events per second the workers kept taking while it was written, against
//! the second before.
//!
//! Run: `cargo bench --bench flight_dump`.
//!
//! The launch-day pipeline runs on a `WorkerPool` fed as fast as it takes orders, with the
//! flight recorder armed (2 s window). Every 3 s the window is dumped on demand; a sampler
//! thread counts accepted orders every 10 ms. Run with 1 worker (a core spare for the dump) and
//! with 2 (no core spare on a 2-core machine). `FLIGHT_DUMPS=n` sets the dumps per run (5).
//!
//! A ratio over one dump's fraction of a second moves by several percent with no dump at all
//! (the control column), so each run ends with the median over its dumps beside the control's
//! range.

mod common;

#[path = "../examples/launch_day.rs"]
#[allow(dead_code)]
mod launch_day;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::trace::FlightRecorder;
use pipeline::{Profiler, WorkerConfig, WorkerPool};

/// Dumps per run, unless `FLIGHT_DUMPS` says otherwise.
const DUMPS: usize = 5;

fn range(values: &[f64]) -> String {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{low:.3}–{high:.3}")
}

/// Orders accepted per second over `[from, to)`, from `(time, accepted so far)` samples.
fn rate(samples: &[(Instant, u64)], from: Instant, to: Instant) -> f64 {
    let inside: Vec<_> = samples.iter().filter(|(t, _)| *t >= from && *t <= to).collect();
    match (inside.first(), inside.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 / (b.0 - a.0).as_secs_f64(),
        _ => f64::NAN,
    }
}

fn run(workers: usize) {
    let dir = std::env::temp_dir().join(format!("flight-dump-bench-{}", std::process::id()));
    let flight = FlightRecorder::new(Duration::from_secs(2))
        .max_bytes(256 << 20)
        .dir(&dir)
        .tail(Duration::ZERO);
    let session = Profiler::new().flight_recorder(flight).start().unwrap();
    let pool = Arc::new(
        WorkerPool::start(Arc::new(launch_day::pipeline()), WorkerConfig::new(workers).queue(1024))
            .unwrap(),
    );
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (pool, accepted, stop) = (Arc::clone(&pool), Arc::clone(&accepted), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut id = 0;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                pool.submit(launch_day::order(id)).unwrap();
                accepted.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let sampler = {
        let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push((Instant::now(), accepted.load(Ordering::Relaxed)));
                std::thread::sleep(Duration::from_millis(10));
            }
            samples
        })
    };
    let count = std::env::var("FLIGHT_DUMPS").ok().and_then(|n| n.parse().ok()).unwrap_or(DUMPS);
    let mut dumps = Vec::new();
    for _ in 0..count {
        std::thread::sleep(Duration::from_secs(3));
        let (started, cpu_before) =
            (Instant::now(), Duration::from_nanos(common::process_cpu_ns()));
        let dump = session.dump("bench").unwrap();
        dumps.push((
            started,
            Instant::now(),
            Duration::from_nanos(common::process_cpu_ns()) - cpu_before,
            dump,
        ));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    let samples = sampler.join().unwrap();
    Arc::try_unwrap(pool).ok().expect("the feeder is done").join().unwrap();
    let report = session.finish().unwrap();
    println!("{workers} worker(s):");
    let (mut ratios, mut controls, mut slowest) = (Vec::new(), Vec::new(), Duration::ZERO);
    for (started, ended, process_cpu, dump) in &dumps {
        let second = Duration::from_secs(1);
        let before = rate(&samples, *started - second, *started);
        // The same measure with no dump in it: how much two seconds differ anyway.
        let control = rate(&samples, *started - 2 * second, *started - second);
        let during = rate(&samples, *started, *ended);
        let bytes = std::fs::metadata(&dump.path).map_or(0, |m| m.len());
        println!(
            "  dump of {:.2} s: {} slices, {:.1} MB, written in {:.0} ms, {:.0} ms of CPU \
             (process: {:.0} ms); orders/s the second before {before:.0}, during the dump \
             {during:.0} ({:.3}; the second before against the one before it: {:.3})",
            dump.complete_before_trigger.as_secs_f64(),
            dump.slices,
            bytes as f64 / 1e6,
            dump.write_time.as_secs_f64() * 1e3,
            dump.cpu_time.as_secs_f64() * 1e3,
            process_cpu.as_secs_f64() * 1e3,
            during / before,
            before / control,
        );
        ratios.push(during / before);
        controls.push(before / control);
        slowest = slowest.max(dump.write_time);
    }
    if !ratios.is_empty() {
        println!(
            "  slowest write {:.0} ms; throughput during a dump, of the second before: median \
             {:.3} ({}); with no dump: {}",
            slowest.as_secs_f64() * 1e3,
            common::median(ratios.clone()),
            range(&ratios),
            range(&controls),
        );
    }
    let flight = report.flight.unwrap();
    println!("  spans left out: {}", flight.spans_left_out);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    run(1);
    run(2);
}
