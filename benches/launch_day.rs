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

/// Orders per second through 2 workers flooded with 40,000 orders: profiler not started vs
/// recording (built with `--features off`, both are the bare pipeline). Medians of 5 rounds.
fn throughput_on_two_workers() -> Result<(), Error> {
    let pipeline = launch_day::pipeline();
    let run = |recording: bool| -> Result<f64, Error> {
        let profiler = recording.then(|| Profiler::new().start()).transpose()?;
        let run =
            pipeline.run_concurrent(launch_day::orders(40_000), Workers::new(2).queue(1024))?;
        drop(profiler);
        Ok(run.throughput_per_sec)
    };
    let (mut idle, mut recording) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        idle.push(run(false)?);
        recording.push(run(true)?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (idle, recording) = (median(idle), median(recording));
    let build = if cfg!(feature = "off") { " (built with --features off)" } else { "" };
    println!("launch_day on 2 workers{build}: {idle:.0} orders/s profiler not started, {recording:.0} recording (ratio {:.3})", recording / idle);
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
