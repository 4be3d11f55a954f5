//! The main example finds its heavy stage and the hot function inside it.
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

mod common;

#[path = "../examples/launch_day.rs"]
mod launch_day;

#[test]
fn launch_day_finds_the_fraud_model_and_shows_doubled_traffic_saturating_the_workers() {
    let _lock = common::exclusive();
    let day = launch_day::run_scenario(400, None).expect("scenario runs");

    for phase in [&day.normal, &day.doubled] {
        let report = &phase.report;
        let run = phase.run();
        assert_eq!(run.submitted, 400);
        assert_eq!(run.submitted, run.completed + run.rejected + run.failed);
        assert!(run.rejected > 0, "the fraud limit turns some orders away");
        let slowest = report.slowest_stage().expect("stages ran");
        assert_eq!(slowest.name, "FraudStage", "{report}");
        let hot = slowest.hottest_function().expect("a profiled function ran inside");
        assert!(hot.name.ends_with("::fraud_score"), "{}", hot.name);
        assert_eq!(hot.timing.calls, 400);
        assert!(report.verdict().contains("fraud_score"), "{}", report.verdict());
        assert!(slowest.memory.is_some(), "the example installs the counting allocator");
    }

    // Doubling the traffic with the same workers: the queue backs up and waiting takes over.
    let (normal, doubled) = (day.normal.run(), day.doubled.run());
    assert!(doubled.queue.max_depth > normal.queue.max_depth, "{normal}\n{doubled}");
    assert!(
        doubled.latency_split.queue_wait > normal.latency_split.queue_wait,
        "{normal}\n{doubled}"
    );
    assert!(doubled.latency.p50_ns > normal.latency.p50_ns, "{normal}\n{doubled}");
    assert!(doubled.verdict.starts_with("Queue wait dominates"), "{}", doubled.verdict);
}
