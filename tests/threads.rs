//! Services retire threads (thread-per-request servers, tokio's blocking pool, scoped pools) and
//! run many at once. The profiler's memory follows the threads running, not the threads that
//! ever ran, and a crowd of threads loses nothing from the trace at default settings.
#![cfg(not(feature = "off"))]

mod common;

use std::path::Path;
use std::sync::Barrier;

use common::{exclusive, load_trace, trace_dir};
use pipeline::{profiled, stage, CountingAllocator, Pipeline, Profiler};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

#[profiled]
fn work(n: u64) -> u64 {
    std::hint::black_box(n.wrapping_mul(3))
}

struct Handle;

#[stage]
impl Handle {
    fn process(&self, request: u64) -> u64 {
        work(request) + 1
    }
}

/// Slices named `name` in the trace at `path`.
fn slices_named(path: &Path, name: &str) -> u64 {
    let events = load_trace(path);
    events.iter().filter(|e| e["ph"] == "X" && e["name"] == name).count() as u64
}

/// The process's resident memory, in bytes.
#[cfg(target_os = "linux")]
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number");
    kib * 1024
}

/// Runs `threads` short-lived threads, `at_once` at a time, each making `calls` calls.
fn churn(threads: usize, at_once: usize, calls: u64) {
    for _ in 0..threads / at_once {
        std::thread::scope(|scope| {
            for _ in 0..at_once {
                scope.spawn(|| {
                    (0..calls).for_each(|n| {
                        std::hint::black_box(work(n));
                    })
                });
            }
        });
    }
}

#[cfg(target_os = "linux")]
#[test]
fn twenty_thousand_short_lived_threads_leave_memory_flat_and_every_call_in_the_trace() {
    let _lock = exclusive();
    let path = trace_dir().join("churn.json");
    let session = Profiler::new().chrome_trace(&path).start().expect("start");
    // The first 2,000 threads set up what lasts (the trace's pool, the writer's buffers).
    churn(2_000, 8, 10);
    let settled = resident_bytes();
    churn(18_000, 8, 10);
    let grown = resident_bytes().saturating_sub(settled);
    let report = session.finish().expect("finish");

    // Before: ~10.7 KB per exited thread with statistics only, ~12.8 KB with the trace on
    // (230 MB over these 18,000 threads).
    assert!(grown < 10 << 20, "RSS grew {} KB over 18,000 exited threads", grown >> 10);
    let work = report.outside_stages.iter().find(|f| f.name == "threads::work").expect("work");
    assert_eq!(work.timing.calls, 200_000, "every call of every ended thread is in the report");
    assert_eq!(report.trace.as_ref().unwrap().spans_left_out, 0);
    assert_eq!(slices_named(&path, "threads::work"), 200_000, "and in the trace");
    std::fs::write(path.with_extension("expect"), "--expect=threads::work=200000\n--strict")
        .expect("expect file");
}

#[test]
fn five_hundred_and_twelve_threads_at_once_leave_nothing_out_of_the_trace_at_default_settings() {
    let _lock = exclusive();
    const THREADS: usize = 512;
    let path = trace_dir().join("crowd.json");
    let pipeline = Pipeline::new().stage(Handle);
    let session = Profiler::new().chrome_trace(&path).start().expect("start");
    // As tokio's blocking pool runs `spawn_blocking(move || pipeline.run(..))`: all threads
    // alive at once, each running a few events.
    let all_started = Barrier::new(THREADS);
    std::thread::scope(|scope| {
        for thread in 0..THREADS as u64 {
            let (pipeline, all_started) = (&pipeline, &all_started);
            scope.spawn(move || {
                all_started.wait();
                for event in 0..20 {
                    pipeline.run(thread * 100 + event).expect("runs");
                }
                all_started.wait();
            });
        }
    });
    let report = session.finish().expect("finish");

    // Before: the trace's buffers were 64 chunks of 2,048 records, one per thread: 448 of the
    // 512 threads had none, and ~200 blocking threads left 415 records out.
    assert_eq!(report.trace.as_ref().unwrap().spans_left_out, 0, "nothing left out");
    let calls = (THREADS * 20) as u64;
    assert_eq!(report.stage("Handle").expect("Handle").timing.calls, calls);
    assert_eq!(slices_named(&path, "Handle"), calls);
    assert_eq!(slices_named(&path, "threads::work"), calls);
    let expect = format!("--expect=Handle={calls}\n--expect=threads::work={calls}\n--strict");
    std::fs::write(path.with_extension("expect"), expect).expect("expect file");
}

#[test]
fn threads_that_end_hand_over_their_live_heap_change() {
    let _lock = exclusive();
    // No session: the counting allocator alone. Each spawn allocates on this thread what the
    // new thread frees when it ends (its handle, its closure, here a vector): bytes that stayed in
    // the ended thread's batched change, so the live heap read higher after every thread.
    let before = pipeline::alloc::heap().live_bytes as i64;
    for _ in 0..500 {
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| std::hint::black_box(vec![0u8; 100]).len());
            }
        });
    }
    let drift = pipeline::alloc::heap().live_bytes as i64 - before;
    // Was +640 KB for these 4,000 threads (160 bytes each).
    assert!(drift.abs() < 16 << 10, "the live heap moved {drift} bytes with nothing retained");
}
