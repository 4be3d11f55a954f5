//! With the counting allocator installed, each stage call's allocations are counted exactly, on
//! its own thread, while other threads allocate heavily at the same time.
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;

use common::exclusive;
use pipeline::alloc::{installed_allocator, AllocatorKind, ThreadRegion};
use pipeline::{profiled, stage, CountingAllocator, Pipeline, Profiler, Report};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

const CALLS: u64 = 200;

/// Allocates 1000 bytes and drops them.
struct Scratch;

#[stage]
impl Scratch {
    fn process(&self, event: u64) -> u64 {
        let buffer: Vec<u8> = Vec::with_capacity(1000);
        black_box(&buffer);
        event
    }
}

/// Allocates 1000 bytes and keeps them (into a store reserved up front, so pushing never grows it).
struct Hoarder {
    kept: Mutex<Vec<Vec<u8>>>,
}

#[stage]
impl Hoarder {
    fn process(&self, event: u64) -> u64 {
        let buffer: Vec<u8> = Vec::with_capacity(1000);
        self.kept.lock().unwrap().push(black_box(buffer));
        event
    }
}

/// Its own 1000 bytes, plus a nested profiled helper's 24.
struct Nesting;

#[stage]
impl Nesting {
    fn process(&self, event: u64) -> u64 {
        let own: Vec<u8> = Vec::with_capacity(1000);
        black_box(&own);
        black_box(helper_allocates_24());
        event
    }
}

#[profiled]
fn helper_allocates_24() -> usize {
    let small: Vec<u64> = Vec::with_capacity(3);
    black_box(&small);
    small.capacity()
}

/// Runs `run` under the profiler while two other threads allocate and free as fast as they can.
fn profile_under_allocation_noise(run: impl FnOnce()) -> Report {
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let v: Vec<u8> = Vec::with_capacity(64 + n % 4096);
                    black_box(v);
                    n += 1;
                }
            });
        }
        let profiler = Profiler::new().start().unwrap();
        run();
        let report = profiler.finish().unwrap();
        stop.store(true, Ordering::Relaxed);
        report
    })
}

#[test]
fn the_counting_allocator_is_detected() {
    assert_eq!(installed_allocator(), AllocatorKind::Counting);
}

#[test]
fn a_stage_that_drops_its_buffer_shows_one_allocation_of_1000_bytes_and_nothing_retained() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(Scratch);
    let report = profile_under_allocation_noise(|| {
        for e in 0..CALLS {
            pipeline.run(e).unwrap();
        }
    });
    let memory = report.stage("Scratch").unwrap().memory.expect("measured");
    assert_eq!(memory.total.allocations, CALLS);
    assert_eq!(memory.total.deallocations, CALLS);
    assert_eq!(memory.total.bytes_allocated, 1000 * CALLS);
    assert_eq!(memory.total.bytes_freed, 1000 * CALLS);
    assert_eq!(memory.total.retained_bytes, 0);
    assert_eq!(memory.allocations_per_call, 1.0);
    assert_eq!(memory.bytes_per_call, 1000.0);
    assert_eq!(memory.retained_per_call, 0.0);
    assert!(report.memory.retaining_stages.is_empty());
}

#[test]
fn a_stage_that_keeps_its_buffer_retains_1000_bytes_per_call_and_is_flagged() {
    let _lock = exclusive();
    let hoarder = Hoarder { kept: Mutex::new(Vec::with_capacity(CALLS as usize)) };
    let pipeline = Pipeline::new().stage(hoarder).stage(Scratch);
    let report = profile_under_allocation_noise(|| {
        for e in 0..CALLS {
            pipeline.run(e).unwrap();
        }
    });
    let memory = report.stage("Hoarder").unwrap().memory.unwrap();
    assert_eq!(memory.total.allocations, CALLS);
    assert_eq!(memory.total.deallocations, 0);
    assert_eq!(memory.retained_per_call, 1000.0);
    assert_eq!(memory.total.retained_bytes, 1000 * CALLS as i64);

    let summary = &report.memory;
    assert_eq!(summary.most_retaining_stage.as_deref(), Some("Hoarder"));
    let flagged: Vec<&str> = summary.retaining_stages.iter().map(|r| r.stage.as_str()).collect();
    assert_eq!(flagged, ["Hoarder"], "only the stage that keeps memory is flagged");
    assert_eq!(summary.retaining_stages[0].retained_per_call, 1000.0);
    let text = report.to_string();
    assert!(text.contains("Retention: Hoarder keeps 1000 B per call"), "{text}");
    drop(pipeline); // the kept buffers stayed alive until the report was taken
}

#[test]
fn nested_function_allocations_have_their_own_row_and_count_in_their_stage_total() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(Nesting);
    let report = profile_under_allocation_noise(|| {
        for e in 0..CALLS {
            pipeline.run(e).unwrap();
        }
    });
    let stage = report.stage("Nesting").unwrap();
    let stage_memory = stage.memory.unwrap();
    let helper = stage.function("memory::helper_allocates_24").unwrap().memory.unwrap();
    assert_eq!(helper.total.allocations, CALLS);
    assert_eq!(helper.total.bytes_allocated, 24 * CALLS);
    assert_eq!(helper.self_only, helper.total, "the helper has no instrumented children");
    assert_eq!(stage_memory.total.allocations, 2 * CALLS);
    assert_eq!(stage_memory.total.bytes_allocated, 1024 * CALLS);
    assert_eq!(stage_memory.self_only.allocations, CALLS);
    assert_eq!(stage_memory.self_only.bytes_allocated, 1000 * CALLS);
}

/// Holds 10 MB for a moment.
struct Spike;

#[stage]
impl Spike {
    fn process(&self, event: u64) -> u64 {
        let big = vec![1u8; 10 * 1024 * 1024];
        black_box(&big);
        event
    }
}

#[test]
fn a_stage_that_briefly_holds_10_mb_moves_the_peak_by_at_least_that_much() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(Spike);
    let profiler = Profiler::new().start().unwrap();
    pipeline.run(1).unwrap();
    let report = profiler.finish().unwrap();
    let summary = &report.memory;
    let (start, peak, end) = (
        summary.live_at_start.unwrap(),
        summary.peak_during_run.unwrap(),
        summary.live_at_end.unwrap(),
    );
    // Live bytes are exact to within 64 KiB per thread (each thread batches its change): a
    // thread of an earlier test that ends during the run hands over its batch then, which moved
    // the peak 24 bytes short of start + 10 MiB in 2 of 20 loaded runs.
    let batch = 64 * 1024;
    assert!(peak + batch >= start + 10 * 1024 * 1024, "peak {peak} vs live at start {start}");
    assert!(end < start + 1024 * 1024, "the 10 MB were freed: end {end}, start {start}");
    let memory = report.stage("Spike").unwrap().memory.unwrap();
    assert_eq!(memory.total.bytes_allocated, 10 * 1024 * 1024);
    assert_eq!(memory.total.retained_bytes, 0);
}

#[test]
fn a_thread_region_counts_only_its_own_thread() {
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        // Spawning allocates on this thread, so the region opens after it.
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                black_box(Vec::<u8>::with_capacity(100));
            }
        });
        let region = ThreadRegion::new();
        let mine: Vec<u8> = Vec::with_capacity(1000);
        black_box(&mine);
        drop(mine);
        let change = region.change();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(change.allocations, 1);
        assert_eq!(change.bytes_allocated, 1000);
        assert_eq!(change.deallocations, 1);
    });
}

#[test]
fn the_json_report_carries_the_memory_figures() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(Scratch);
    let profiler = Profiler::new().start().unwrap();
    pipeline.run(1).unwrap();
    let report = profiler.finish().unwrap();
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["stages"][0]["memory"]["total"]["bytes_allocated"], 1000);
    assert_eq!(json["stages"][0]["memory"]["self"]["allocations"], 1);
    assert_eq!(json["memory"]["allocator"], "counting");
    assert!(json["memory"]["peak_during_run"].is_u64());
}
