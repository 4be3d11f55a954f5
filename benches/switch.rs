//! The runtime switch, in a process where no tracing subscriber is ever set (the common case in
//! production): what an instrumented call costs with the profiler not started, and recording,
//! next to the floor of any timer (a TSC clock pair) and fastrace in the same run.
//!
//! Run: `cargo bench --bench switch` (and with `--features off` for the bare build).

mod common;

use std::hint::black_box;

use pipeline::{profiled, stage, CountingAllocator, Profiler, Stage};

// As in a real profiled program: every case runs with the counting allocator installed.
#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

const CALLS: u64 = 1_000_000;
const ROUNDS: usize = 9;

#[inline(never)]
fn work(x: u64) -> u64 {
    x.wrapping_mul(0x100_0000_01b3).wrapping_add(1)
}

struct Ours;

#[stage]
impl Ours {
    fn process(&self, x: u64) -> u64 {
        work(x)
    }
}

#[profiled]
fn ours_profiled(x: u64) -> u64 {
    work(x)
}

#[fastrace::trace]
fn with_fastrace(x: u64) -> u64 {
    work(x)
}

struct NullReporter;

impl fastrace::collector::Reporter for NullReporter {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        black_box(spans);
    }
}

fn time(call: impl FnMut(u64) -> u64) -> f64 {
    common::ns_per_call(CALLS, call)
}

fn main() {
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    fastrace::set_reporter(NullReporter, fastrace::collector::Config::default());
    let stage = Ours;
    type Case<'a> = (&'static str, Box<dyn Fn() -> f64 + 'a>);
    let cases: Vec<Case> = vec![
        ("bare call", Box::new(|| time(work))),
        (
            "bare call + quanta (TSC) clock pair",
            Box::new(|| {
                let clock = quanta::Clock::new();
                time(|x| {
                    let started = clock.raw();
                    let y = work(x);
                    black_box(clock.delta_as_nanos(started, clock.raw()));
                    y
                })
            }),
        ),
        (
            "fastrace #[trace], a root span per 1,000 calls",
            Box::new(|| common::fastrace_ns_per_call(CALLS, with_fastrace)),
        ),
        (
            "#[stage], profiler not started",
            Box::new(|| time(|x| Stage::process(&stage, x).ok().flatten().unwrap_or(0))),
        ),
        ("#[profiled], profiler not started", Box::new(|| time(ours_profiled))),
        (
            "#[stage], recording",
            Box::new(|| {
                let profiler = Profiler::new().start().expect("profiler");
                let ns = time(|x| Stage::process(&stage, x).ok().flatten().unwrap_or(0));
                drop(profiler);
                ns
            }),
        ),
        (
            "#[profiled], recording",
            Box::new(|| {
                let profiler = Profiler::new().start().expect("profiler");
                let ns = time(ours_profiled);
                drop(profiler);
                ns
            }),
        ),
    ];
    // `SWITCH_CASE=<part of a case's name>` runs that case once, for a profiler to count
    // instructions (the machine's timings drift; instruction counts do not):
    //   SWITCH_CASE="stage], recording" valgrind --tool=callgrind \
    //     --toggle-collect='*common::ns_per_call*' target/release/deps/switch-<hash>
    // gives the instructions per call as the collected total / 1,000,000.
    if let Ok(wanted) = std::env::var("SWITCH_CASE") {
        let (name, case) = cases.iter().find(|(name, _)| name.contains(&wanted)).expect("a case");
        println!("{name}: {:.1} ns per call", case());
        fastrace::flush();
        return;
    }
    let mut samples = vec![Vec::new(); cases.len()];
    for round in 0..ROUNDS {
        for offset in 0..cases.len() {
            let index = (round + offset) % cases.len();
            samples[index].push((cases[index].1)());
        }
    }
    let build = if cfg!(feature = "off") { ", built with --features off" } else { "" };
    println!(
        "no tracing subscriber in the process{build}; median of {ROUNDS} rounds of {CALLS} calls"
    );
    println!("| case | ns per call | added to the bare call |");
    println!("| --- | ---: | ---: |");
    let medians: Vec<f64> = samples.into_iter().map(common::median).collect();
    for ((name, _), ns) in cases.iter().zip(&medians) {
        println!("| {name} | {ns:.1} | {:+.1} |", ns - medians[0]);
    }
    fastrace::flush();
}
