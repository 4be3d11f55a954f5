//! A user who installed stats_alloc's own `INSTRUMENTED_SYSTEM` gets its process-wide heap figures
//! in the report, and per-call figures honestly marked as not measured.
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

use pipeline::alloc::{installed_allocator, AllocatorKind};
use pipeline::{stage, Pipeline, Profiler};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

struct Grow;

#[stage]
impl Grow {
    fn process(&self, event: Vec<u8>) -> Vec<u8> {
        let mut event = event;
        event.extend_from_slice(&[0; 4096]);
        event
    }
}

#[test]
fn stats_alloc_figures_are_process_wide_and_per_call_figures_are_not_measured() {
    assert_eq!(installed_allocator(), AllocatorKind::StatsAllocInstrumentedSystem);
    let pipeline = Pipeline::new().stage(Grow);
    let profiler = Profiler::new().start().unwrap();
    let kept = pipeline.run(Vec::new()).unwrap();
    let report = profiler.finish().unwrap();

    assert_eq!(report.stage("Grow").unwrap().memory, None);
    let summary = &report.memory;
    assert_eq!(summary.allocator, AllocatorKind::StatsAllocInstrumentedSystem);
    assert!(summary.growth_bytes.unwrap() >= 4096, "{summary:?}");
    assert_eq!(summary.peak_during_run, None, "stats_alloc keeps no peak");
    assert!(report.to_string().contains("Memory per call: not measured"));
    drop(kept);
}
