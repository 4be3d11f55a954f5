//! `pipeline-prof summary` on a trace written by plain `tracing` + `tracing-chrome`, without
//! this toolkit: top-level slices become the stages, nested ones their functions.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn a_plain_tracing_chrome_trace_is_summarised() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prof");
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("foreign.json");
    let (layer, guard) = tracing_chrome::ChromeLayerBuilder::new().file(&trace).build();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..30u64 {
            tracing::info_span!("handle_request").in_scope(|| {
                tracing::info_span!("query_db").in_scope(|| std::hint::black_box(i * 3));
                tracing::info_span!("render").in_scope(|| std::hint::black_box(i + 1));
            });
        }
    });
    drop(guard); // flushes and closes the JSON array

    let out = Command::new(env!("CARGO_BIN_EXE_pipeline-prof"))
        .args(["summary", "--json"])
        .arg(&trace)
        .output()
        .expect("run pipeline-prof");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let profile: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let row = |stage: Option<&str>, name: &str| {
        profile["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name && r["stage"].as_str() == stage)
            .cloned()
            .unwrap_or_else(|| panic!("no row {stage:?} {name}: {profile:#}"))
    };
    let stage = row(None, "handle_request");
    assert_eq!(stage["kind"], "stage");
    assert_eq!(stage["timing"]["calls"], 30);
    for function in ["query_db", "render"] {
        let row = row(Some("handle_request"), function);
        assert_eq!(row["kind"], "function");
        assert_eq!(row["timing"]["calls"], 30);
    }
    let total = stage["timing"]["total_ns"].as_u64().unwrap();
    let own = stage["timing"]["self_ns"].as_u64().unwrap();
    assert!(own < total, "children's time is not the stage's own");
}
