//! The incident example: with the flight recorder on instead of a full trace, doubled traffic
//! filling the queue writes one dump that holds the two seconds before and shows the queue
//! filling.
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

mod common;

#[path = "../examples/incident.rs"]
#[allow(dead_code)]
mod incident;

use std::path::Path;

#[test]
fn doubled_traffic_filling_the_queue_writes_one_dump_of_the_window_before_it() {
    let _lock = common::exclusive();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("incident");
    // Timing: a run where another process took a core can fill the queue already at normal
    // traffic (then that is the one incident), or be slowed so doubled traffic fills it late.
    // Such a run is repeated, up to three; a real failure fails all three.
    let mut why = Vec::new();
    for _ in 0..3 {
        let day = incident::run_incident(12_000, &dir).expect("the day runs");
        let flight = day.report.flight.as_ref().expect("armed");
        let Some(dump) = day.queue_full_dump() else {
            why.push(format!("no queue-full dump: {flight:?}"));
            continue;
        };
        assert_eq!(flight.dumps.len(), 1, "one incident, one dump (cooldown): {flight:?}");
        let events = common::load_trace(&dump.path);
        common::slices(&events);
        let most = events
            .iter()
            .filter(|e| e["ph"] == "C" && e["name"] == "queue")
            .filter_map(|e| e["args"]["depth"].as_f64())
            .fold(0.0, f64::max);
        assert_eq!(most, 1024.0, "the dump shows the queue filling to its capacity");
        if dump.complete_before_trigger < std::time::Duration::from_secs(2) {
            why.push(format!("the window was short: {dump:?}"));
            continue;
        }
        let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("traces");
        std::fs::create_dir_all(&kept).unwrap();
        std::fs::copy(&dump.path, kept.join("incident.json")).unwrap();
        std::fs::write(kept.join("incident.expect"), "--strict").unwrap();
        return;
    }
    panic!("three runs, no clean incident:\n{}", why.join("\n"));
}
