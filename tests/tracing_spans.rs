//! Stage and function spans are real `tracing` spans: any subscriber sees them, with the stage's
//! name, the declaring crate as target, and function spans nested inside stage spans, after
//! `emit_spans(true)` (and while a Chrome trace is written: `tests/trace*.rs`). Otherwise no
//! span is made, idle or recording statistics.
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

mod common;

use std::sync::{Arc, Mutex};

use common::{block_on, exclusive, YieldTimes};
use pipeline::trace::emit_spans;
use pipeline::{profiled, stage, Pipeline, Profiler};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Seen {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = ctx.span(id).and_then(|span| span.parent()).map(|p| p.name().to_owned());
        self.0.lock().unwrap().push(format!(
            "new {} target={} parent={}",
            attrs.metadata().name(),
            attrs.metadata().target(),
            parent.as_deref().unwrap_or("-"),
        ));
    }
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let name = ctx.span(id).map(|s| s.name().to_owned()).unwrap_or_default();
        self.0.lock().unwrap().push(format!("enter {name}"));
    }
}

struct Scoring;

#[stage(name = "scoring")]
impl Scoring {
    fn process(&self, event: u32) -> u32 {
        weigh(event)
    }
}

#[profiled]
fn weigh(x: u32) -> u32 {
    x + 1
}

#[profiled]
async fn slow_lookup() -> u32 {
    YieldTimes(2).await;
    7
}

fn seen_while(run: impl FnOnce()) -> Vec<String> {
    let seen = Seen::default();
    let subscriber = tracing_subscriber::registry().with(seen.clone());
    tracing::subscriber::with_default(subscriber, run);
    let lines = seen.0.lock().unwrap().clone();
    lines
}

/// Runs `run` with spans asked for (the flag is process-wide: tests that touch it hold the lock).
fn with_spans<T>(run: impl FnOnce() -> T) -> T {
    emit_spans(true);
    let result = run();
    emit_spans(false);
    result
}

/// `Pipeline::run` is an `event` span, the stage in it, the function in the stage.
const NESTED: [&str; 6] = [
    "new event target=pipeline parent=-",
    "enter event",
    "new scoring target=tracing_spans parent=event",
    "enter scoring",
    "new tracing_spans::weigh target=tracing_spans parent=scoring",
    "enter tracing_spans::weigh",
];

#[test]
fn a_subscriber_sees_stage_spans_with_function_spans_nested_inside() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(Scoring);
    let seen = with_spans(|| {
        seen_while(|| {
            pipeline.run(1).unwrap();
        })
    });
    assert_eq!(seen, NESTED);
}

#[test]
fn without_emit_spans_no_span_is_made_idle_or_recording_statistics() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(Scoring);
    let idle = seen_while(|| {
        pipeline.run(1).unwrap();
    });
    assert_eq!(idle, [] as [&str; 0], "the runtime switch: an idle call makes no span");
    assert!(seen_while(|| {
        block_on(slow_lookup());
    })
    .is_empty());

    let profiler = Profiler::new().start().unwrap();
    let recording = seen_while(|| {
        pipeline.run(1).unwrap();
    });
    let report = profiler.finish().unwrap();
    assert_eq!(recording, [] as [&str; 0], "statistics do not need spans");
    assert_eq!(report.stage("scoring").unwrap().timing.calls, 1, "but the call was recorded");
    assert_eq!(
        report.stage("scoring").unwrap().function("tracing_spans::weigh").unwrap().timing.calls,
        1
    );
}

#[test]
fn an_async_function_span_is_entered_on_every_poll() {
    let _lock = exclusive();
    let (seen, polls) = with_spans(|| {
        let mut polls = 0;
        let seen = seen_while(|| {
            let (value, n) = block_on(slow_lookup());
            assert_eq!(value, 7);
            polls = n;
        });
        (seen, polls)
    });
    assert_eq!(polls, 3);
    let enters = seen.iter().filter(|l| *l == "enter tracing_spans::slow_lookup").count();
    assert_eq!(enters, polls, "{seen:?}");
    assert_eq!(seen.iter().filter(|l| l.starts_with("new ")).count(), 1);
}
