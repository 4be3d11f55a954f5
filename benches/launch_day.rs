//! The launch-day pipeline as a regression benchmark.
//!
//! Run: `cargo bench --bench launch_day`. The first run records a baseline in
//! `target/bench/launch_day.json`; later runs compare with it and exit non-zero on a regression
//! (`BASELINE=path` to use another file; delete the file to record afresh).

#[path = "../examples/launch_day.rs"]
#[allow(dead_code)]
mod launch_day;

use pipeline::bench::{Baseline, Bench};
use pipeline::{Error, Profiler, Workers};

/// How a throughput run is profiled.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    NotStarted,
    Statistics,
    /// Statistics and a Chrome trace of every event (the native writer).
    Traced,
}

/// Orders per second through 2 workers flooded with 40,000 orders: profiler not started,
/// recording statistics, and recording with every event traced (built with `--features off`,
/// all are the bare pipeline). Interleaved, medians of 5 rounds.
fn throughput_on_two_workers() -> Result<(), Error> {
    let pipeline = launch_day::pipeline();
    let trace = std::env::temp_dir().join(format!("launch-day-bench-{}.json", std::process::id()));
    let run = |mode: Mode| -> Result<(f64, u64), Error> {
        let profiler = match mode {
            Mode::NotStarted => None,
            Mode::Statistics => Some(Profiler::new().start()?),
            Mode::Traced => Some(Profiler::new().chrome_trace(&trace).start()?),
        };
        let run =
            pipeline.run_concurrent(launch_day::orders(40_000), Workers::new(2).queue(1024))?;
        let left_out = match profiler {
            Some(profiler) => profiler.finish()?.trace.map_or(0, |t| t.spans_left_out),
            None => 0,
        };
        Ok((run.throughput_per_sec, left_out))
    };
    let (mut idle, mut recording, mut traced, mut left_out) = (vec![], vec![], vec![], 0);
    for _ in 0..5 {
        idle.push(run(Mode::NotStarted)?.0);
        recording.push(run(Mode::Statistics)?.0);
        let (rate, lost) = run(Mode::Traced)?;
        traced.push(rate);
        left_out += lost;
    }
    let _ = std::fs::remove_file(&trace);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (idle, recording, traced) = (median(idle), median(recording), median(traced));
    let build = if cfg!(feature = "off") { " (built with --features off)" } else { "" };
    println!(
        "launch_day on 2 workers{build}: {idle:.0} orders/s profiler not started, {recording:.0} \
         recording (ratio {:.3}), {traced:.0} recording and tracing every event (ratio {:.3} of \
         recording; {left_out} spans left out)",
        recording / idle,
        traced / recording
    );
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
