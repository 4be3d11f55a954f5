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

    let profile = summary_json(&trace);
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

/// Runs `pipeline-prof summary --json` on `text` written to `name`; the profile.
fn summarise(name: &str, text: &str) -> Value {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prof");
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join(name);
    std::fs::write(&trace, text).unwrap();
    summary_json(&trace)
}

/// `pipeline-prof summary --json TRACE`, which must succeed; its JSON.
fn summary_json(trace: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline-prof"))
        .args(["summary", "--json"])
        .arg(trace)
        .output()
        .expect("run pipeline-prof");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn calls(profile: &Value, stage: Option<&str>, name: &str) -> u64 {
    let rows = profile["rows"].as_array().expect("rows");
    let row = rows.iter().find(|r| r["name"] == name && r["stage"].as_str() == stage);
    let row = row.unwrap_or_else(|| panic!("no row {stage:?} {name}: {rows:#?}"));
    row["timing"]["calls"].as_u64().unwrap()
}

#[test]
fn what_perfettos_importer_accepts_is_read_async_slices_string_times_trailing_commas() {
    // As other tools write them: the object form, string timestamps, complete slices nested by
    // time, async slices that begin on one thread and end on another, and trailing commas.
    let rows = summarise(
        "perfetto-style.json",
        r#"{"displayTimeUnit":"ns","traceEvents":[
            {"ph":"X","pid":1,"tid":1,"ts":"0","dur":100,"name":"request"},
            {"ph":"X","pid":1,"tid":1,"ts":"10.5","dur":"20","name":"parse"},
            {"ph":"b","pid":1,"tid":1,"ts":15,"name":"fetch","cat":"net","id":"0x1"},
            {"ph":"b","pid":1,"tid":1,"ts":16,"name":"fetch","cat":"net","id":"0x2"},
            {"ph":"e","pid":1,"tid":2,"ts":60,"name":"fetch","cat":"net","id":"0x1"},
            {"ph":"e","pid":1,"tid":2,"ts":70,"name":"fetch","cat":"net","id":"0x2",},
            {"ph":"X","pid":1,"tid":1,"ts":200,"dur":50,"name":"request",},
            {"ph":"C","pid":1,"ts":5,"name":"queue","args":{"depth":"7"}},
            {"ph":"C","pid":1,"ts":9,"name":"queue","args":{"depth":3,"note":"x"}},
            {"ph":"i","pid":1,"tid":1,"ts":12,"s":"t","name":"rejected"},
            {"ph":"X","pid":1,"tid":3,"ts":1,"dur":1,"name":"submit","cat":"pipeline","bind_id":9,"flow_out":true},
        ],}"#,
    );
    let extras = &rows["source"]["extras"];
    assert_eq!(extras["counters"][0]["name"], "queue depth");
    assert_eq!(extras["counters"][0]["samples"], 2);
    assert_eq!(extras["counters"][0]["max"], 7.0);
    assert_eq!(extras["instants"][0], serde_json::json!(["rejected", 1]));
    assert_eq!(extras["flows"], 1);
    assert_eq!(calls(&rows, None, "request"), 2);
    assert_eq!(calls(&rows, Some("request"), "parse"), 1);
    assert_eq!(calls(&rows, Some("request"), "fetch"), 2, "two concurrent async slices");
}

#[test]
fn a_trace_of_async_slices_only_is_summarised() {
    // Like Perfetto's own async test traces: nothing but `b`/`e` pairs.
    let rows = summarise(
        "async-only.json",
        r#"[{"ph":"b","pid":7,"tid":7,"ts":1,"name":"download","cat":"io","id":1},
            {"ph":"b","pid":7,"tid":8,"ts":2,"name":"download","cat":"io","id":2},
            {"ph":"e","pid":7,"tid":8,"ts":9,"name":"download","cat":"io","id":1},
            {"ph":"e","pid":7,"tid":7,"ts":12,"name":"download","cat":"io","id":2}]"#,
    );
    assert_eq!(calls(&rows, None, "download"), 2);
}
