//! The regression gate, measured rather than assumed: it catches a 30 % slowdown almost always,
//! raises almost no false alarms (also with another process holding a core), and always catches
//! one extra allocation per event.

mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::process::{Child, Command};

use common::exclusive;
use pipeline::bench::{assert_no_regression, Baseline, Bench, Metric, Verdict};
use pipeline::{stage, CountingAllocator, Pipeline};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

/// Integer work proportional to `ROUNDS`: a 30 % slower stage is `Work<1300>` against `Work<1000>`.
struct Work<const ROUNDS: u64>;

#[stage]
impl<const ROUNDS: u64> Work<ROUNDS> {
    fn process(&self, event: u64) -> u64 {
        let mut h = event ^ 0x9e37_79b9_7f4a_7c15;
        for round in 0..ROUNDS * 10 {
            h = black_box(h.rotate_left(5) ^ round).wrapping_mul(0x100_0000_01b3);
        }
        h
    }
}

/// The same work plus one `String` per event.
struct WorkAndLabel;

#[stage]
impl WorkAndLabel {
    fn process(&self, event: u64) -> u64 {
        let label = format!("order-{event}");
        black_box(&label);
        Work::<1000>.process(event)
    }
}

const TRIALS: u64 = 20;

fn quick(seed: u64) -> Bench {
    Bench::new("gate").samples(15).batch(10).warmup(1).seed(seed)
}

/// Counts the trials whose time verdict is `Regressed`.
fn regressions<const B: u64, const A: u64>() -> (u64, u64) {
    let before = Pipeline::new().stage(Work::<B>);
    let after = Pipeline::new().stage(Work::<A>);
    let (mut regressed, mut inconclusive) = (0, 0);
    for trial in 0..TRIALS {
        let comparison = quick(trial).compare(&before, &after, |i| i).unwrap();
        match comparison.verdict(Metric::TimePerEvent) {
            Some(Verdict::Regressed) => regressed += 1,
            Some(Verdict::Inconclusive(_)) => inconclusive += 1,
            _ => {}
        }
    }
    (regressed, inconclusive)
}

/// Another process spinning on one core while it lives.
struct CoreHog(Child);

impl CoreHog {
    fn start() -> Self {
        CoreHog(Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("sh"))
    }
}

impl Drop for CoreHog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_stage_made_30_percent_slower_is_caught_in_at_least_19_of_20_trials() {
    let _lock = exclusive();
    let (regressed, inconclusive) = regressions::<1000, 1300>();
    // Caught: the CI gate fails, as "regressed" or as "could not judge" (which fails in CI and
    // says why). Most must be outright regressions, or the gate would be no use on this machine.
    let caught = regressed + inconclusive;
    let counts = format!("{regressed} regressed, {inconclusive} could not judge, of {TRIALS}");
    assert!(caught >= 19 && regressed >= 15, "{counts}");
}

#[test]
fn no_change_raises_at_most_1_false_alarm_in_20_trials_quiet_or_with_a_core_taken() {
    let _lock = exclusive();
    let (quiet, _) = regressions::<1000, 1000>();
    assert!(quiet <= 1, "{quiet} false alarms of {TRIALS} on a quiet machine");
    let hog = CoreHog::start();
    let (loaded, _) = regressions::<1000, 1000>();
    drop(hog);
    assert!(loaded <= 1, "{loaded} false alarms of {TRIALS} with a core taken");
}

#[test]
fn one_extra_allocation_per_event_is_always_caught() {
    let _lock = exclusive();
    let before = Pipeline::new().stage(Work::<1000>);
    let after = Pipeline::new().stage(WorkAndLabel);
    for trial in 0..5 {
        let comparison = quick(trial).compare(&before, &after, |i| i).unwrap();
        assert_eq!(
            comparison.verdict(Metric::AllocationsPerEvent),
            Some(&Verdict::Regressed),
            "{comparison}"
        );
    }
    let same = quick(0).compare(&before, &before, |i| i).unwrap();
    assert_eq!(same.verdict(Metric::AllocationsPerEvent), Some(&Verdict::Unchanged), "{same}");
}

/// A fresh path for a baseline file: nothing there yet.
fn scratch(name: &str) -> PathBuf {
    let path = common::scratch_dir("bench").join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn a_baseline_round_trip_catches_a_slowdown_and_passes_the_same_code() {
    let _lock = exclusive();
    let path = scratch("work.json");
    let bench = Bench::new("work").samples(20).batch(10).warmup(1);
    let fast = Pipeline::new().stage(Work::<1000>);
    bench.run(&fast, |i| i).unwrap().save_baseline(&path).unwrap();
    let baseline = Baseline::load(&path).unwrap();
    assert_eq!(baseline.result.name, "work");
    assert!(baseline.result.recorded_at.ends_with('Z'));

    let same = bench.check(&fast, |i| i, &baseline).unwrap();
    assert!(!same.regressed(), "{same}");
    // Outside CI the same code passes whatever the machine did; in CI it passes unless the
    // check could not judge, which then fails, saying so.
    assert_eq!(same.gate(false), Ok(()));
    if same.inconclusive() {
        let failure = same.gate(true).unwrap_err();
        assert!(failure.contains("could not judge") && failure.contains("paired"), "{failure}");
    } else {
        assert_eq!(same.gate(true), Ok(()));
        assert_no_regression(&same);
    }

    // A real slowdown never passes in CI: regressed, or "could not judge". Three times the
    // work: this host's speed drifts by up to 45 % between runs seconds apart, even quiet (a
    // baseline of `Work<1000>` read 92, 111, 118 and 133 µs), and a slowdown smaller than the
    // drift cannot be told from it against a stored baseline (`Bench::compare` and
    // `pipeline-prof paired` can: the 30 % and 10 % tests above).
    let slow = Pipeline::new().stage(Work::<3000>);
    let slower = bench.check(&slow, |i| i, &baseline).unwrap();
    assert!(slower.regressed() || slower.inconclusive(), "{slower}");
    let failure = slower.gate(true).unwrap_err();
    if slower.regressed() {
        assert!(failure.contains("REGRESSED") && failure.contains("time per event"), "{failure}");
    }
    // Opting in lets "could not judge" pass; a regression still fails.
    let mut allowed = slower.clone();
    allowed.allow_inconclusive = true;
    assert_eq!(allowed.gate(true).is_err(), slower.regressed());
}

/// Allocates one `String` for every third event: its allocations per event depend on which
/// events a sample holds.
struct EventDependentAllocations;

#[stage]
impl EventDependentAllocations {
    fn process(&self, event: u64) -> u64 {
        if event % 3 == 0 {
            std::hint::black_box(event.to_string());
        }
        Work::<200>.process(event)
    }
}

#[test]
fn unchanged_code_whose_allocations_depend_on_the_event_keeps_them_against_its_baseline() {
    let _lock = exclusive();
    let path = scratch("event-dependent.json");
    let bench = Bench::new("event-dependent").samples(7).batch(13).warmup(1);
    let pipeline = Pipeline::new().stage(EventDependentAllocations);
    bench.run(&pipeline, |i| i).unwrap().save_baseline(&path).unwrap();
    let baseline = Baseline::load(&path).unwrap();
    let per_sample = &baseline.result.allocations_per_sample;
    assert!(per_sample.iter().any(|a| *a != per_sample[0]), "samples differ: {per_sample:?}");
    let mut time_regressions = Vec::new();
    for _ in 0..TRIALS {
        // A check with more samples than the baseline (10 against 7, and more again when the
        // time cannot be judged) feeds the baseline's events again, each set weighed once: the
        // allocations per event are the baseline's exactly, every time.
        let check = bench.clone().samples(10).check(&pipeline, |i| i, &baseline).unwrap();
        let allocations = check.metrics.iter().find(|m| m.metric == Metric::AllocationsPerEvent);
        let allocations = allocations.expect("measured");
        assert_eq!(allocations.verdict, Verdict::Unchanged, "{check}");
        if check.regressed() {
            time_regressions.push(check.to_string());
        }
    }
    // Time against a stored baseline is the gate's weakest mode, and not this test's subject:
    // on this host unchanged code read +11 % beside two busy threads (now "could not judge":
    // the probe sees the machine busy) and +38 % on a quiet machine, confirmed by a second run
    // (another VM on the host). What was measured is shown, not asserted.
    if !time_regressions.is_empty() {
        println!("time regressions against the stored baseline:\n{}", time_regressions.join("\n"));
    }
}

#[test]
fn bad_baselines_are_clear_errors_naming_the_file_and_nothing_is_overwritten() {
    let _lock = exclusive();
    let missing = scratch("missing.json");
    let error = Baseline::load(&missing).unwrap_err().to_string();
    assert!(error.contains("missing.json") && error.contains("save_baseline"), "{error}");

    let malformed = scratch("malformed.json");
    std::fs::write(&malformed, "{ not json").unwrap();
    let error = Baseline::load(&malformed).unwrap_err().to_string();
    assert!(error.contains("malformed.json") && error.contains("not JSON"), "{error}");

    let other = scratch("other.json");
    std::fs::write(&other, r#"{"traceEvents": []}"#).unwrap();
    let error = Baseline::load(&other).unwrap_err().to_string();
    assert!(error.contains("not a baseline file"), "{error}");

    let version = scratch("version.json");
    std::fs::write(&version, r#"{"format": "pipeline-bench-baseline", "version": 99}"#).unwrap();
    let error = Baseline::load(&version).unwrap_err().to_string();
    assert!(error.contains("version 99") && error.contains("version.json"), "{error}");

    let kept = scratch("kept.json");
    std::fs::write(&kept, "precious").unwrap();
    let result =
        Bench::new("x").samples(5).batch(2).run(&Pipeline::new().stage(Work::<1>), |i| i).unwrap();
    let error = result.save_baseline(&kept).unwrap_err().to_string();
    assert!(error.contains("already exists") && error.contains("replace_baseline"), "{error}");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "precious");
    result.replace_baseline(&kept).unwrap();
    assert!(Baseline::load(&kept).is_ok());
}

#[test]
fn a_baseline_with_nonsense_values_is_refused_naming_the_field() {
    let _lock = exclusive();
    let good = scratch("good.json");
    Bench::new("x")
        .samples(5)
        .batch(2)
        .run(&Pipeline::new().stage(Work::<1>), |i| i)
        .unwrap()
        .save_baseline(&good)
        .unwrap();
    let text = std::fs::read_to_string(&good).unwrap();
    let edited = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        edit(&mut value["result"]);
        let path = scratch(name);
        std::fs::write(&path, value.to_string()).unwrap();
        Baseline::load(&path).unwrap_err().to_string()
    };
    let error = edited("empty.json", &|r| r["per_event_ns"] = serde_json::json!([]));
    assert!(error.contains("per_event_ns") && error.contains("empty.json"), "{error}");
    let error = edited("batch.json", &|r| r["batch"] = 0.into());
    assert!(error.contains("`result.batch` is 0"), "{error}");
    let error = edited("negative.json", &|r| r["per_event_ns"][0] = (-5.0).into());
    assert!(error.contains("per_event_ns[0]"), "{error}");
    let error = edited("tolerance.json", &|r| r["tolerance"] = 1e300.into());
    assert!(error.contains("tolerance"), "{error}");
    let error = edited("probe.json", &|r| r["probe_ratio"] = (-1.0).into());
    assert!(error.contains("probe_ratio"), "{error}");

    // One built in code is checked by `check` (it panicked on empty samples).
    let mut in_memory = Baseline::load(&good).unwrap();
    in_memory.result.per_event_ns.clear();
    let bench = Bench::new("x").samples(5).batch(2);
    let error = bench.check(&Pipeline::new().stage(Work::<1>), |i| i, &in_memory).unwrap_err();
    assert!(error.to_string().contains("per_event_ns"), "{error}");

    // A huge file is refused before it is read.
    let huge = scratch("huge.json");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(2 << 30).unwrap(); // sparse: 2 GiB of nothing
    let error = Baseline::load(&huge).unwrap_err().to_string();
    assert!(error.contains("not a baseline file") && error.contains("2147483648"), "{error}");
    let _ = std::fs::remove_file(&huge);
}
