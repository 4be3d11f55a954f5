//! Months of uptime with threads coming and going: RSS while 1,000,000 short-lived threads (8 at
//! a time, 10 `#[profiled]` calls each) record, with no profiler, with statistics only, and with
//! the native trace on. The profiler's memory must follow the threads running at once, not the
//! threads that ever ran: flat within a few MB from 2,000 to 1,000,000 exited threads.
//!
//! Run: `cargo bench --bench thread_churn` (`-- 200000` for fewer threads)

use std::time::Instant;

use pipeline::{profiled, CountingAllocator, Profiler};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

#[profiled]
fn work(n: u64) -> u64 {
    std::hint::black_box(n.wrapping_mul(3))
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number")
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    NoProfiler,
    Statistics,
    Trace,
}

fn run(mode: Mode, threads: usize) {
    let label = match mode {
        Mode::NoProfiler => "no profiler",
        Mode::Statistics => "statistics",
        Mode::Trace => "statistics + native trace",
    };
    let trace = std::env::temp_dir().join(format!("thread_churn_{}.json", std::process::id()));
    let session = match mode {
        Mode::NoProfiler => None,
        Mode::Statistics => Some(Profiler::new().start().expect("start")),
        Mode::Trace => Some(Profiler::new().chrome_trace(&trace).start().expect("start")),
    };
    let started = Instant::now();
    let mut checkpoints = Vec::new();
    let mut done = 0;
    while done < threads {
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    (0..10).for_each(|n| {
                        std::hint::black_box(work(n));
                    })
                });
            }
        });
        done += 8;
        if done == 2_000 || done % (threads / 5).max(8) == 0 {
            checkpoints.push((done, resident_kib()));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (first, last) = (checkpoints[0], *checkpoints.last().expect("checkpoints"));
    let series: Vec<String> =
        checkpoints.iter().map(|(n, kib)| format!("{n}: {:.1} MB", *kib as f64 / 1024.0)).collect();
    println!(
        "{label:<26} RSS {} | growth after 2,000 threads: {:+.1} MB ({:.0} threads/s)",
        series.join(", "),
        (last.1 as f64 - first.1 as f64) / 1024.0,
        threads as f64 / seconds
    );
    if let Some(session) = session {
        let report = session.finish().expect("finish");
        let calls: u64 = report.outside_stages.iter().map(|f| f.timing.calls).sum();
        let left_out = report.trace.as_ref().map_or(0, |t| t.spans_left_out);
        println!("{:<26} calls in the report: {calls}, spans left out: {left_out}", "");
        assert_eq!(calls, threads as u64 * 10, "every call of every thread");
    }
    let _ = std::fs::remove_file(&trace);
}

fn main() {
    let threads = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<usize>().ok())
        .unwrap_or(1_000_000)
        .max(2_008);
    println!("{threads} short-lived threads, 8 at a time, 10 #[profiled] calls each");
    for mode in [Mode::NoProfiler, Mode::Statistics, Mode::Trace] {
        run(mode, threads);
    }
}
