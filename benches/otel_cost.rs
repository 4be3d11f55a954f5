//! What spans for OpenTelemetry cost per event, with and without per-event sampling, next to
//! recording alone, in one run.
//!
//! Run: `cargo bench --bench otel_cost`.
//!
//! A two-stage pipeline whose first stage calls one `#[profiled]` function: four spans per
//! event (the event, two stages, the function). The subscriber is tracing-opentelemetry 0.34
//! into opentelemetry_sdk 0.33's in-memory exporter through the simple (synchronous) span
//! processor, so the figure is the layer's and the SDK's work per span, export included. Each
//! case runs 50,000 `Pipeline::run` calls with a session recording; cases are interleaved over
//! 5 rounds and the median is shown as whole-process CPU per event (getrusage).

mod common;

use std::hint::black_box;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use pipeline::{profiled, stage, CountingAllocator, Pipeline, Profiler};
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

const EVENTS: u64 = 50_000;
const ROUNDS: usize = 5;

struct Score;

#[stage]
impl Score {
    fn process(&self, event: u64) -> u64 {
        weigh(event)
    }
}

#[profiled]
fn weigh(event: u64) -> u64 {
    black_box(event.rotate_left(7) ^ 0x9e37).wrapping_mul(0x100_0000_01b3)
}

struct Store;

#[stage]
impl Store {
    fn process(&self, event: u64) -> u64 {
        black_box(event)
    }
}

/// The cases: a name and how spans are emitted (`None`: not at all).
const CASES: [(&str, Option<u64>); 4] = [
    ("recording, no spans", None),
    ("spans for every event", Some(1)),
    ("spans for 1 event in 10", Some(10)),
    ("spans for 1 event in 100", Some(100)),
];

fn main() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("otel-cost"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .expect("the only subscriber");
    let pipeline = Pipeline::new().stage(Score).stage(Store);
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); CASES.len()];
    let mut exported = vec![0usize; CASES.len()];
    for _ in 0..ROUNDS {
        for (index, (_, spans)) in CASES.iter().enumerate() {
            match spans {
                Some(one_in) => pipeline::trace::emit_spans_one_in(*one_in),
                None => pipeline::trace::emit_spans(false),
            }
            let session = Profiler::new().start().expect("a session");
            let before = common::process_cpu_ns();
            for event in 0..EVENTS {
                black_box(pipeline.run(black_box(event)).expect("passes"));
            }
            let used = common::process_cpu_ns() - before;
            session.finish().expect("finish");
            pipeline::trace::emit_spans(false);
            cpu[index].push(used as f64 / EVENTS as f64);
            exported[index] = exporter.get_finished_spans().expect("spans").len();
            exporter.reset();
        }
    }
    println!(
        "{EVENTS} events per case (4 spans each when sampled), median of {ROUNDS} rounds, \
         whole-process CPU per event (`cargo bench --bench otel_cost`)\n"
    );
    println!("{:<28}{:>16}{:>18}", "case", "CPU ns/event", "spans exported");
    for (index, (name, _)) in CASES.iter().enumerate() {
        println!("{name:<28}{:>16.0}{:>18}", common::median(cpu[index].clone()), exported[index]);
    }
}
