//! The spans the toolkit emits, as an OpenTelemetry backend receives them (tracing-opentelemetry
//! into an in-memory exporter): one trace per request across worker threads, one per
//! `Pipeline::run`, error status on failed calls, numbers as numbers, per-event sampling.
#![cfg(not(feature = "off"))] // the off build makes no spans

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use common::exclusive;
use opentelemetry::trace::{SpanId, Status, TraceId, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use pipeline::{profiled, stage, CountingAllocator, Pipeline, Profiler, StageError, WorkerConfig};
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

/// Fails event 13, rejects events ending in 5, looks the rest up.
struct Check;

#[stage]
impl Check {
    fn process(&self, event: u64) -> Result<u64, StageError> {
        if event == 13 {
            return Err(StageError::failed("no such account: 13"));
        }
        if event % 10 == 5 {
            return Err(StageError::rejected("ends in five"));
        }
        Ok(lookup(event))
    }
}

/// Allocates once (so the stage's span carries allocation counts).
#[profiled]
fn lookup(event: u64) -> u64 {
    let boxed = std::hint::black_box(Box::new(event));
    *boxed + 1
}

struct Store;

#[stage]
impl Store {
    fn process(&self, event: u64) -> u64 {
        event
    }
}

fn pipeline() -> Pipeline<u64> {
    Pipeline::new().stage(Check).stage(Store)
}

/// While set, every span's close takes 20 ms and allocates: a subscriber doing slow
/// synchronous work (exporting) when a nested call's span ends, inside the enclosing stage.
static SLOW_CLOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

struct SlowClose;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SlowClose {
    fn on_close(&self, _: tracing::span::Id, _: tracing_subscriber::layer::Context<'_, S>) {
        if SLOW_CLOSE.load(std::sync::atomic::Ordering::Relaxed) {
            std::hint::black_box(vec![0u8; 256]);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

struct Otel {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
}

/// The process's subscriber: tracing-opentelemetry with a synchronous exporter into memory
/// (worker threads use the global subscriber, so it is set once for this test binary).
fn otel() -> &'static Otel {
    static OTEL: OnceLock<Otel> = OnceLock::new();
    OTEL.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("pipeline-test"));
        let subscriber = tracing_subscriber::registry().with(layer).with(SlowClose);
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        Otel { exporter, provider }
    })
}

/// The spans `run` exports, with the toolkit's spans on (for one event in `one_in`) and a
/// profiling session recording (allocation attributes need one and the counting allocator).
fn exported(one_in: u64, run: impl FnOnce()) -> (Vec<SpanData>, pipeline::Report) {
    let otel = otel();
    otel.exporter.reset();
    pipeline::trace::emit_spans_one_in(one_in);
    let session = Profiler::new().start().expect("a session");
    run();
    let report = session.finish().expect("finish");
    pipeline::trace::emit_spans(false);
    otel.provider.force_flush().expect("flushed");
    (otel.exporter.get_finished_spans().expect("spans"), report)
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans
        .iter()
        .filter(|span| span.name == name || span.name.ends_with(&format!("::{name}")))
        .collect()
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
}

#[test]
fn events_submitted_inside_a_request_span_are_one_trace_across_worker_threads() {
    let _lock = exclusive();
    let pipeline = pipeline();
    let (spans, _) = exported(1, || {
        let request = tracing::info_span!("request");
        let _entered = request.enter();
        common::quietly(|| pipeline.run_concurrent(0..100, WorkerConfig::new(4).queue(16)))
            .expect("a run");
    });
    let request = named(&spans, "request");
    assert_eq!(request.len(), 1);
    let request = request[0];
    assert_eq!(request.parent_span_id, SpanId::INVALID, "the request is the trace's root");
    let trace = request.span_context.trace_id();
    let traces: HashSet<TraceId> = spans.iter().map(|s| s.span_context.trace_id()).collect();
    assert_eq!(traces, HashSet::from([trace]), "one trace for the whole request");

    let events = named(&spans, "event");
    assert_eq!(events.len(), 100, "one event span per event");
    for event in &events {
        assert!(matches!(attribute(event, "id"), Some(Value::I64(_))), "{:?}", event.attributes);
        assert!(matches!(attribute(event, "queue_wait_us"), Some(Value::I64(_))));
    }
    assert!(events.iter().all(|e| e.parent_span_id == request.span_context.span_id()));
    let event_ids: HashSet<SpanId> = events.iter().map(|e| e.span_context.span_id()).collect();
    let checks = named(&spans, "Check");
    assert_eq!(checks.len(), 100);
    assert!(checks.iter().all(|c| event_ids.contains(&c.parent_span_id)), "stages under events");
    let stores = named(&spans, "Store");
    assert_eq!(stores.len(), 100 - 1 - 10, "one failed, ten rejected before Store");
    assert!(stores.iter().all(|s| event_ids.contains(&s.parent_span_id)));
    let check_ids: HashSet<SpanId> = checks.iter().map(|c| c.span_context.span_id()).collect();
    let lookups = named(&spans, "lookup");
    assert_eq!(lookups.len(), 89);
    assert!(
        lookups.iter().all(|l| check_ids.contains(&l.parent_span_id)),
        "functions under stages"
    );
    // Each event's stages are its own: no event span holds another event's calls.
    let mut per_event: HashMap<SpanId, usize> = HashMap::new();
    for check in &checks {
        *per_event.entry(check.parent_span_id).or_default() += 1;
    }
    assert!(per_event.values().all(|n| *n == 1));
}

#[test]
fn each_pipeline_run_is_a_trace_of_its_own_with_its_stages_nested() {
    let _lock = exclusive();
    let pipeline = pipeline();
    let (spans, _) = exported(1, || {
        for event in [1, 2, 3] {
            pipeline.run(event).expect("passes");
        }
    });
    let events = named(&spans, "event");
    assert_eq!(events.len(), 3);
    let traces: HashSet<TraceId> = events.iter().map(|e| e.span_context.trace_id()).collect();
    assert_eq!(traces.len(), 3, "one trace per event");
    for event in events {
        assert_eq!(event.parent_span_id, SpanId::INVALID, "the event is its trace's root");
        let in_trace: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.span_context.trace_id() == event.span_context.trace_id())
            .collect();
        let stages: Vec<&&SpanData> =
            in_trace.iter().filter(|s| s.parent_span_id == event.span_context.span_id()).collect();
        let names: HashSet<&str> = stages.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, HashSet::from(["Check", "Store"]), "both stages under the event");
    }
}

#[test]
fn failed_calls_are_errors_rejections_are_not_and_counts_are_numbers() {
    let _lock = exclusive();
    let pipeline = pipeline();
    let (spans, _) = exported(1, || {
        for event in [13, 15, 16] {
            let _ = pipeline.run(event);
        }
    });
    let checks = named(&spans, "Check");
    assert_eq!(checks.len(), 3);
    let failed = checks.iter().find(|c| matches!(c.status, Status::Error { .. })).expect("one");
    let Status::Error { description } = &failed.status else { unreachable!() };
    assert!(description.contains("no such account: 13"), "{description}");
    let rejected = checks
        .iter()
        .find(|c| attribute(c, "outcome").is_some_and(|o| o.as_str().contains("rejected")))
        .expect("the rejected call says so");
    assert_eq!(rejected.status, Status::Unset, "a rejection is a decision, not an error");
    let passed = checks.iter().find(|c| attribute(c, "outcome").is_none()).expect("one passed");
    assert_eq!(passed.status, Status::Unset);
    assert!(
        matches!(attribute(passed, "allocations"), Some(Value::I64(n)) if *n >= 1),
        "allocations arrive as a number: {:?}",
        passed.attributes
    );
    assert!(matches!(attribute(passed, "bytes_allocated"), Some(Value::I64(n)) if *n >= 8));
}

#[test]
fn sampling_one_event_in_ten_exports_whole_events_and_the_report_counts_every_call() {
    let _lock = exclusive();
    let pipeline = pipeline();
    let (spans, report) = exported(10, || {
        common::quietly(|| pipeline.run_concurrent(0..100, WorkerConfig::new(4).queue(16)))
            .expect("a run");
    });
    let events = named(&spans, "event");
    assert_eq!(events.len(), 10, "one event in ten");
    let event_ids: HashSet<SpanId> = events.iter().map(|e| e.span_context.span_id()).collect();
    let checks = named(&spans, "Check");
    assert_eq!(checks.len(), 10, "each sampled event's stages, no other event's");
    assert!(checks.iter().all(|c| event_ids.contains(&c.parent_span_id)));
    assert_eq!(report.stage("Check").expect("recorded").timing.calls, 100, "every call counted");
}

#[test]
fn a_subscribers_work_on_a_nested_span_is_not_charged_to_the_stage() {
    let _lock = exclusive();
    let pipeline = pipeline();
    SLOW_CLOSE.store(true, std::sync::atomic::Ordering::Relaxed);
    let (spans, report) = exported(1, || {
        for event in [1, 2, 3] {
            pipeline.run(event).expect("passes");
        }
    });
    SLOW_CLOSE.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(named(&spans, "lookup").len(), 3, "the spans were made and closed");
    // Each `lookup` span's close took 20 ms inside `Check`'s call: none of it is Check's time,
    // nor its allocations (the layer's 256 bytes); its own Box of 8 bytes is.
    let check = report.stage("Check").expect("recorded");
    assert!(check.timing.max_ns < 10_000_000, "{:?}", check.timing);
    let memory = check.memory.as_ref().expect("the counting allocator is installed");
    assert_eq!(memory.total.bytes_allocated, 3 * 8, "{memory:?}");
}

/// Awaits once, then passes the event on; fails event 4.
struct Fetch;

#[stage]
impl Fetch {
    async fn process(&self, event: u64) -> Result<u64, StageError> {
        tokio::task::yield_now().await;
        if event == 4 {
            return Err(StageError::failed("timed out"));
        }
        Ok(event)
    }
}

#[test]
fn a_worker_pool_and_the_async_runner_keep_the_submitters_trace() {
    use tracing::Instrument;
    let _lock = exclusive();
    let (spans, _) = exported(1, || {
        // A long-running pool: each request submits its own event.
        let pool =
            pipeline::WorkerPool::start(std::sync::Arc::new(pipeline()), WorkerConfig::new(2))
                .expect("a pool");
        for request in 0..3u64 {
            let span = tracing::info_span!("request", request);
            let _entered = span.enter();
            pool.submit(request + 1).expect("open");
        }
        pool.join().expect("joined");
        // The async runner: the submitting future's span.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let pipeline = std::sync::Arc::new(pipeline::AsyncPipeline::new().stage_async(Fetch));
            let pool =
                pipeline::AsyncWorkerPool::start(pipeline, WorkerConfig::new(4)).expect("a pool");
            for request in 3..6u64 {
                let span = tracing::info_span!("request", request);
                pool.submit(request).instrument(span).await.expect("open");
            }
            pool.finish().await.expect("finished");
        });
    });
    let requests = named(&spans, "request");
    assert_eq!(requests.len(), 6);
    let events = named(&spans, "event");
    assert_eq!(events.len(), 6, "one event span per submitted event");
    for request in &requests {
        let trace = request.span_context.trace_id();
        let children: Vec<&&SpanData> =
            events.iter().filter(|e| e.parent_span_id == request.span_context.span_id()).collect();
        assert_eq!(children.len(), 1, "each request's event is its child");
        assert_eq!(children[0].span_context.trace_id(), trace);
        let stages: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.parent_span_id == children[0].span_context.span_id())
            .collect();
        assert!(!stages.is_empty(), "the event's stages are in the request's trace");
        assert!(stages.iter().all(|s| s.span_context.trace_id() == trace));
    }
    let fetches = named(&spans, "Fetch");
    assert_eq!(fetches.len(), 3, "each async stage call is a span, under its event");
    let failed: Vec<&&SpanData> =
        fetches.iter().filter(|f| matches!(f.status, Status::Error { .. })).collect();
    assert_eq!(failed.len(), 1, "the failed async call is an error");
    assert!(matches!(attribute(failed[0], "outcome"), Some(o) if o.as_str().contains("timed out")));
}

/// Panics on every event.
struct Explodes;

#[stage]
impl Explodes {
    fn process(&self, _event: u64) -> u64 {
        panic!("boom")
    }
}

#[test]
fn a_panicked_call_is_an_error_and_its_event_is_accounted() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(Explodes);
    let (spans, _) = exported(1, || {
        let run =
            common::quietly(|| pipeline.run_concurrent(0..4, WorkerConfig::new(2))).expect("a run");
        assert_eq!(run.failed, 4, "the worker caught every panic");
    });
    let calls = named(&spans, "Explodes");
    assert_eq!(calls.len(), 4);
    for call in calls {
        assert!(matches!(&call.status, Status::Error { description } if description == "panicked"));
        assert!(matches!(attribute(call, "outcome"), Some(o) if o.as_str() == "panicked"));
    }
    assert_eq!(named(&spans, "event").len(), 4, "every event's span ended");
}
