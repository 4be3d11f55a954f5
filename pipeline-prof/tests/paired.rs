//! Two builds of one benchmark compared in one run, interleaved: the gate CI can trust when the
//! old and the new code are two builds.
//!
//! The "builds" here are this test binary started again as a benchmark (`serve_work` below,
//! which calls `Bench::main`), with the stage's work set by an environment variable: two
//! processes, as two builds would be.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::process::Command;

use common::exclusive;
use pipeline::bench::{Bench, Metric, Verdict, SERVE_ENV};
use pipeline::{stage, CountingAllocator, Error, Pipeline};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

/// Integer work: `WORK_ROUNDS` rounds per event.
struct Work(u64);

#[stage]
impl Work {
    fn process(&self, event: u64) -> u64 {
        let mut h = event ^ 0x9e37_79b9_7f4a_7c15;
        for round in 0..self.0 {
            h = black_box(h.rotate_left(5) ^ round).wrapping_mul(0x100_0000_01b3);
        }
        h
    }
}

/// The benchmark binary's `main`, when this test binary is started as one.
#[test]
#[ignore = "a child process of the tests below, which run it with --ignored"]
fn serve_work() {
    if std::env::var_os(SERVE_ENV).is_none() {
        return; // an ordinary test run: nothing to serve
    }
    let rounds = std::env::var("WORK_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1000);
    let name = std::env::var("BENCH_NAME").unwrap_or_else(|_| "work".to_owned());
    Bench::new(name).batch(10).main(&Pipeline::new().stage(Work(rounds)), |i| i).expect("serve");
}

/// This test binary, started as the benchmark doing `rounds` rounds per event.
fn build(rounds: u64) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args(["serve_work", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("WORK_ROUNDS", rounds.to_string());
    command
}

fn quick(seed: u64) -> Bench {
    Bench::new("ignored: the builds name it").samples(15).warmup(2).seed(seed).tolerance(0.05)
}

#[test]
fn a_slower_build_is_caught_and_an_identical_one_is_not() {
    let _lock = exclusive();
    for seed in 0..3 {
        let slower = quick(seed).paired(build(1000), build(1300)).expect("paired");
        assert_eq!(slower.verdict(Metric::TimePerEvent), Some(&Verdict::Regressed), "{slower}");
        assert!(slower.gate(true).is_err());
        assert_eq!(slower.name, "work", "named by the builds");
        // Both builds fed the same events: the same allocations, exactly.
        assert_eq!(slower.verdict(Metric::AllocationsPerEvent), Some(&Verdict::Unchanged));
        let same = quick(seed).paired(build(1000), build(1000)).expect("paired");
        assert_eq!(same.verdict(Metric::TimePerEvent), Some(&Verdict::Unchanged), "{same}");
        assert_eq!(same.gate(true), Ok(()));
        let text = same.to_string();
        assert!(text.contains("two builds, paired"), "{text}");
    }
}

#[test]
fn builds_that_are_not_benchmarks_or_disagree_are_clear_errors() {
    let _lock = exclusive();
    // A program that is not a benchmark: it ends without greeting.
    let error = quick(0).paired(Command::new("true"), build(1000)).unwrap_err();
    assert!(matches!(error, Error::PairedBench { .. }), "{error}");
    assert!(error.to_string().contains("Bench::main"), "{error}");
    // A program that cannot be started.
    let error = quick(0).paired(Command::new("/nonexistent/bench"), build(1000)).unwrap_err();
    assert!(error.to_string().contains("cannot be started"), "{error}");
    // Two different benchmarks.
    let mut other = build(1000);
    other.env("BENCH_NAME", "other");
    let error = quick(0).paired(build(1000), other).unwrap_err();
    assert!(error.to_string().contains("same benchmark"), "{error}");
}

/// A "build" as a file `pipeline-prof paired` can run: a script starting this test binary as the
/// benchmark doing `rounds` rounds per event.
fn build_script(name: &str, rounds: u64) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("paired");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    let exe = std::env::current_exe().expect("test binary");
    let script = format!(
        "#!/bin/sh\nWORK_ROUNDS={rounds} exec '{}' serve_work --exact --ignored --nocapture \
         --test-threads=1\n",
        exe.display()
    );
    std::fs::write(&path, script).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn pipeline_prof_paired_exits_1_on_a_slower_build_and_0_on_the_same_one() {
    let _lock = exclusive();
    let prof = env!("CARGO_BIN_EXE_pipeline-prof");
    let (old, same, slower) =
        (build_script("old", 1000), build_script("same", 1000), build_script("slower", 1300));
    let run = |after: &std::path::Path| {
        Command::new(prof)
            .args(["paired", "--samples", "15", "--tolerance", "5"])
            .arg(&old)
            .arg(after)
            .output()
            .expect("pipeline-prof runs")
    };
    let caught = run(&slower);
    let table = String::from_utf8_lossy(&caught.stdout);
    assert_eq!(caught.status.code(), Some(1), "{table}");
    assert!(table.contains("REGRESSED"), "{table}");
    let passed = run(&same);
    let table = String::from_utf8_lossy(&passed.stdout);
    assert_eq!(passed.status.code(), Some(0), "{table}");
    assert!(table.contains("unchanged"), "{table}");
    // Not a benchmark: a clear error, exit status 2.
    let wrong = Command::new(prof).args(["paired", "/bin/true"]).arg(&old).output().expect("runs");
    let message = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(2), "{message}");
    assert!(message.contains("Bench::main"), "{message}");
}
