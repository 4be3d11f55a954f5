//! The main example finds its heavy stage and the hot function inside it.

mod common;

#[path = "../examples/launch_day.rs"]
mod launch_day;

#[test]
fn launch_day_names_the_fraud_stage_and_its_scoring_model() {
    let _lock = common::exclusive();
    let outcome = launch_day::run_scenario(300).expect("scenario runs");
    assert_eq!(outcome.completed + outcome.rejected, 300);
    assert!(outcome.rejected > 0, "the fraud limit turns some orders away");

    let report = &outcome.report;
    let slowest = report.slowest_stage().expect("stages ran");
    assert_eq!(slowest.name, "FraudStage");
    assert!(slowest.share_of_stage_time > 0.5, "{report}");
    let hot = slowest.hottest_function().expect("a profiled function ran inside");
    assert!(hot.name.ends_with("::fraud_score"), "{}", hot.name);
    assert_eq!(hot.timing.calls, 300);
    let verdict = report.verdict();
    assert!(verdict.starts_with("Slowest stage: FraudStage"), "{verdict}");
    assert!(verdict.contains("fraud_score"), "{verdict}");
}
