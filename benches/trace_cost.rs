//! What a Chrome trace that keeps every span costs the whole process, ours next to the tools a
//! user would otherwise pick, in one run.
//!
//! Run: `cargo bench --bench trace_cost`.
//!
//! Each case runs in a child process of its own (tracing-chrome allows one layer per process,
//! and a child's `getrusage(RUSAGE_SELF)` counts every thread it ran: the trace writer's or the
//! collector's CPU is part of what a user pays). A case sets its tracer up, runs 100,000 events
//! unmeasured (a steady state: buffers a service reuses have been touched once), then runs
//! 200,000 events of a stage that calls one instrumented function (400,000 spans) and stops its
//! tracer, flushing everything, inside the measured window. Cases are interleaved over several rounds; the median per case is shown,
//! less the bare loop's CPU, per span, with the trace file's bytes per span and what was left out.

mod common;

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use pipeline::trace::{FlightRecorder, TraceBackend};
use pipeline::{profiled, stage, CountingAllocator, Profiler, Stage};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

const EVENTS: u64 = 200_000;
/// Events run before the measured window, on the same tracer: enough to fill the 8 MiB
/// flight-recorder window once, so "buffers reused" measures reuse.
const WARM_UP_EVENTS: u64 = 100_000;
const SPANS_PER_EVENT: u64 = 2;
/// Rounds by default; `ROUNDS=11 cargo bench --bench trace_cost` for a closer look.
const ROUNDS: usize = 5;
const CASE_VAR: &str = "TRACE_COST_CASE";

#[inline(never)]
fn work(x: u64) -> u64 {
    black_box(x.rotate_left(5) ^ 0x9e37).wrapping_mul(0x100_0000_01b3)
}

struct Outer;

#[stage]
impl Outer {
    fn process(&self, x: u64) -> u64 {
        inner(x)
    }
}

#[profiled]
fn inner(x: u64) -> u64 {
    work(x)
}

#[tracing::instrument(skip_all)]
fn outer_instrumented(x: u64) -> u64 {
    inner_instrumented(x)
}

#[tracing::instrument(skip_all)]
fn inner_instrumented(x: u64) -> u64 {
    work(x)
}

#[fastrace::trace]
fn outer_fastrace(x: u64) -> u64 {
    inner_fastrace(x)
}

#[fastrace::trace]
fn inner_fastrace(x: u64) -> u64 {
    work(x)
}

struct NullReporter;

impl fastrace::collector::Reporter for NullReporter {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        black_box(spans);
    }
}

/// One case's run, in this (child) process: (CPU ns, wall ns, trace bytes, spans left out).
fn run_case(case: &str, path: &std::path::Path) -> (u64, u64, u64, u64) {
    let stage = Outer;
    let run = |events: u64, call: &dyn Fn(u64) -> u64| {
        let mut acc = 0u64;
        for i in 0..events {
            acc = acc.wrapping_add(call(black_box(i)));
        }
        black_box(acc);
    };
    // The warm-up, then the start of the measured window.
    let mut start = None;
    let mut loop_calls = |call: &dyn Fn(u64) -> u64| {
        run(WARM_UP_EVENTS, call);
        start = Some((common::process_cpu_ns(), Instant::now()));
        run(EVENTS, call);
    };
    let mut left_out = 0;
    match case {
        "bare" => loop_calls(&|x| work(x)),
        "statistics only" => {
            let session = Profiler::new().start().unwrap();
            loop_calls(&|x| Stage::process(&stage, x).unwrap().unwrap());
            black_box(session.finish().unwrap());
        }
        "ours, native writer" | "ours, tracing-chrome backend" => {
            let backend = if case.contains("native") {
                TraceBackend::Native
            } else {
                TraceBackend::TracingChrome
            };
            let session = Profiler::new()
                .chrome_trace(path)
                .trace_backend(backend)
                .trace_backlog_limit(u64::MAX / 4) // every span, as tracing-chrome alone
                .start()
                .unwrap();
            loop_calls(&|x| Stage::process(&stage, x).unwrap().unwrap());
            let report = session.finish().unwrap();
            left_out = report.trace.as_ref().map_or(0, |t| t.spans_left_out);
        }
        "ours, flight recorder, buffers reused" | "ours, flight recorder, first fill" => {
            // A service's steady state: the window lets go of its oldest buffers and threads
            // reuse them (8 MiB hold less than this run). The first fill touches every buffer
            // for the first time (128 MiB hold the whole run): page faults a long-running
            // service pays once.
            let max_bytes = if case.contains("reused") { 8 << 20 } else { 128 << 20 };
            let flight = FlightRecorder::new(std::time::Duration::from_secs(2))
                .dir(std::env::temp_dir())
                .max_bytes(max_bytes);
            let session = Profiler::new().flight_recorder(flight).start().unwrap();
            loop_calls(&|x| Stage::process(&stage, x).unwrap().unwrap());
            let report = session.finish().unwrap();
            left_out = report.flight.as_ref().map_or(0, |f| f.spans_left_out);
        }
        "#[instrument] + tracing-chrome" => {
            use tracing_subscriber::prelude::*;
            let (layer, guard) =
                tracing_chrome::ChromeLayerBuilder::new().file(path).include_args(false).build();
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::with_default(subscriber, || {
                loop_calls(&|x| outer_instrumented(x));
            });
            drop(guard); // flushes and joins its writer thread
        }
        "fastrace #[trace], reporter set" => {
            fastrace::set_reporter(NullReporter, fastrace::collector::Config::default());
            common::fastrace_ns_per_call(WARM_UP_EVENTS, outer_fastrace);
            start = Some((common::process_cpu_ns(), Instant::now()));
            common::fastrace_ns_per_call(EVENTS, outer_fastrace);
            fastrace::flush();
        }
        other => panic!("unknown case {other}"),
    }
    let (cpu0, wall0) = start.expect("every case starts its measured window");
    let (cpu, wall) = (common::process_cpu_ns() - cpu0, wall0.elapsed().as_nanos() as u64);
    let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    (cpu, wall, bytes, left_out)
}

const CASES: [&str; 8] = [
    "bare",
    "statistics only",
    "ours, native writer",
    "ours, flight recorder, buffers reused",
    "ours, flight recorder, first fill",
    "ours, tracing-chrome backend",
    "#[instrument] + tracing-chrome",
    "fastrace #[trace], reporter set",
];

fn main() {
    if let Ok(case) = std::env::var(CASE_VAR) {
        let path = std::env::temp_dir().join(format!("trace-cost-{}.json", std::process::id()));
        let (cpu, wall, bytes, left_out) = run_case(&case, &path);
        let _ = std::fs::remove_file(&path);
        println!("RESULT {cpu} {wall} {bytes} {left_out}");
        return;
    }
    let exe = std::env::current_exe().expect("this benchmark's path");
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(ROUNDS);
    let mut results: Vec<Vec<(u64, u64, u64, u64)>> = vec![Vec::new(); CASES.len()];
    for round in 0..rounds {
        for offset in 0..CASES.len() {
            let index = (round + offset) % CASES.len(); // rotating order
            let output = Command::new(&exe).env(CASE_VAR, CASES[index]).output().expect("child");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let line = stdout.lines().find(|l| l.starts_with("RESULT ")).unwrap_or_else(|| {
                panic!("{} failed: {}", CASES[index], String::from_utf8_lossy(&output.stderr))
            });
            let n: Vec<u64> = line[7..].split(' ').map(|v| v.parse().unwrap()).collect();
            results[index].push((n[0], n[1], n[2], n[3]));
        }
    }
    let spans = (EVENTS * SPANS_PER_EVENT) as f64;
    let median_of = |i: usize, pick: fn(&(u64, u64, u64, u64)) -> u64| {
        common::median(results[i].iter().map(|r| pick(r) as f64).collect())
    };
    let bare_cpu = median_of(0, |r| r.0);
    let bare_wall = median_of(0, |r| r.1);
    println!(
        "{} events, {} spans per event; whole-process CPU (getrusage) and wall time less the bare \
         loop's, per span; median of {rounds} interleaved runs (CPU min..max in brackets)",
        EVENTS, SPANS_PER_EVENT
    );
    println!(
        "{:<34} {:>14} {:>20} {:>12} {:>12} {:>10}",
        "case", "CPU/span", "(range)", "wall/span", "bytes/span", "left out"
    );
    for (i, case) in CASES.iter().enumerate().skip(1) {
        let cpu = (median_of(i, |r| r.0) - bare_cpu) / spans;
        let wall = (median_of(i, |r| r.1) - bare_wall) / spans;
        let lo = results[i].iter().map(|r| r.0).min().unwrap() as f64;
        let hi = results[i].iter().map(|r| r.0).max().unwrap() as f64;
        let range = format!(
            "({:.0}..{:.0})",
            (lo - bare_cpu).max(0.0) / spans,
            (hi - bare_cpu).max(0.0) / spans
        );
        // The file holds the warm-up's spans too.
        let bytes = median_of(i, |r| r.2) / ((EVENTS + WARM_UP_EVENTS) * SPANS_PER_EVENT) as f64;
        let left_out = median_of(i, |r| r.3);
        println!(
            "{case:<34} {:>11.0} ns {range:>20} {:>9.0} ns {:>12.0} {:>10.0}",
            cpu, wall, bytes, left_out
        );
    }
    // The flight recorder's target is against the full trace: judged round by round (each
    // round runs both within a second or two, so a slow spell of the host weighs on both).
    let index = |name: &str| CASES.iter().position(|case| *case == name).expect("a case");
    let (statistics, armed, full) = (
        index("statistics only"),
        index("ours, flight recorder, buffers reused"),
        index("ours, native writer"),
    );
    let per_round = |case: usize, round: usize| results[case][round].0 as f64 - bare_cpu;
    let ratios: Vec<f64> = (0..rounds).map(|r| per_round(armed, r) / per_round(full, r)).collect();
    let added: Vec<f64> =
        (0..rounds).map(|r| (per_round(armed, r) - per_round(statistics, r)) / spans).collect();
    println!(
        "flight recorder armed (buffers reused) against the native writer, round by round: \
         median {:.2} of its CPU per span; {:.0} ns per span over statistics only (median)",
        common::median(ratios),
        common::median(added)
    );
}
