//! With the `off` feature every annotation compiles to the bare code: stages are still `Stage`s
//! and functions still work, but nothing is recorded and no span is made.
#![cfg(feature = "off")]

use std::future::Future;
use std::sync::{Arc, Mutex};

use pipeline::{profiled, stage, AsyncPipeline, AsyncStage, Pipeline, Profiler, Stage, StageError};
use tracing_subscriber::layer::SubscriberExt;

struct Fraud {
    limit: u64,
}

#[stage(name = "fraud")]
impl Fraud {
    fn process(&self, amount: u64) -> Result<u64, StageError> {
        if score(amount) > self.limit {
            return Err(StageError::rejected("over the limit"));
        }
        Ok(amount)
    }
}

#[profiled]
fn score(amount: u64) -> u64 {
    amount / 10
}

#[profiled]
async fn later(x: u64) -> u64 {
    x + 1
}

struct Lookup;

#[stage]
impl Lookup {
    async fn process(&self, amount: u64) -> Option<u64> {
        Some(later(amount).await)
    }
}

#[derive(Clone, Default)]
struct CountSpans(Arc<Mutex<usize>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountSpans {
    fn on_new_span(
        &self,
        _: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        *self.0.lock().unwrap() += 1;
    }
}

#[test]
fn annotated_code_works_and_nothing_is_recorded_or_traced() {
    let pipeline = Pipeline::new().stage(Fraud { limit: 50 });
    assert_eq!(Stage::<u64>::name(&Fraud { limit: 0 }), "fraud");

    let spans = CountSpans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let profiler = Profiler::new().start().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(pipeline.run(100).unwrap(), Some(100));
        assert_eq!(pipeline.run(900).unwrap_err().stage(), "fraud");
        assert_eq!(score(70), 7);
        let mut future = std::pin::pin!(later(1));
        let waker = std::task::Waker::noop();
        let poll = future.as_mut().poll(&mut std::task::Context::from_waker(waker));
        assert_eq!(poll, std::task::Poll::Ready(2));
        let lookup = AsyncPipeline::new().stage_async(Lookup);
        let mut run = std::pin::pin!(lookup.run(41));
        let poll = run.as_mut().poll(&mut std::task::Context::from_waker(waker));
        assert!(matches!(poll, std::task::Poll::Ready(Ok(Some(42)))));
    });
    assert_eq!(AsyncStage::<u64>::name(&Lookup), "Lookup");
    let report = profiler.finish().unwrap();

    assert!(report.stages.is_empty(), "nothing recorded: {report}");
    assert!(report.outside_stages.is_empty(), "nothing recorded: {report}");
    assert_eq!(*spans.0.lock().unwrap(), 0, "no span is made");
}
