//! The async example: the session lookup is the slowest stage by the clock but only waits; the
//! report and the diagnoses say so and name the stage that holds the CPU.
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

mod common;

#[path = "../examples/async_service.rs"]
mod async_service;

/// What doubling the traffic must show, or why not (a run disturbed by another process is
/// retried).
fn doubled_traffic_names_the_cpu_stage(day: &async_service::Day) -> Result<(), String> {
    let (normal, doubled) = (day.normal.run(), day.doubled.run());
    let both = format!("capacity {:.0}/s\n{normal}\n{doubled}", day.capacity_per_sec);
    let checks = [
        (doubled.queue.max_depth > normal.queue.max_depth, "the queue grows deeper"),
        (doubled.latency.p50_ns > normal.latency.p50_ns, "latency rises"),
        (doubled.diagnosis.contains("speed up Recommend"), "the diagnosis names the CPU stage"),
    ];
    match checks.iter().find(|(holds, _)| !holds) {
        Some((_, what)) => Err(format!("doubled traffic: expected {what}\n{both}")),
        None => Ok(()),
    }
}

#[test]
fn the_waiting_stage_is_told_apart_from_the_busy_one() {
    let _lock = common::exclusive();
    let mut disturbed = Vec::new();
    for _ in 0..3 {
        let day = async_service::runtime()
            .block_on(async_service::run_scenario(600, None))
            .expect("scenario runs");
        for phase in [&day.normal, &day.doubled] {
            let (report, run) = (&phase.report, phase.run());
            assert_eq!(run.submitted, 600);
            assert_eq!(run.completed, 600, "{run}");
            let slowest = report.slowest_stage().expect("stages ran");
            assert_eq!(slowest.name, "Authenticate", "slowest by the clock: {report}");
            let (auth, recommend) =
                (&slowest.timing, &report.stage("Recommend").expect("ran").timing);
            assert!(auth.busy_ns() * 10 < auth.total_ns, "it waits: {auth:?}");
            assert!(recommend.busy_ns() > auth.busy_ns() * 5, "Recommend holds the CPU");
            let diagnosis = report.diagnosis();
            assert!(diagnosis.contains("of Authenticate's time is waiting"), "{diagnosis}");
            assert!(diagnosis.contains("the busiest stage is Recommend"), "{diagnosis}");
            assert!(!run.diagnosis.contains("speed up Authenticate"), "{}", run.diagnosis);
        }
        match doubled_traffic_names_the_cpu_stage(&day) {
            Ok(()) => return,
            Err(why) => disturbed.push(why),
        }
    }
    panic!("{}", disturbed.join("\n\n"));
}
