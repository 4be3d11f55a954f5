//! Hostile but realistic input: what a stage hands back, settings the system cannot honour.
//! Nothing hangs, nothing aborts, every accepted event is accounted for. Cases that hung or
//! aborted the process run in a child process with a deadline, so a regression fails the test
//! instead of stalling the suite.
#![cfg(not(feature = "off"))]

mod common;

use std::fmt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{exclusive, quietly, rss_bytes};
use pipeline::run::RunSummary;
use pipeline::trace::TraceBackend;
use pipeline::{stage, Error, Pipeline, Profiler, StageError, WorkerConfig, WorkerPool};

/// An error whose `Display` panics.
#[derive(Debug)]
struct Grumpy;

impl fmt::Display for Grumpy {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("this Display panics")
    }
}

impl std::error::Error for Grumpy {}

/// Fails every third event with an error that cannot be displayed.
struct FailsBadly;

#[stage]
impl FailsBadly {
    fn process(&self, event: u64) -> Result<u64, StageError> {
        if event % 3 == 0 {
            return Err(StageError::failed(Grumpy));
        }
        Ok(event)
    }
}

fn assert_accounted(run: &RunSummary, submitted: u64) {
    assert_eq!(run.submitted, submitted);
    assert_eq!(run.submitted, run.completed + run.rejected + run.failed, "{run:?}");
}

#[test]
fn an_error_whose_display_panics_is_that_stages_failure_not_a_dead_worker() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(FailsBadly);
    let run = quietly(|| pipeline.run_concurrent(0..30, WorkerConfig::new(2)))
        .expect("the run completes");
    assert_accounted(&run, 30);
    assert_eq!(run.failed, 10);
    let stage = &run.stages[0];
    assert_eq!(stage.failed, 10);
    assert!(
        stage.failure_messages.iter().all(|(message, _)| message.contains("`Display` panicked")),
        "{:?}",
        stage.failure_messages
    );

    let pool = WorkerPool::start(Arc::new(Pipeline::new().stage(FailsBadly)), WorkerConfig::new(2))
        .expect("pool");
    quietly(|| (0..30).for_each(|event| pool.submit(event).expect("open")));
    let run = quietly(|| pool.join()).expect("no worker died");
    assert_accounted(&run, 30);
    assert_eq!(run.failed, 10);
}

const CHILD: &str = "PIPELINE_HOSTILE_CHILD";

/// Runs this test binary's test `name` as a child process with `CHILD=case`; kills it at the
/// deadline. Returns its exit status (None: it had to be killed) and its output.
fn child(name: &str, case: &str, deadline: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD, case)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the child");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let output = child.wait_with_output().expect("output");
            let text = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            return (status.code(), text);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (None, String::new());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run as a child by the test below, once per trace backend.
#[test]
#[ignore = "a child process of another test, which runs it with --ignored"]
fn child_fails_badly_while_tracing() {
    let Ok(case) = std::env::var(CHILD) else { return };
    let backend = match case.as_str() {
        "native" => TraceBackend::Native,
        _ => TraceBackend::TracingChrome,
    };
    let path = std::env::temp_dir().join(format!("hostile-{case}-{}.json", std::process::id()));
    let profiler = Profiler::new().chrome_trace(&path).trace_backend(backend).start().unwrap();
    let pipeline = Pipeline::new().stage(FailsBadly);
    let run = quietly(|| pipeline.run_concurrent(0..30, WorkerConfig::new(2))).unwrap();
    // Directly too, under the caller's own catch_unwind, as a service's request handler would.
    let direct =
        quietly(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pipeline.run(3))));
    assert!(matches!(direct, Ok(Err(_))), "the stage's failure, not a panic");
    let report = profiler.finish().unwrap();
    let _ = std::fs::remove_file(&path);
    println!(
        "RESULT failed={} calls={}",
        run.failed,
        report.stage("FailsBadly").unwrap().timing.calls
    );
}

#[test]
fn a_panicking_display_while_tracing_neither_aborts_nor_loses_the_failure() {
    for backend in ["native", "tracing-chrome"] {
        let (status, output) =
            child("child_fails_badly_while_tracing", backend, Duration::from_secs(60));
        assert_eq!(status, Some(0), "{backend}: the child must finish normally:\n{output}");
        assert!(output.contains("RESULT failed=10 calls=31"), "{backend}:\n{output}");
    }
}

/// Run as a child by the test below: worker threads the system cannot create.
#[test]
#[ignore = "a child process of another test, which runs it with --ignored"]
fn child_cannot_spawn_workers() {
    let Ok(case) = std::env::var(CHILD) else { return };
    // No system gives a worker a 1 PiB stack: spawning the first worker fails.
    let workers = WorkerConfig::new(4).stack_size(1 << 50);
    let result = match case.as_str() {
        "run_concurrent" => Pipeline::new().stage(FailsBadly).run_concurrent(0..100, workers),
        _ => WorkerPool::start(Arc::new(Pipeline::new().stage(FailsBadly)), workers)
            .and_then(WorkerPool::join),
    };
    match result {
        Err(Error::Spawn { what, source }) => println!("RESULT spawn error: {what}: {source}"),
        other => println!("RESULT unexpected: {other:?}"),
    }
}

#[test]
fn a_worker_that_cannot_be_spawned_is_an_error_not_a_hang() {
    for case in ["run_concurrent", "pool"] {
        let (status, output) = child("child_cannot_spawn_workers", case, Duration::from_secs(30));
        assert_eq!(status, Some(0), "{case}: must return, not hang:\n{output}");
        assert!(output.contains("RESULT spawn error: worker-0"), "{case}:\n{output}");
    }
}

/// Fails every event with a message that carries its id; `huge` makes each message 1 MB.
struct IdFailures {
    huge: bool,
}

#[stage]
impl IdFailures {
    fn process(&self, event: u64) -> Result<u64, StageError> {
        let padding = if self.huge { "x".repeat(1 << 20) } else { String::new() };
        Err(StageError::failed(format!("order {event} could not be priced{padding}")))
    }
}

#[test]
fn failure_messages_that_carry_ids_still_add_up() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(IdFailures { huge: false });
    let run = pipeline.run_concurrent(0..50, WorkerConfig::new(2)).unwrap();
    assert_accounted(&run, 50);
    let stage = &run.stages[0];
    let listed: u64 = stage.failure_messages.iter().map(|(_, n)| n).sum();
    assert_eq!(stage.failure_messages.len(), 10, "the first 10 distinct messages");
    assert_eq!(listed + stage.other_messages, stage.failed, "the counts add up");
    assert_eq!(stage.other_messages, 40);
    assert!(run.to_string().contains("40 with other messages"), "{run}");
}

#[test]
fn megabyte_messages_are_cut_in_the_report_and_the_trace() {
    let _lock = exclusive();
    for backend in [TraceBackend::Native, TraceBackend::TracingChrome] {
        let path = std::env::temp_dir()
            .join(format!("hostile-huge-{backend:?}-{}.json", std::process::id()));
        let profiler = Profiler::new().chrome_trace(&path).trace_backend(backend).start();
        let profiler = profiler.expect("no other subscriber in this test binary");
        let pipeline = Pipeline::new().stage(IdFailures { huge: true });
        let run = pipeline.run_concurrent(0..200, WorkerConfig::new(2)).unwrap();
        let report = profiler.finish().unwrap();
        assert_accounted(&run, 200);
        let stage = &run.stages[0];
        assert!(stage.failure_messages.iter().all(|(m, _)| m.len() < 1200), "cut at 1 KiB");
        assert!(stage.failure_messages[0].0.contains("[cut: "), "marked as cut");
        let text = report.to_string();
        assert!(text.len() < 20_000, "the report prints a line per message: {} bytes", text.len());
        let size = std::fs::metadata(&path).unwrap().len();
        let _ = std::fs::remove_file(&path);
        // 200 failures, each with an instant and a failed slice: a few KiB each at most.
        assert!(size < 2 << 20, "{backend:?}: the trace holds cut messages, not 400 MB: {size} B");
    }
}

struct Echo;

#[stage]
impl Echo {
    fn process(&self, event: [u64; 16]) -> [u64; 16] {
        event
    }
}

#[test]
fn capacities_and_counts_are_bounded_and_a_large_queue_is_not_allocated_up_front() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(Echo);
    for capacity in [usize::MAX, 1 << 32, 100_000_000] {
        let error = pipeline.run_concurrent([[0; 16]], WorkerConfig::new(1).queue(capacity));
        let error = error.expect_err("refused").to_string();
        assert!(error.contains("16,777,216"), "{capacity}: {error}");
        let error = WorkerPool::start(
            Arc::new(Pipeline::new().stage(Echo)),
            WorkerConfig::new(1).queue(capacity),
        );
        assert!(matches!(error, Err(Error::InvalidConfig(_))), "{capacity}");
    }
    let error = pipeline.run_concurrent([[0; 16]], WorkerConfig::new(100_000)).unwrap_err();
    assert!(error.to_string().contains("4,096"), "{error}");

    // The largest queue allowed, 16M events of 128 bytes (2 GiB if allocated up front).
    let before = rss_bytes();
    let run =
        pipeline.run_concurrent((0..1000).map(|i| [i; 16]), WorkerConfig::new(2).queue(1 << 24));
    let grown = rss_bytes().saturating_sub(before);
    assert_accounted(&run.unwrap(), 1000);
    assert!(grown < 64 << 20, "RSS grew by {grown} bytes for a 1,000-event run");
    let pool = WorkerPool::start(
        Arc::new(Pipeline::new().stage(Echo)),
        WorkerConfig::new(2).queue(1 << 24),
    )
    .unwrap();
    (0..1000).for_each(|i| pool.submit([i; 16]).unwrap());
    assert_accounted(&pool.join().unwrap(), 1000);
}

/// Blocks on its event until the gate opens (a stage waiting on a lock or a call with no
/// deadline).
struct Blocks {
    gate: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

#[stage]
impl Blocks {
    fn process(&self, event: u64) -> u64 {
        if event == 3 {
            let (open, opened) = &*self.gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
        }
        event
    }
}

#[test]
fn join_timeout_returns_what_was_accounted_while_a_stage_blocks_forever() {
    let _lock = exclusive();
    let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let pipeline = Arc::new(Pipeline::new().stage(Blocks { gate: Arc::clone(&gate) }));
    let pool = WorkerPool::start(pipeline, WorkerConfig::new(1)).unwrap();
    (0..10).for_each(|event| pool.submit(event).unwrap());
    let started = Instant::now();
    let run = pool.join_timeout(Duration::from_millis(300)).expect("a summary, not a hang");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(run.submitted, 10);
    assert_eq!(run.completed, 3, "events 0, 1, 2 went through before 3 blocked");
    assert_eq!(run.unfinished, 7, "event 3 in its stage, 4..9 in the queue");
    assert_eq!(run.submitted, run.completed + run.rejected + run.failed + run.unfinished);
    assert!(run.to_string().contains("7 accepted events were still queued"), "{run}");
    // Let the stuck worker go: it finishes on its own.
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
}

#[test]
fn a_pool_dropped_without_join_still_reaches_the_report() {
    let _lock = exclusive();
    let profiler = Profiler::new().start().unwrap();
    let pool =
        WorkerPool::start(Arc::new(Pipeline::new().stage(Echo)), WorkerConfig::new(2)).unwrap();
    (0..100).for_each(|i| pool.submit([i; 16]).unwrap());
    drop(pool); // drains, and hands its run to the session
    let report = profiler.finish().unwrap();
    assert_eq!(report.runs.len(), 1, "the load section is there");
    assert_accounted(&report.runs[0], 100);
}

/// An event whose `Drop` panics, handed back by every stage call.
struct Booby(u64);

impl Drop for Booby {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("dropping event {} panics", self.0);
        }
    }
}

struct PassBooby;

#[stage]
impl PassBooby {
    fn process(&self, event: Booby) -> Result<Booby, StageError> {
        if event.0 % 2 == 0 {
            return Err(StageError::rejected("even")); // the stage drops this one itself
        }
        Ok(event)
    }
}

#[test]
fn an_event_whose_drop_panics_does_not_take_a_worker_down() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage(PassBooby);
    let run = quietly(|| pipeline.run_concurrent((0..40).map(Booby), WorkerConfig::new(2)))
        .expect("the run completes");
    assert_accounted(&run, 40);
    assert_eq!(run.completed + run.rejected + run.failed, 40);
}
