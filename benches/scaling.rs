//! Do two instrumented workers scale like two bare ones? A CPU-bound stage (~2 µs, with a nested
//! profiled function) run by `run_concurrent` on 1 and on 2 workers, bare (a hand-written `Stage`,
//! no profiler) and instrumented (`#[stage]` + `#[profiled]`, profiler recording). If recording
//! took a lock shared between workers, the instrumented speed-up would fall behind the bare one.
//!
//! Run: `cargo bench --bench scaling`

mod common;

use std::hint::black_box;
use std::time::Instant;

use pipeline::{profiled, stage, Pipeline, Profiler, Stage, StageResult, WorkerConfig};

const EVENTS: u64 = 200_000;
const ROUNDS: usize = 7;

fn kernel(event: u64) -> u64 {
    let mut h = event ^ 0x9e37_79b9_7f4a_7c15;
    for round in 0..1_000u64 {
        h = black_box(h.rotate_left(5) ^ round).wrapping_mul(0x100_0000_01b3);
    }
    h
}

struct BareStage;

impl Stage<u64> for BareStage {
    type Out = u64;
    fn name(&self) -> &str {
        "BareStage"
    }
    fn process(&self, event: u64) -> StageResult<u64> {
        Ok(Some(kernel(event)))
    }
}

struct InstrumentedStage;

#[stage]
impl InstrumentedStage {
    fn process(&self, event: u64) -> u64 {
        profiled_kernel(event)
    }
}

#[profiled]
fn profiled_kernel(event: u64) -> u64 {
    kernel(event)
}

/// Events per second through `workers` workers.
fn throughput(pipeline: &Pipeline<u64>, workers: usize, events: u64, profile: bool) -> f64 {
    let profiler = profile.then(|| Profiler::new().start().expect("one profiler at a time"));
    let started = Instant::now();
    let run =
        pipeline.run_concurrent(0..events, WorkerConfig::new(workers).queue(4096)).expect("run");
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(profiler) = profiler {
        let report = profiler.finish().expect("finish");
        assert_eq!(report.stage("InstrumentedStage").map(|s| s.timing.calls), Some(events));
    }
    assert_eq!(run.completed, events);
    events as f64 / elapsed
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let (events, rounds) = if quick { (2_000, 1) } else { (EVENTS, ROUNDS) };
    let bare = Pipeline::new().stage(BareStage);
    let instrumented = Pipeline::new().stage(InstrumentedStage);
    let cases: [(&str, &Pipeline<u64>, bool); 2] = [
        ("bare (hand-written Stage)", &bare, false),
        ("instrumented (#[stage] + #[profiled])", &instrumented, true),
    ];
    let mut samples = vec![[Vec::new(), Vec::new()]; cases.len()];
    for round in 0..rounds {
        for offset in 0..cases.len() {
            let index = (round + offset) % cases.len();
            let (_, pipeline, profile) = cases[index];
            for (slot, workers) in [1, 2].into_iter().enumerate() {
                samples[index][slot].push(throughput(pipeline, workers, events, profile));
            }
        }
    }
    println!("| pipeline | 1 worker (events/s) | 2 workers (events/s) | speed-up |");
    println!("| --- | ---: | ---: | ---: |");
    for ((name, _, _), [one, two]) in cases.iter().zip(samples) {
        let (one, two) = (common::median(one), common::median(two));
        println!("| {name} | {one:.0} | {two:.0} | {:.2}× |", two / one);
    }
}
