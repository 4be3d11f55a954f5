//! How fast `pipeline-prof` reads a big trace, and how little memory it needs: writes a trace
//! of 1,000,000 slices with the toolkit itself (500,000 stage calls, each with a nested
//! profiled function), then reads it back in-process with `Profile::read` and through the
//! `pipeline-prof summary` command, reporting the command's peak memory (Linux).
//!
//! `cargo bench --bench trace_read` (TRACE_READ_EVENTS=n to change the size).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use pipeline::analysis::Profile;
use pipeline::{profiled, stage, Pipeline, Profiler};

struct Parse;

#[stage]
impl Parse {
    fn process(&self, event: u64) -> u64 {
        checksum(event)
    }
}

#[profiled]
fn checksum(event: u64) -> u64 {
    event.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7
}

fn main() {
    let events: u64 =
        std::env::var("TRACE_READ_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(500_000);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let trace = dir.join("trace_read.json");

    let started = Instant::now();
    let profiler = Profiler::new()
        .chrome_trace(&trace)
        .trace_backlog_limit(u64::MAX) // keep every span: the point is a big trace
        .start()
        .expect("start");
    let pipeline = Pipeline::new().stage(Parse);
    for event in 0..events {
        std::hint::black_box(pipeline.run(event).expect("parse never fails"));
    }
    let report = profiler.finish().expect("trace written");
    let bytes = std::fs::metadata(&trace).expect("trace").len();
    println!(
        "wrote {} ({:.0} MB, {} stage calls) in {:.1} s",
        trace.display(),
        bytes as f64 / 1e6,
        report.stages[0].timing.calls,
        started.elapsed().as_secs_f64()
    );

    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let profile = Profile::read(&trace).expect("read back");
        best = best.min(started.elapsed().as_secs_f64());
        let read = profile.trace_read().expect("a trace");
        assert_eq!(read.counts.slices, 2 * events, "every slice read");
    }
    println!(
        "Profile::read: {:.2} s for {} slices ({:.0} MB/s, {:.2} M slices/s), best of 3",
        best,
        2 * events,
        bytes as f64 / 1e6 / best,
        2.0 * events as f64 / 1e6 / best
    );

    summarise("pipeline-prof summary", &trace);
    if std::env::var_os("TRACE_READ_KEEP").is_none() {
        let _ = std::fs::remove_file(&trace); // 80 MB
    }

    // Hostile shapes (issue 15): a million nested begins that never end, and 100,000 slices
    // with distinct names (per-request span names do this).
    let deep = hostile(
        "deep.json",
        (0..1_000_000u64)
            .map(|i| format!(r#"{{"ph":"B","pid":1,"tid":1,"ts":{i},"name":"f{}"}}"#, i % 7)),
    );
    summarise("1,000,000 nested begins without ends", &deep);
    let flat = hostile(
        "flat.json",
        (0..100_000u64).map(|i| {
            format!(r#"{{"ph":"X","pid":1,"tid":1,"ts":{},"dur":1,"name":"req-{i}"}}"#, i * 2)
        }),
    );
    summarise("100,000 distinct slice names", &flat);
    let _ = (std::fs::remove_file(&deep), std::fs::remove_file(&flat));
}

/// Writes a trace of `events` next to the others.
fn hostile(name: &str, events: impl Iterator<Item = String>) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let body: Vec<String> = events.collect();
    std::fs::write(&path, format!("[\n{}\n]\n", body.join(",\n"))).expect("write");
    path
}

/// Runs `pipeline-prof summary` on `trace` under `/usr/bin/time`: wall time and peak RSS. The
/// command is a package of its own: `cargo build --release -p pipeline-prof` first.
fn summarise(what: &str, trace: &std::path::Path) {
    let prof = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .with_file_name("release")
        .join("pipeline-prof");
    if !prof.exists() {
        println!("{what}: no {} (cargo build --release -p pipeline-prof)", prof.display());
        return;
    }
    let bytes = std::fs::metadata(trace).map_or(0, |m| m.len());
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .args(["-f", "peak RSS %M KiB"])
        .arg(&prof)
        .arg("summary")
        .arg(trace)
        .output();
    match output {
        Ok(out) if out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            println!(
                "{what} ({:.1} MB): {:.2} s, {}",
                bytes as f64 / 1e6,
                started.elapsed().as_secs_f64(),
                stderr.lines().last().unwrap_or("(no peak RSS reported)")
            );
        }
        Ok(out) => println!("{what}: failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(error) => println!("(no /usr/bin/time here to measure peak RSS: {error})"),
    }
}
