//! Without a counting allocator, memory figures say "not measured" (JSON `null`), never zero.
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

use pipeline::alloc::{installed_allocator, AllocatorKind};
use pipeline::{stage, Pipeline, Profiler};

struct Scratch;

#[stage]
impl Scratch {
    fn process(&self, event: u64) -> u64 {
        let buffer: Vec<u8> = Vec::with_capacity(1000);
        std::hint::black_box(&buffer);
        event
    }
}

#[test]
fn every_memory_figure_is_not_measured_rather_than_zero() {
    assert_eq!(installed_allocator(), AllocatorKind::None);
    let pipeline = Pipeline::new().stage(Scratch);
    let profiler = Profiler::new().start().unwrap();
    pipeline.run(1).unwrap();
    let report = profiler.finish().unwrap();

    assert_eq!(report.stage("Scratch").unwrap().memory, None);
    assert_eq!(report.memory.allocator, AllocatorKind::None);
    assert_eq!(report.memory.live_at_start, None);
    assert_eq!(report.memory.peak_during_run, None);

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert!(json["stages"][0]["memory"].is_null());
    assert!(json["memory"]["live_at_end"].is_null());
    assert_eq!(json["memory"]["allocator"], "none");

    let text = report.to_string();
    assert!(text.contains("Memory: not measured"), "{text}");
    assert!(text.contains("CountingAllocator::system()"), "says how to install it: {text}");
}
