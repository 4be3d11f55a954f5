//! A program that already set its own global subscriber (without `pipeline::trace::layer()`):
//! the native trace needs no subscriber and works; the tracing-chrome backend, which is made of
//! `tracing` spans, gets a clear error (not a panic, not a silently missing trace), and profiling
//! goes on without a trace.
#![cfg(not(feature = "off"))]

use pipeline::trace::TraceBackend;
use pipeline::{stage, Error, Pipeline, Profiler};

struct Echo;

#[stage]
impl Echo {
    fn process(&self, event: u32) -> u32 {
        event
    }
}

#[test]
fn a_foreign_global_subscriber_leaves_the_native_trace_working_and_names_the_fix_for_tracing_chrome(
) {
    tracing::subscriber::set_global_default(tracing_subscriber::registry()).unwrap();
    let path =
        std::env::temp_dir().join(format!("pipeline-subscriber-taken-{}.json", std::process::id()));

    let profiler =
        Profiler::new().chrome_trace(&path).start().expect("the native writer needs no subscriber");
    let pipeline = Pipeline::new().stage(Echo);
    for event in 0..3 {
        pipeline.run(event).unwrap();
    }
    profiler.finish().unwrap();
    let trace: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(trace.iter().filter(|e| e["name"] == "Echo").count(), 3);

    let error = Profiler::new()
        .chrome_trace(&path)
        .trace_backend(TraceBackend::TracingChrome)
        .start()
        .unwrap_err();
    assert!(matches!(error, Error::SubscriberTaken), "{error:?}");
    assert!(error.to_string().contains("pipeline::trace::layer()"), "{error}");
    drop(Profiler::new().start().expect("profiling without a trace still works"));
    let _ = std::fs::remove_file(&path);
}
