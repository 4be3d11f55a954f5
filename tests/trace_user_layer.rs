//! A program with its own subscriber adds `pipeline::trace::layer()` to it; `chrome_trace` then
//! writes through that layer, and the program's other layers still see every span.
#![cfg(not(feature = "off"))]

use std::sync::{Arc, Mutex};

use pipeline::{stage, Pipeline, Profiler};
use tracing_subscriber::layer::SubscriberExt;

struct Echo;

#[stage]
impl Echo {
    fn process(&self, event: u32) -> u32 {
        event
    }
}

#[derive(Clone, Default)]
struct Names(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Names {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.lock().unwrap().push(attrs.metadata().name().to_owned());
    }
}

#[test]
fn the_layer_composes_with_the_programs_own_layers() {
    let names = Names::default();
    let subscriber = tracing_subscriber::registry()
        .with(pipeline::trace::layer().expect("first layer in this process"))
        .with(names.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();
    assert!(matches!(
        pipeline::trace::layer::<tracing_subscriber::Registry>(),
        Err(pipeline::Error::TraceLayerExists)
    ));

    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("user-layer.json");
    let pipeline = Pipeline::new().stage(Echo);
    let profiler = Profiler::new().chrome_trace(&path).start().unwrap();
    for event in 0..3 {
        pipeline.run(event).unwrap();
    }
    profiler.finish().unwrap();

    let trace: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let echo_slices = trace.iter().filter(|e| e["ph"] == "E" && e["name"] == "Echo").count();
    assert_eq!(echo_slices, 3, "the trace was written through the user's subscriber");
    assert_eq!(names.0.lock().unwrap().iter().filter(|n| *n == "Echo").count(), 3);

    // After the session, idle calls make no span (the runtime switch)...
    let echo_spans = || names.0.lock().unwrap().iter().filter(|n| *n == "Echo").count();
    pipeline.run(9).unwrap();
    assert_eq!(echo_spans(), 3);
    // ...unless the program asks for them: then its own layer sees them, and the trace layer
    // stays quiet (the file is closed and unchanged).
    let written = std::fs::read_to_string(&path).unwrap();
    pipeline::emit_spans(true);
    pipeline.run(10).unwrap();
    pipeline::emit_spans(false);
    assert_eq!(echo_spans(), 4);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), written);
}
