//! The launch-day pipeline as a regression benchmark.
//!
//! Run: `cargo bench --bench launch_day`. The first run records a baseline in
//! `target/bench/launch_day.json`; later runs compare with it and exit non-zero on a regression
//! (`BASELINE=path` to use another file; delete the file to record afresh).

#[path = "../examples/launch_day.rs"]
#[allow(dead_code)]
mod launch_day;

use pipeline::bench::{Baseline, Bench};
use pipeline::Error;

fn main() -> Result<(), Error> {
    if std::env::args().any(|a| a == "--test") {
        return Ok(()); // `cargo test --benches`: nothing to time
    }
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
