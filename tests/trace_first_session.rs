//! The first traced session of a process carries allocations like every later one: the trace
//! writer learns that the counting allocator measures before its first slice (it once learned
//! it only from the previous session, so a process's first trace said "not measured").
#![cfg(not(feature = "off"))] // needs recorded figures; `tests/off.rs` covers the off build

use pipeline::analysis::Profile;
use pipeline::{stage, CountingAllocator, Pipeline, Profiler};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

struct Allocates;

#[stage]
impl Allocates {
    fn process(&self, event: u64) -> u64 {
        std::hint::black_box(vec![event; 4]).len() as u64
    }
}

#[test]
fn the_first_trace_of_a_process_declares_and_carries_allocations() {
    let trace = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("first-session.json");
    let pipeline = Pipeline::new().stage(Allocates);
    let session = Profiler::new().chrome_trace(&trace).start().unwrap();
    for n in 0..50 {
        pipeline.run(n).unwrap();
    }
    let report = session.finish().unwrap();
    assert_eq!(report.stage("Allocates").unwrap().memory.unwrap().total.allocations, 50);
    let profile = Profile::read(&trace).unwrap();
    assert_eq!(profile.row(None, "Allocates").unwrap().allocations, Some(50), "{profile}");
}
