//! A program with its own subscriber adds `pipeline::trace::layer()` to it: the native trace then
//! holds the program's own spans nested under the stage that entered them, the tracing-chrome
//! backend writes through that layer, and the program's other layers still see every span.
#![cfg(not(feature = "off"))]

mod common;

use std::sync::{Arc, Mutex};

use common::{count, load_trace, slices};
use pipeline::trace::TraceBackend;
use pipeline::{stage, Pipeline, Profiler};
use tracing_subscriber::layer::SubscriberExt;

struct Echo;

#[stage]
impl Echo {
    fn process(&self, event: u32) -> u32 {
        let _lookup = tracing::info_span!("user_lookup", event).entered();
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

fn run_three(path: &std::path::Path, backend: TraceBackend) {
    let pipeline = Pipeline::new().stage(Echo);
    let profiler = Profiler::new().chrome_trace(path).trace_backend(backend).start().unwrap();
    for event in 0..3 {
        pipeline.run(event).unwrap();
    }
    profiler.finish().unwrap();
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
    let seen = |name: &str| names.0.lock().unwrap().iter().filter(|n| *n == name).count();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));

    // Native: the program's own span is a slice nested under the stage that entered it.
    let native = dir.join("user-layer-native.json");
    run_three(&native, TraceBackend::Native);
    let traced = slices(&load_trace(&native));
    assert_eq!(count(&traced, "Echo"), 3);
    let user: Vec<_> = traced.iter().filter(|s| s.name == "user_lookup").collect();
    assert_eq!(user.len(), 3, "the program's spans are in the trace");
    assert!(user.iter().all(|s| s.parents == ["Echo"]), "{:?}", user[0].parents);
    assert_eq!(seen("Echo"), 0, "the native writer needs no stage spans");

    // With spans asked for, the program's layer sees the stage spans, and the trace does not
    // hold them twice.
    pipeline::trace::emit_spans(true);
    let both = dir.join("user-layer-spans.json");
    run_three(&both, TraceBackend::Native);
    pipeline::trace::emit_spans(false);
    assert_eq!(seen("Echo"), 3);
    assert_eq!(count(&slices(&load_trace(&both)), "Echo"), 3, "stage slices once each");

    // tracing-chrome writes through the same layer; the program's layer sees the spans.
    let chrome = dir.join("user-layer-chrome.json");
    run_three(&chrome, TraceBackend::TracingChrome);
    assert_eq!(count(&slices(&load_trace(&chrome)), "Echo"), 3);
    assert_eq!(seen("Echo"), 6);

    // After the session, idle calls make no span (the runtime switch), and the file is closed.
    let written = std::fs::read_to_string(&chrome).unwrap();
    Pipeline::new().stage(Echo).run(9).unwrap();
    assert_eq!(seen("Echo"), 6);
    assert_eq!(std::fs::read_to_string(&chrome).unwrap(), written);
}
