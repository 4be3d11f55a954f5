//! The recorder counts and times exactly what ran, attributes nested calls to their stage, and
//! merges threads without losing a call.
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

mod common;

use std::time::{Duration, Instant};

use common::{block_on, exclusive, spin_for, YieldTimes};
use pipeline::{profiled, stage, Pipeline, Profiler, Report};

const SPIN: Duration = Duration::from_millis(2);
const HELPER_CALLS_PER_EVENT: u64 = 3;

struct SpinStage;

#[stage]
impl SpinStage {
    fn process(&self, event: u64) -> u64 {
        spin_for(SPIN);
        for _ in 0..HELPER_CALLS_PER_EVENT {
            helper();
        }
        event + 1
    }
}

#[profiled]
fn helper() {
    spin_for(Duration::from_micros(100));
}

struct CheapStage;

#[stage(name = "cheap")]
impl CheapStage {
    fn process(&self, event: u64) -> u64 {
        event * 2
    }
}

fn profile(run: impl FnOnce()) -> (Report, Duration) {
    let profiler = Profiler::new().start().expect("no other profiler runs under the lock");
    let started = Instant::now();
    run();
    let wall = started.elapsed();
    (profiler.finish().expect("finish"), wall)
}

#[test]
fn counts_are_exact_and_times_are_bounded_by_the_work_and_the_wall_clock() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(SpinStage).stage(CheapStage);
    const EVENTS: u64 = 10;
    let (report, wall) = profile(|| {
        for e in 0..EVENTS {
            assert_eq!(pipeline.run(e).unwrap(), Some((e + 1) * 2));
        }
    });

    let spin = report.stage("SpinStage").expect("SpinStage recorded");
    assert_eq!(spin.timing.calls, EVENTS);
    let helper = spin.function("recorder::helper").expect("helper recorded under SpinStage");
    assert_eq!(helper.timing.calls, EVENTS * HELPER_CALLS_PER_EVENT);
    assert!(report.outside_stages.is_empty());

    // Lower bounds: each call spun at least this long. Upper bound: nothing exceeds the wall clock.
    let min_stage = SPIN + Duration::from_micros(100) * HELPER_CALLS_PER_EVENT as u32;
    assert!(spin.timing.total() >= min_stage * EVENTS as u32, "{:?}", spin.timing);
    assert!(spin.timing.total() <= wall, "{:?} > wall {wall:?}", spin.timing.total());
    assert!(Duration::from_nanos(spin.timing.min_ns) >= min_stage);
    assert!(spin.timing.min_ns <= spin.timing.p50_ns && spin.timing.p50_ns <= spin.timing.max_ns);
    assert!(helper.timing.total() >= Duration::from_micros(100) * (EVENTS * 3) as u32);

    // Self time + time in the nested function = total, exactly.
    assert_eq!(spin.timing.self_ns + helper.timing.total_ns, spin.timing.total_ns);
    assert!(spin.timing.self_time() >= SPIN * EVENTS as u32);

    let cheap = report.stage("cheap").expect("renamed stage recorded under its name");
    assert_eq!(cheap.timing.calls, EVENTS);
    assert_eq!(report.slowest_stage().unwrap().name, "SpinStage");
    assert_eq!(spin.hottest_function().unwrap().name, "recorder::helper");
    let shares = spin.share_of_stage_time + cheap.share_of_stage_time;
    assert!((shares - 1.0).abs() < 1e-9, "shares add up to 1, got {shares}");
}

#[profiled]
fn outer() {
    inner();
    inner();
}

#[profiled(name = "custom-inner")]
fn inner() {
    spin_for(Duration::from_micros(50));
}

#[test]
fn nested_functions_split_self_and_child_time_and_calls_outside_stages_are_listed_apart() {
    let _lock = exclusive();
    let (report, _) = profile(|| {
        for _ in 0..5 {
            outer();
        }
    });
    assert!(report.stages.is_empty());
    let outer = report.outside_stages.iter().find(|f| f.name == "recorder::outer").unwrap();
    let inner = report.outside_stages.iter().find(|f| f.name == "custom-inner").unwrap();
    assert_eq!(outer.timing.calls, 5);
    assert_eq!(inner.timing.calls, 10);
    assert_eq!(outer.timing.self_ns + inner.timing.total_ns, outer.timing.total_ns);
    assert_eq!(inner.timing.self_ns, inner.timing.total_ns, "inner has no instrumented children");
}

#[test]
fn two_threads_running_one_pipeline_merge_to_exact_counts() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(CheapStage).stage(SpinStage);
    const PER_THREAD: u64 = 25;
    let (report, _) = profile(|| {
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for e in 0..PER_THREAD {
                        pipeline.run(e).unwrap();
                    }
                });
            }
        });
    });
    let spin = report.stage("SpinStage").unwrap();
    assert_eq!(report.stage("cheap").unwrap().timing.calls, 2 * PER_THREAD);
    assert_eq!(spin.timing.calls, 2 * PER_THREAD);
    assert_eq!(spin.function("recorder::helper").unwrap().timing.calls, 2 * PER_THREAD * 3);
}

#[test]
fn nothing_is_recorded_while_no_profiler_runs_and_sessions_start_afresh() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(CheapStage);
    for e in 0..100 {
        pipeline.run(e).unwrap();
    }
    let (first, _) = profile(|| {
        pipeline.run(1).unwrap();
    });
    assert_eq!(first.stage("cheap").unwrap().timing.calls, 1);
    for e in 0..100 {
        pipeline.run(e).unwrap();
    }
    let (second, _) = profile(|| {
        pipeline.run(1).unwrap();
        pipeline.run(2).unwrap();
    });
    assert_eq!(second.stage("cheap").unwrap().timing.calls, 2);
}

#[test]
fn a_second_profiler_is_refused_while_one_runs() {
    let _lock = exclusive();
    let running = Profiler::new().start().unwrap();
    let refused = Profiler::new().start().unwrap_err();
    assert!(matches!(refused, pipeline::Error::AlreadyProfiling));
    assert!(refused.to_string().contains("already running"), "{refused}");
    drop(running);
    let again = Profiler::new().start().expect("dropping the first session frees the profiler");
    drop(again);
}

#[profiled]
async fn fetch_score(yields: usize) -> u64 {
    YieldTimes(yields).await;
    helper();
    yields as u64
}

struct AsyncCallingStage;

#[stage]
impl AsyncCallingStage {
    fn process(&self, event: u64) -> u64 {
        let (score, _polls) = block_on(fetch_score(4));
        event + score
    }
}

#[test]
fn async_functions_are_timed_from_first_poll_to_completion_inside_their_stage() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(AsyncCallingStage);
    let (report, _) = profile(|| {
        for e in 0..3 {
            assert_eq!(pipeline.run(e).unwrap(), Some(e + 4));
        }
    });
    let stage = report.stage("AsyncCallingStage").unwrap();
    let fetch = stage.function("recorder::fetch_score").expect("async fn nested in its stage");
    assert_eq!(fetch.timing.calls, 3, "one call per future, however many polls");
    let helper = stage.function("recorder::helper").unwrap();
    assert_eq!(helper.timing.calls, 3);
    // helper runs inside fetch_score's last poll: it is fetch_score's child. Between polls
    // fetch_score waits: neither its self time nor anybody's.
    assert_eq!(
        fetch.timing.self_ns + helper.timing.total_ns + fetch.timing.waiting_ns,
        fetch.timing.total_ns
    );
    assert!(fetch.timing.waiting_ns > 0, "it awaited 4 times: {:?}", fetch.timing);
    assert!(fetch.timing.total_ns <= stage.timing.total_ns);
}

#[test]
fn report_json_carries_the_same_numbers() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(CheapStage);
    let (report, _) = profile(|| {
        for e in 0..7 {
            pipeline.run(e).unwrap();
        }
    });
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["stages"][0]["name"], "cheap");
    assert_eq!(json["stages"][0]["timing"]["calls"], 7);
    assert_eq!(json["stages"][0]["timing"]["total_ns"], report.stages[0].timing.total_ns);
    let table = report.to_string();
    assert!(table.contains("cheap") && table.contains("Slowest stage: cheap"), "{table}");
}
