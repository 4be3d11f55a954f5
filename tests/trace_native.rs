//! The native trace writer: async calls are one slice each, a full-speed run loses nothing at
//! default settings, the tracing-chrome backend (the reference) holds the same slices per thread,
//! and memory stays flat over a long trace. Traces are left in `target/tmp/traces/` with an
//! `.expect` file beside each for `.ci/run`'s Perfetto-style check (`--strict` for native ones).
#![cfg(not(feature = "off"))]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Waker};

use common::{count, exclusive, load_trace, rss_bytes, slices, trace_dir, YieldTimes};
use pipeline::trace::TraceBackend;
use pipeline::{profiled, stage, CountingAllocator, Pipeline, Profiler, WorkerConfig};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

/// The arguments `.ci/run` passes to the checker for this trace.
fn expect(trace: &Path, strict: bool, counts: &[(&str, u64)]) {
    let mut lines: Vec<String> =
        counts.iter().map(|(name, n)| format!("--expect={name}={n}")).collect();
    if strict {
        lines.push("--strict".to_owned());
    }
    std::fs::write(trace.with_extension("expect"), lines.join("\n")).expect("expect file");
}

#[profiled]
async fn fetch(x: u64) -> u64 {
    YieldTimes(5).await;
    x + 1
}

#[test]
fn an_async_call_is_one_slice_from_first_poll_to_completion() {
    let _lock = exclusive();
    let path = trace_dir().join("async.json");
    let profiler = Profiler::new().chrome_trace(&path).start().unwrap();
    for x in 0..50 {
        let (value, polls) = common::block_on(fetch(x));
        assert_eq!((value, polls), (x + 1, 6), "five yields, six polls");
    }
    let report = profiler.finish().unwrap();
    let row = report.outside_stages.iter().find(|f| f.name == "trace_native::fetch");
    let calls = row.expect("a row outside stages").timing.calls;
    assert_eq!(calls, 50);
    let traced = slices(&load_trace(&path));
    assert_eq!(count(&traced, "trace_native::fetch"), 50, "one slice per call, not per poll");
    assert!(traced.iter().filter(|s| s.name == "trace_native::fetch").all(|s| s.is_async));
    expect(&path, true, &[("trace_native::fetch", 50)]);
}

/// Polls two futures in turn on this thread until both are done.
fn join_interleaved<A: std::future::Future, B: std::future::Future>(a: A, b: B) {
    let (mut a, mut b) = (Box::pin(a), Box::pin(b));
    let mut cx = Context::from_waker(Waker::noop());
    let (mut a_done, mut b_done) = (false, false);
    while !(a_done && b_done) {
        if !a_done {
            a_done = Pin::as_mut(&mut a).poll(&mut cx).is_ready();
        }
        if !b_done {
            b_done = Pin::as_mut(&mut b).poll(&mut cx).is_ready();
        }
    }
}

#[test]
fn two_concurrent_calls_of_one_async_fn_stay_two_slices() {
    let _lock = exclusive();
    let path = trace_dir().join("async-concurrent.json");
    let profiler = Profiler::new().chrome_trace(&path).start().unwrap();
    let other = std::thread::spawn(|| common::block_on(fetch(100)));
    join_interleaved(fetch(1), fetch(2));
    other.join().unwrap();
    profiler.finish().unwrap();
    let traced = slices(&load_trace(&path));
    let calls: Vec<_> = traced.iter().filter(|s| s.name == "trace_native::fetch").collect();
    assert_eq!(calls.len(), 3, "two interleaved on one thread, one on another");
    // The two interleaved calls overlap in time and still are two slices.
    let same_thread: Vec<_> = calls.iter().filter(|s| s.tid == calls[0].tid).collect();
    let overlapping = same_thread.len() == 2
        && same_thread[0].ts < same_thread[1].ts + same_thread[1].dur
        && same_thread[1].ts < same_thread[0].ts + same_thread[0].dur;
    assert!(overlapping || same_thread.len() == 1, "{same_thread:?}");
    expect(&path, true, &[("trace_native::fetch", 3)]);
}

struct Parse;

#[stage]
impl Parse {
    fn process(&self, event: u64) -> u64 {
        checksum(event)
    }
}

#[profiled]
fn checksum(event: u64) -> u64 {
    event.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7)
}

struct Enrich;

#[stage]
impl Enrich {
    fn process(&self, event: u64) -> u64 {
        event ^ 0xff
    }
}

#[test]
fn a_full_speed_run_on_two_workers_keeps_every_slice_at_default_settings() {
    let _lock = exclusive();
    let path = trace_dir().join("full-speed.json");
    let pipeline = Pipeline::new().stage(Parse).stage(Enrich);
    let profiler = Profiler::new().chrome_trace(&path).start().unwrap();
    let run = pipeline.run_concurrent(0..20_000, WorkerConfig::new(2)).unwrap();
    let report = profiler.finish().unwrap();
    assert_eq!(run.completed, 20_000);
    assert_eq!(report.trace.as_ref().unwrap().spans_left_out, 0, "nothing left out");
    assert!(!report.to_string().contains("left out"), "{report}");

    let traced = slices(&load_trace(&path));
    for stage in &report.stages {
        assert_eq!(count(&traced, &stage.name), stage.timing.calls, "{}", stage.name);
    }
    assert_eq!(count(&traced, "event"), 20_000);
    assert_eq!(count(&traced, "trace_native::checksum"), 20_000);
    expect(&path, true, &[("Parse", 20_000), ("Enrich", 20_000), ("event", 20_000)]);
}

/// (thread name, slice name, depth) → count, for the threads named `w*`.
fn shape(path: &Path) -> BTreeMap<(String, String, usize), u64> {
    let events = load_trace(path);
    let names: BTreeMap<u64, String> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| (e["tid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap().to_owned()))
        .collect();
    let mut shape = BTreeMap::new();
    for slice in slices(&events) {
        let Some(thread) = names.get(&slice.tid).filter(|n| n.starts_with('w')) else { continue };
        *shape.entry((thread.clone(), slice.name, slice.depth)).or_default() += 1;
    }
    shape
}

/// The same calls on two named threads, each with its own fixed share of the events.
fn deterministic_workload(path: &Path, backend: TraceBackend) {
    let pipeline = Pipeline::new().stage(Parse).stage(Enrich);
    let profiler = Profiler::new().chrome_trace(path).trace_backend(backend).start().unwrap();
    std::thread::scope(|scope| {
        for (name, events) in [("w0", 0..300u64), ("w1", 300..500)] {
            let pipeline = &pipeline;
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn_scoped(scope, move || {
                    for event in events {
                        pipeline.run(event).unwrap();
                    }
                })
                .unwrap();
        }
    });
    let report = profiler.finish().unwrap();
    assert_eq!(report.trace.unwrap().spans_left_out, 0);
}

#[test]
fn the_native_writer_and_tracing_chrome_hold_the_same_slices_per_thread() {
    let _lock = exclusive();
    let native = trace_dir().join("reference-native.json");
    let chrome = trace_dir().join("reference-tracing-chrome.json");
    deterministic_workload(&native, TraceBackend::Native);
    deterministic_workload(&chrome, TraceBackend::TracingChrome);
    let (ours, reference) = (shape(&native), shape(&chrome));
    assert_eq!(ours, reference, "same names, counts and nesting per thread");
    assert_eq!(ours[&("w0".to_owned(), "trace_native::checksum".to_owned(), 1)], 300);
    expect(&native, true, &[("Parse", 500), ("trace_native::checksum", 500)]);
    expect(&chrome, false, &[("Parse", 500), ("trace_native::checksum", 500)]);
}

/// Ignored by default (it takes a while in a debug build); CI runs it in release:
/// `cargo test --release --test trace_native -- --ignored`.
#[test]
#[ignore = "long: 10,000,000 spans; CI runs it in release"]
fn ten_million_spans_keep_memory_flat() {
    let _lock = exclusive();
    let path = trace_dir().join("ten-million.json");
    let stage = Parse;
    let profiler = Profiler::new().chrome_trace(&path).start().unwrap();
    let mut after_first_million = 0;
    for event in 0..5_000_000u64 {
        // Two spans per event: the stage and the function inside it.
        std::hint::black_box(pipeline::Stage::process(&stage, event).unwrap());
        if event == 500_000 {
            after_first_million = rss_bytes();
        }
    }
    let at_end = rss_bytes();
    let report = profiler.finish().unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(report.trace.unwrap().spans_left_out, 0);
    let growth = at_end.saturating_sub(after_first_million);
    println!("RSS after 1M spans: {after_first_million} B; after 10M: {at_end} B (+{growth} B)");
    assert!(growth < 20 << 20, "RSS grew by {growth} bytes between 1M and 10M spans");
}

/// Rejects every other event: each rejection writes an outcome text on the stage's slice and
/// a `rejected` instant with its own text, on the worker's thread.
struct RejectOdd;

#[stage]
impl RejectOdd {
    fn process(&self, event: u64) -> Result<u64, pipeline::StageError> {
        if event % 2 == 1 {
            return Err(pipeline::StageError::rejected("odd event"));
        }
        Ok(event)
    }
}

#[test]
fn texts_stay_with_their_records_while_the_writer_reads_mid_run() {
    // The writer reads each thread's records and texts while the thread goes on writing; a
    // record published between its reading the texts and the records once lost its text, and
    // every later text of that thread landed on the wrong record (an instant's arguments were
    // a stage's outcome: not JSON).
    let _lock = exclusive();
    let path = trace_dir().join("texts.json");
    let pipeline = Pipeline::new().stage(RejectOdd);
    let profiler = Profiler::new().chrome_trace(&path).start().unwrap();
    pipeline.run_concurrent(0..60_000, WorkerConfig::new(2)).unwrap();
    profiler.finish().unwrap();
    let events = load_trace(&path); // valid JSON, or this fails
    let instants: Vec<_> =
        events.iter().filter(|e| e["ph"] == "i" && e["name"] == "rejected").collect();
    assert_eq!(instants.len(), 30_000);
    let full = events.iter().filter(|e| e["ph"] == "i" && e["name"] == "queue full");
    assert!(full.into_iter().all(|e| e["args"]["capacity"] == 1024), "its own arguments");
    for instant in &instants {
        assert_eq!(instant["args"]["reason"], "odd event", "{instant}");
    }
    let rejected = slices(&events)
        .into_iter()
        .filter(|s| s.name == "RejectOdd" && s.args["outcome"] == "rejected: odd event")
        .count();
    assert_eq!(rejected, 30_000, "every rejected call's slice has its own outcome");
    expect(&path, true, &[("RejectOdd", 60_000), ("event", 60_000)]);
    let _ = std::fs::remove_file(&path);
}
