//! What one instrumented call costs, ours next to what users would pick instead, all in one run.
//!
//! Run: `cargo bench --bench overhead` (and `cargo bench --bench overhead --features off` for the
//! zero-cost build, where "ours" expands to the bare call).
//!
//! The trace cases write every span (ours with its backlog limit lifted, as tracing-chrome's
//! queue has none), so both write the same number of slices.
//!
//! Each case calls a stage's work N times in a loop; 9 rounds, interleaved in rotating order, and
//! the median is reported, minus nothing: the bare call's own cost is the first row. Two
//! workloads: a trivial one (an add) and one of about 1 µs.

mod common;

use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

use pipeline::{profiled, stage, CountingAllocator, Profiler, Stage};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

const CALLS: u64 = 200_000;
const ROUNDS: usize = 9;

#[inline(never)]
fn work(x: u64, rounds: u64) -> u64 {
    let mut h = x;
    for round in 0..rounds {
        h = black_box(h.rotate_left(5) ^ round).wrapping_mul(0x100_0000_01b3);
    }
    h.wrapping_add(1)
}

struct Ours(u64);

#[stage]
impl Ours {
    fn process(&self, x: u64) -> u64 {
        work(x, self.0)
    }
}

#[profiled]
fn ours_profiled(x: u64, rounds: u64) -> u64 {
    work(x, rounds)
}

#[tracing::instrument(skip_all)]
fn with_instrument(x: u64, rounds: u64) -> u64 {
    work(x, rounds)
}

#[fastrace::trace]
fn with_fastrace(x: u64, rounds: u64) -> u64 {
    work(x, rounds)
}

#[hotpath::measure]
fn with_hotpath(x: u64, rounds: u64) -> u64 {
    work(x, rounds)
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

/// Runs `f` on a new thread (tracing-chrome keeps per-thread state tied to one layer).
fn on_fresh_thread(f: impl FnOnce() -> f64 + Send) -> f64 {
    std::thread::scope(|scope| scope.spawn(f).join().expect("case thread"))
}

/// `#[instrument]` under a scoped `Registry` + tracing-chrome writing to `file`, on a fresh thread.
fn instrument_with_chrome(file: &std::path::Path, include_args: bool, rounds: u64) -> f64 {
    on_fresh_thread(move || {
        use tracing_subscriber::prelude::*;
        let (chrome, guard) =
            tracing_chrome::ChromeLayerBuilder::new().file(file).include_args(include_args).build();
        let subscriber = tracing_subscriber::registry().with(chrome);
        let ns =
            tracing::subscriber::with_default(subscriber, || time(|x| with_instrument(x, rounds)));
        drop(guard);
        ns
    })
}

type Case<'a> = (&'static str, Box<dyn Fn(u64) -> f64 + 'a>);

fn cases<'a>(dir: &'a std::path::Path) -> Vec<Case<'a>> {
    vec![
        ("bare call", Box::new(|r| time(|x| work(x, r)))),
        (
            "bare call + Instant::now() pair",
            Box::new(|r| {
                time(|x| {
                    let t = Instant::now();
                    let y = work(x, r);
                    black_box(t.elapsed());
                    y
                })
            }),
        ),
        (
            "bare call + quanta (TSC) clock pair",
            Box::new(|r| {
                let clock = quanta::Clock::new();
                time(|x| {
                    let t = clock.raw();
                    let y = work(x, r);
                    black_box(clock.delta_as_nanos(t, clock.raw()));
                    y
                })
            }),
        ),
        (
            "hand-written timer printing each duration (to io::sink)",
            Box::new(|r| {
                let mut out = std::io::sink();
                time(|x| {
                    let t = Instant::now();
                    let y = work(x, r);
                    let _ = writeln!(out, "work: {:?}", t.elapsed());
                    y
                })
            }),
        ),
        ("tracing #[instrument], no subscriber", Box::new(|r| time(|x| with_instrument(x, r)))),
        (
            "tracing #[instrument] + tracing-chrome to a file",
            Box::new(move |r| instrument_with_chrome(&dir.join("instrument.json"), false, r)),
        ),
        (
            "tracing #[instrument] + tracing-chrome, span args on (include_args)",
            Box::new(move |r| instrument_with_chrome(&dir.join("instrument-args.json"), true, r)),
        ),
        (
            "fastrace #[trace], reporter set, a root span per 1,000 calls",
            Box::new(|r| common::fastrace_ns_per_call(CALLS, |x| with_fastrace(x, r))),
        ),
        (
            "hotpath #[measure], guard running (JSON report to a file)",
            Box::new(move |r| {
                let guard = hotpath::HotpathGuardBuilder::new("overhead")
                    .format(hotpath::Format::Json)
                    .output_path(dir.join("hotpath.json"))
                    .build();
                let ns = time(|x| with_hotpath(x, r));
                drop(guard);
                ns
            }),
        ),
        (
            "ours: #[stage], profiler not started",
            Box::new(|r| {
                let stage = Ours(r);
                time(|x| Stage::process(&stage, x).ok().flatten().unwrap_or(0))
            }),
        ),
        (
            "ours: #[stage], recording (counting allocator installed)",
            Box::new(|r| {
                let stage = Ours(r);
                let profiler = Profiler::new().start().expect("profiler");
                let ns = time(|x| Stage::process(&stage, x).ok().flatten().unwrap_or(0));
                drop(profiler);
                ns
            }),
        ),
        (
            "ours: #[profiled] fn, recording",
            Box::new(|r| {
                let profiler = Profiler::new().start().expect("profiler");
                let ns = time(|x| ours_profiled(x, r));
                drop(profiler);
                ns
            }),
        ),
        (
            "ours: #[stage], recording + Chrome trace",
            Box::new(move |r| {
                on_fresh_thread(move || {
                    let stage = Ours(r);
                    // Unbounded, as tracing-chrome's own queue is: no span is left out, so
                    // both write the same number of slices.
                    let profiler = Profiler::new()
                        .chrome_trace(dir.join("ours.json"))
                        .trace_backlog_limit(u64::MAX)
                        .start()
                        .expect("profiler");
                    let ns = time(|x| Stage::process(&stage, x).ok().flatten().unwrap_or(0));
                    drop(profiler);
                    ns
                })
            }),
        ),
    ]
}

fn main() {
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    fastrace::set_reporter(NullReporter, fastrace::collector::Config::default());
    let dir = std::env::temp_dir().join("pipeline-overhead");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases = cases(&dir);
    // `OVERHEAD_CASE=<part of a case's name>` runs that case once on the trivial workload, for a
    // profiler to count instructions; the count is per thread, so a tracer's writer thread is
    // left out and what the calling thread pays is what is counted:
    //   OVERHEAD_CASE="recording + Chrome" valgrind --tool=callgrind \
    //     --toggle-collect='*common::ns_per_call*' target/release/deps/overhead-<hash>
    // gives the instructions per call as the collected total / 200,000.
    if let Ok(wanted) = std::env::var("OVERHEAD_CASE") {
        let (name, case) = cases.iter().find(|(name, _)| name.contains(&wanted)).expect("a case");
        println!("{name}: {:.1} ns per call", case(0));
        fastrace::flush();
        return;
    }
    let workloads = [("trivial stage (one add)", 0u64), ("~1 µs stage", 300)];
    // The last case installs a global tracing subscriber, which from then on taxes every span in
    // the process: every other case runs first (interleaved rounds), for both workloads.
    let global = cases.len() - 1;
    let mut samples = vec![vec![Vec::new(); cases.len()]; workloads.len()];
    for (w, (_, rounds)) in workloads.iter().enumerate() {
        for round in 0..ROUNDS {
            for offset in 0..global {
                let index = (round + offset) % global;
                samples[w][index].push((cases[index].1)(*rounds));
            }
        }
    }
    for (w, (_, rounds)) in workloads.iter().enumerate() {
        for _ in 0..ROUNDS {
            samples[w][global].push((cases[global].1)(*rounds));
        }
    }
    let build = if cfg!(feature = "off") { " (built with --features off)" } else { "" };
    for ((label, _), per_case) in workloads.iter().zip(samples) {
        let medians: Vec<f64> = per_case.into_iter().map(common::median).collect();
        let (bare, clock) = (medians[0], medians[1] - medians[0]);
        println!("\n{label}{build}: ns per call, median of {ROUNDS} rounds of {CALLS} calls");
        println!("| instrumentation | ns per call | added to the bare call | added ÷ clock pair |");
        println!("| --- | ---: | ---: | ---: |");
        for ((name, _), ns) in cases.iter().zip(&medians) {
            let added = ns - bare;
            println!("| {name} | {ns:.1} | {added:+.1} | {:.2}× |", added / clock);
        }
    }
    fastrace::flush();
}
