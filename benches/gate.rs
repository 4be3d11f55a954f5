//! The regression gate's detection and false-alarm rates, the long version of the trials in
//! `tests/bench_gate.rs` and `tests/paired.rs`:
//!
//! - `Bench::compare` (two pipelines in one process): 100 trials each of a 30 % and an 8 %
//!   slowdown, and of no change, on a quiet machine and with another process holding one core;
//! - two builds paired (`Bench::paired`, what `pipeline-prof paired` runs; the "builds" are this
//!   binary started again with another amount of work): 20 trials each of a 30 % and a 10 %
//!   slowdown and of no change, quiet and with two busy threads loading the machine;
//! - a stored baseline (`Bench::check`) against a 30 % slower stage under two busy threads:
//!   how often the CI gate fails (by verdict, or by "could not judge"), of 20.
//!
//! Run: `cargo bench --bench gate`

use std::hint::black_box;
use std::process::Command;

use pipeline::bench::{Baseline, Bench, Metric, Verdict, SERVE_ENV};
use pipeline::{Pipeline, Stage, StageResult};

struct Work(u64);

impl Stage<u64> for Work {
    type Out = u64;
    fn name(&self) -> &str {
        "Work"
    }
    fn process(&self, event: u64) -> StageResult<u64> {
        let mut h = event ^ 0x9e37_79b9_7f4a_7c15;
        for round in 0..self.0 {
            h = black_box(h.rotate_left(5) ^ round).wrapping_mul(0x100_0000_01b3);
        }
        Ok(Some(h))
    }
}

const TRIALS: u64 = 100;

/// (regressed, inconclusive) out of TRIALS.
fn rates(after_rounds: u64) -> (u64, u64) {
    let before = Pipeline::new().stage(Work(10_000));
    let after = Pipeline::new().stage(Work(after_rounds));
    let (mut regressed, mut inconclusive) = (0, 0);
    for trial in 0..TRIALS {
        let bench = Bench::new("gate").samples(15).batch(10).warmup(1).seed(trial).tolerance(0.05);
        match bench.compare(&before, &after, |i| i).expect("compare").verdict(Metric::TimePerEvent)
        {
            Some(Verdict::Regressed) => regressed += 1,
            Some(Verdict::Inconclusive(_)) => inconclusive += 1,
            _ => {}
        }
    }
    (regressed, inconclusive)
}

/// Two busy threads in other processes while it lives (as CI runners often have).
struct Load(Vec<std::process::Child>);

impl Load {
    fn start() -> Self {
        Load(
            (0..2)
                .map(|_| {
                    Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("sh")
                })
                .collect(),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

/// This binary as a benchmark build doing `rounds` rounds per event.
fn build(rounds: u64) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("bench binary"));
    command.env("WORK_ROUNDS", rounds.to_string());
    command
}

const BUILD_TRIALS: u64 = 20;

/// Of BUILD_TRIALS paired comparisons of two builds: (regressed, inconclusive).
fn paired_rates(after_rounds: u64) -> (u64, u64) {
    let (mut regressed, mut inconclusive) = (0, 0);
    for trial in 0..BUILD_TRIALS {
        let bench = Bench::new("gate").samples(30).warmup(3).seed(trial).tolerance(0.05);
        let comparison = bench.paired(build(10_000), build(after_rounds)).expect("paired");
        match comparison.verdict(Metric::TimePerEvent) {
            Some(Verdict::Regressed) => regressed += 1,
            Some(Verdict::Inconclusive(_)) => inconclusive += 1,
            _ => {}
        }
    }
    (regressed, inconclusive)
}

/// Of BUILD_TRIALS baseline checks of a 30 % slower stage under load: how often CI's gate fails.
fn baseline_gate_failures_under_load() -> (u64, u64) {
    let bench = Bench::new("gate").samples(15).batch(10).warmup(1);
    let baseline = bench.run(&Pipeline::new().stage(Work(10_000)), |i| i).expect("baseline");
    let path = std::env::temp_dir().join(format!("gate-baseline-{}.json", std::process::id()));
    baseline.replace_baseline(&path).expect("baseline file");
    let baseline = Baseline::load(&path).expect("baseline");
    let _ = std::fs::remove_file(&path);
    let slower = Pipeline::new().stage(Work(13_000));
    let _load = Load::start();
    let (mut failed, mut by_verdict) = (0, 0);
    for _ in 0..BUILD_TRIALS {
        let comparison = bench.check(&slower, |i| i, &baseline).expect("check");
        failed += u64::from(comparison.gate(true).is_err());
        by_verdict += u64::from(comparison.regressed());
    }
    (failed, by_verdict)
}

fn main() {
    if std::env::var_os(SERVE_ENV).is_some() {
        // Started by `paired_rates` as one of the two builds.
        let rounds = std::env::var("WORK_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(0);
        let bench = Bench::new("gate").batch(10);
        bench.main(&Pipeline::new().stage(Work(rounds)), |i| i).expect("serve");
        return;
    }
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    println!("Two builds paired ({BUILD_TRIALS} trials each, tolerance 5 %):");
    println!("| case | machine | regressed | inconclusive | of |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for (case, rounds) in [("30 % slower", 13_000), ("10 % slower", 11_000), ("no change", 10_000)]
    {
        let (r, i) = paired_rates(rounds);
        println!("| {case} | quiet | {r} | {i} | {BUILD_TRIALS} |");
        let load = Load::start();
        let (r, i) = paired_rates(rounds);
        drop(load);
        println!("| {case} | two busy threads | {r} | {i} | {BUILD_TRIALS} |");
    }
    let (failed, by_verdict) = baseline_gate_failures_under_load();
    println!(
        "\nA stored baseline against a 30 % slower stage, two busy threads: the CI gate failed \
         {failed} of {BUILD_TRIALS} ({by_verdict} by a regressed verdict, the rest as could not \
         judge)\n"
    );
    println!("Bench::compare, one process ({TRIALS} trials each, tolerance 5 %):");
    println!("| case | machine | regressed | inconclusive | of |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for (case, rounds) in [("30 % slower", 13_000), ("8 % slower", 10_800), ("no change", 10_000)] {
        let (r, i) = rates(rounds);
        println!("| {case} | quiet | {r} | {i} | {TRIALS} |");
        let mut hog = Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("sh");
        let (r, i) = rates(rounds);
        let _ = hog.kill();
        let _ = hog.wait();
        println!("| {case} | one core taken | {r} | {i} | {TRIALS} |");
    }
}
