//! The ETL example's throughput with recording on, against the same pipeline with the profiler
//! not started: what measuring a typed pipeline with a sink costs.
//!
//! Run: `cargo bench --bench etl`.

mod common;

#[path = "../examples/etl.rs"]
#[allow(dead_code)]
mod etl;

use pipeline::{Error, Profiler, WorkerConfig};

/// How a run is profiled.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    NotStarted,
    Statistics,
    /// Statistics and a Chrome trace of every event (the native writer).
    Traced,
}

/// Lines per second through 4 workers (on this 2-core machine) flooded with 40,000 lines, each
/// mode once per round, 11 interleaved rounds; medians, with the whole process's CPU per line
/// (getrusage: the workers, the producer and any writer thread) beside each. Each ratio is the
/// median of the rounds' own ratios against the profiler not started in the same round.
fn main() -> Result<(), Error> {
    if std::env::args().any(|a| a == "--test") {
        return Ok(()); // `cargo test --benches`: nothing to time
    }
    const LINES: u64 = 40_000;
    const ROUNDS: usize = 11;
    let pipeline = etl::pipeline();
    let trace = std::env::temp_dir().join(format!("etl-bench-{}.json", std::process::id()));
    let modes = [Mode::NotStarted, Mode::Statistics, Mode::Traced];
    let mut throughput = vec![Vec::new(); modes.len()];
    let mut cpu_us_per_line = vec![Vec::new(); modes.len()];
    for round in 0..ROUNDS {
        for offset in 0..modes.len() {
            let index = (round + offset) % modes.len();
            let cpu_before = common::process_cpu_ns();
            let profiler = match modes[index] {
                Mode::NotStarted => None,
                Mode::Statistics => Some(Profiler::new().start()?),
                Mode::Traced => Some(Profiler::new().chrome_trace(&trace).start()?),
            };
            let totals = etl::Totals::default();
            let run = pipeline.run_concurrent_into(
                (0..LINES).map(etl::line),
                WorkerConfig::new(4).queue(1024),
                |scored| totals.add(scored),
            )?;
            if let Some(profiler) = profiler {
                profiler.finish()?;
            }
            let cpu_ns = common::process_cpu_ns() - cpu_before;
            assert_eq!(
                totals.per_region().values().map(|t| t.transactions).sum::<u64>(),
                run.completed
            );
            throughput[index].push(run.throughput_per_sec);
            cpu_us_per_line[index].push(cpu_ns as f64 / 1e3 / LINES as f64);
        }
    }
    let _ = std::fs::remove_file(&trace);
    let build = if cfg!(feature = "off") { " (built with --features off)" } else { "" };
    println!("etl on 4 workers{build}, medians of {ROUNDS} interleaved runs of {LINES} lines:");
    let baseline = throughput[0].clone();
    for ((mode, throughput), cpu) in modes.iter().zip(throughput).zip(cpu_us_per_line) {
        let label = match mode {
            Mode::NotStarted => "profiler not started",
            Mode::Statistics => "recording statistics",
            Mode::Traced => "statistics + every event traced",
        };
        let ratios = throughput.iter().zip(&baseline).map(|(x, b)| x / b).collect();
        println!(
            "  {label:<32} {:>9.0} lines/s ({:.3} of not started), {:.2} µs of process CPU per line",
            common::median(throughput),
            common::median(ratios),
            common::median(cpu),
        );
    }
    Ok(())
}
