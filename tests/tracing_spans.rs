//! Stage and function spans are real `tracing` spans: any subscriber sees them, with the stage's
//! name, the declaring crate as target, and function spans nested inside stage spans.
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

mod common;

use std::sync::{Arc, Mutex};

use common::{block_on, YieldTimes};
use pipeline::{profiled, stage, Pipeline};
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

#[test]
fn a_subscriber_sees_stage_spans_with_function_spans_nested_inside() {
    // No profiler is started: spans do not depend on it.
    let pipeline = Pipeline::new().stage(Scoring);
    let seen = seen_while(|| {
        pipeline.run(1).unwrap();
    });
    assert_eq!(
        seen,
        [
            "new scoring target=tracing_spans parent=-",
            "enter scoring",
            "new tracing_spans::weigh target=tracing_spans parent=scoring",
            "enter tracing_spans::weigh",
        ]
    );
}

#[test]
fn an_async_function_span_is_entered_on_every_poll() {
    let (seen, polls) = {
        let mut polls = 0;
        let seen = seen_while(|| {
            let (value, n) = block_on(slow_lookup());
            assert_eq!(value, 7);
            polls = n;
        });
        (seen, polls)
    };
    assert_eq!(polls, 3);
    let enters = seen.iter().filter(|l| *l == "enter tracing_spans::slow_lookup").count();
    assert_eq!(enters, polls, "{seen:?}");
    assert_eq!(seen.iter().filter(|l| l.starts_with("new ")).count(), 1);
}
