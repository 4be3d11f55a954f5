//! A program that already set its own global subscriber gets a clear error from
//! `chrome_trace(..).start()` (not a panic, not a silently missing trace), and keeps profiling
//! without a trace.
#![cfg(not(feature = "off"))]

use pipeline::{Error, Profiler};

#[test]
fn chrome_trace_with_a_foreign_global_subscriber_says_how_to_compose_the_layer() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry()).unwrap();
    let path = std::env::temp_dir().join("pipeline-subscriber-taken.json");
    let error = Profiler::new().chrome_trace(&path).start().unwrap_err();
    assert!(matches!(error, Error::SubscriberTaken), "{error:?}");
    assert!(error.to_string().contains("pipeline::trace::layer()"), "{error}");
    drop(Profiler::new().start().expect("profiling without a trace still works"));
}
