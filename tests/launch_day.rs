//! The main example finds its heavy stage and the hot function inside it.
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

mod common;

#[path = "../examples/launch_day.rs"]
mod launch_day;

/// What doubling the traffic must show: the queue backs up and waiting takes over. Returns
/// why not, so a run disturbed by another process can be told apart from a real failure.
fn doubled_traffic_backs_up(day: &launch_day::LaunchDay) -> Result<(), String> {
    let (normal, doubled) = (day.normal.run(), day.doubled.run());
    let both = format!("capacity {:.0}/s\n{normal}\n{doubled}", day.capacity_per_sec);
    let checks = [
        (doubled.queue.max_depth > normal.queue.max_depth, "the queue grows deeper"),
        (doubled.queue_wait.p50_ns > normal.queue_wait.p50_ns, "events wait longer"),
        (doubled.latency.p50_ns > normal.latency.p50_ns, "latency rises"),
        (
            ["Queue wait dominates", "CPU-bound"].iter().any(|v| doubled.diagnosis.starts_with(v)),
            "the diagnosis blames the capacity",
        ),
    ];
    match checks.iter().find(|(holds, _)| !holds) {
        Some((_, what)) => Err(format!("doubled traffic: expected {what}\n{both}")),
        None => Ok(()),
    }
}

#[test]
fn launch_day_finds_the_fraud_model_and_shows_doubled_traffic_saturating_the_workers() {
    let _lock = common::exclusive();
    // The load comparison is timing: another process taking a core mid-run (CI machines are
    // shared) can make normal traffic queue like doubled traffic. Such a run is repeated, up
    // to three scenarios; a real regression fails all three.
    let mut disturbed = Vec::new();
    for _ in 0..3 {
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
            assert!(report.diagnosis().contains("fraud_score"), "{}", report.diagnosis());
            assert!(slowest.memory.is_some(), "the example installs the counting allocator");
        }
        match doubled_traffic_backs_up(&day) {
            Ok(()) => return,
            Err(why) => disturbed.push(why),
        }
    }
    panic!("{}", disturbed.join("\n\n"));
}

#[test]
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
fn launch_day_cpu_samples_find_the_unannotated_model_inside_the_fraud_check() {
    let _lock = common::exclusive();
    // Enough orders for about a second of CPU in an unoptimised build (~250 samples).
    let orders = if cfg!(debug_assertions) { 6_000 } else { 40_000 };
    let session = pipeline::Profiler::new().sample_cpu(999).start().unwrap();
    let run = launch_day::pipeline()
        .run_concurrent(launch_day::orders(orders), pipeline::WorkerConfig::new(2).queue(256))
        .unwrap();
    let report = session.finish().unwrap();
    assert_eq!(run.submitted, orders);
    let cpu = report.cpu_samples.as_ref().expect("sampled");
    let fraud = cpu.stage("FraudStage").unwrap_or_else(|| panic!("{report}"));
    assert!(fraud.samples >= 50, "{report}");
    // The statistics stop at the annotated `fraud_score`; the samples see inside it.
    let hot = fraud.hottest_function().unwrap();
    assert!(hot.name.ends_with("run_model"), "{report}");
    assert!(hot.self_share > 0.6, "{report}");
    assert!(fraud.function_ending_with("order_features").is_some(), "{report}");
    assert!(report.diagnosis().contains("run_model"), "{}", report.diagnosis());
}
