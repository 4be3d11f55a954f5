//! Async stages on tokio, measured as exactly as sync ones: calls, wall and busy time,
//! allocations per call while tasks interleave on a thread and move between threads, nesting
//! across awaits, and calls that are cancelled or panic.
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{exclusive, quietly, spin_for, trace_dir, YieldTimes};
use pipeline::{profiled, stage, AsyncPipeline, CountingAllocator, Profiler, Report, StageError};

/// Gives the worker back once. (`tokio::task::yield_now` would do, but tokio grows a list of
/// deferred wakers on a worker's first yields: allocations of the runtime's, rightly charged
/// to the poll that made them, that would make the counts below depend on scheduling.)
fn yield_now() -> YieldTimes {
    YieldTimes(1)
}

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

/// Two allocations of its own (64 and 32 bytes) around three awaits, plus `fetch`'s one.
struct Enrich;

#[stage]
impl Enrich {
    async fn process(&self, event: u64) -> u64 {
        let first: Vec<u8> = Vec::with_capacity(64);
        black_box(&first);
        yield_now().await;
        let fetched = fetch(event).await;
        yield_now().await;
        let second: Vec<u8> = Vec::with_capacity(32);
        black_box(&second);
        yield_now().await;
        fetched
    }
}

/// One allocation (8 bytes) and one await, nested in `Enrich`.
#[profiled]
async fn fetch(event: u64) -> u64 {
    let boxed = Box::new(event);
    yield_now().await;
    *black_box(boxed) + 1
}

/// A sync stage between async ones: one allocation of 16 bytes.
struct Score;

#[stage]
impl Score {
    fn process(&self, event: u64) -> u64 {
        let scratch: Vec<u8> = Vec::with_capacity(16);
        black_box(&scratch);
        event * 2
    }
}

/// Drops odd events (an async filter) after an await.
struct KeepEven;

#[stage]
impl KeepEven {
    async fn process(&self, event: u64) -> Option<u64> {
        yield_now().await;
        (event % 2 == 0).then_some(event)
    }
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .build()
        .expect("a tokio runtime")
}

fn profile_on(
    runtime: &tokio::runtime::Runtime,
    run: impl std::future::Future<Output = ()>,
) -> Report {
    let profiler = Profiler::new().start().expect("no other profiler runs under the lock");
    runtime.block_on(run);
    profiler.finish().expect("finish")
}

#[test]
fn interleaved_tasks_on_two_workers_are_counted_exactly_per_stage() {
    let _lock = exclusive();
    const TASKS: u64 = 1_000;
    let pipeline = std::sync::Arc::new(
        AsyncPipeline::new().stage_async(Enrich).stage(Score).stage_async(KeepEven),
    );
    let runtime = runtime(2);
    let report = profile_on(&runtime, async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|event| {
                let pipeline = std::sync::Arc::clone(&pipeline);
                tokio::spawn(async move { pipeline.run(event).await })
            })
            .collect();
        let mut passed = 0;
        for task in tasks {
            if task.await.expect("no stage panics").expect("no stage fails").is_some() {
                passed += 1;
            }
        }
        // (event + 1) * 2 is always even: every event passes.
        assert_eq!(passed, TASKS);
    });

    let enrich = report.stage("Enrich").expect("the async stage has a row");
    assert_eq!(enrich.timing.calls, TASKS);
    let memory = enrich.memory.as_ref().expect("the counting allocator is in");
    // Its own two and fetch's one, whichever threads the polls ran on and whatever else ran
    // on those threads between them.
    assert_eq!(memory.total.allocations, 3 * TASKS, "{report}");
    assert_eq!(memory.total.bytes_allocated, (64 + 32 + 8) * TASKS, "{report}");
    assert_eq!(memory.self_only.allocations, 2 * TASKS, "{report}");
    let fetch = enrich.function("async_stages::fetch").expect("fetch is nested under Enrich");
    assert_eq!(fetch.timing.calls, TASKS);
    assert_eq!(fetch.memory.as_ref().unwrap().total.allocations, TASKS, "{report}");
    assert!(report.outside_stages.is_empty(), "nothing lands outside a stage: {report}");

    let score = report.stage("Score").unwrap();
    assert_eq!(score.timing.calls, TASKS);
    assert_eq!(score.memory.as_ref().unwrap().total.allocations, TASKS, "{report}");
    assert_eq!(score.timing.waiting_ns, 0, "a sync stage never waits between polls");
    assert_eq!(report.stage("KeepEven").unwrap().timing.calls, TASKS);

    // Wall time is busy time plus waiting; self time is busy time less fetch's.
    for timing in [&enrich.timing, &fetch.timing] {
        assert!(timing.waiting_ns > 0, "it awaited: {timing:?}");
        assert!(timing.busy_ns() + timing.waiting_ns == timing.total_ns, "{timing:?}");
    }
    assert_eq!(enrich.timing.self_ns + fetch.timing.busy_ns(), enrich.timing.busy_ns(), "{report}");
    let table = report.to_string();
    assert!(table.contains("busy"), "the table shows busy time when a call waited:\n{table}");
}

/// Awaits a 5 ms timer: slow because it waits, not because it works.
struct SlowLookup;

#[stage]
impl SlowLookup {
    async fn process(&self, event: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        event
    }
}

/// Spins 2 ms inside one poll: busy the whole time.
struct HotScore;

#[stage]
impl HotScore {
    async fn process(&self, event: u64) -> u64 {
        spin_for(Duration::from_millis(2));
        event
    }
}

#[test]
fn a_stage_that_awaits_a_timer_waits_and_a_stage_that_spins_is_busy() {
    let _lock = exclusive();
    let pipeline = AsyncPipeline::new().stage_async(SlowLookup).stage_async(HotScore);
    let pipeline = std::sync::Arc::new(pipeline);
    let runtime = runtime(2);
    // On a worker, as in a service. (From `block_on`'s own thread, registering the timer
    // waited up to 5 ms for the time driver's lock, held by a parked worker: busy time, and
    // rightly shown as such.)
    let report = profile_on(&runtime, async {
        let pipeline = std::sync::Arc::clone(&pipeline);
        let worker = tokio::spawn(async move {
            for event in 0..5 {
                assert_eq!(pipeline.run(event).await.unwrap(), Some(event));
            }
        });
        worker.await.expect("no panic");
    });
    let slow = &report.stage("SlowLookup").unwrap().timing;
    assert_eq!(slow.calls, 5);
    assert!(slow.total_ns >= 5 * 5_000_000, "wall at least the timers: {slow:?}");
    assert!(slow.busy_ns() < 5 * 1_000_000, "busy well under 1 ms a call: {slow:?}");
    assert!(slow.self_ns <= slow.busy_ns());

    let hot = &report.stage("HotScore").unwrap().timing;
    assert!(hot.busy_ns() >= 5 * 2_000_000, "{hot:?}");
    // One poll: nothing of it waits (the slack is the runtime's scheduling, not the stage).
    assert!(hot.waiting_ns * 20 < hot.total_ns, "busy about equal to wall: {hot:?}");
    let diagnosis = report.diagnosis();
    // SlowLookup is the slowest (the event waits longest there), and the diagnosis says why.
    assert!(diagnosis.contains("Slowest stage: SlowLookup"), "{diagnosis}");
    assert!(diagnosis.contains("of SlowLookup's time is waiting between polls"), "{diagnosis}");
    assert!(diagnosis.contains("the busiest stage is HotScore"), "{diagnosis}");
}

/// Awaits forever: its calls end only when dropped.
struct Hangs;

#[stage]
impl Hangs {
    async fn process(&self, event: u64) -> u64 {
        std::future::pending::<()>().await;
        event
    }
}

/// Panics on event 3, after an await.
struct PanicsOnThree;

#[stage]
impl PanicsOnThree {
    async fn process(&self, event: u64) -> Result<u64, StageError> {
        yield_now().await;
        if event == 3 {
            panic!("event three");
        }
        Ok(event)
    }
}

#[test]
fn cancelled_and_panicking_calls_are_counted_as_such() {
    let _lock = exclusive();
    let hangs = AsyncPipeline::new().stage_async(Hangs);
    let panics = std::sync::Arc::new(AsyncPipeline::new().stage_async(PanicsOnThree));
    let runtime = runtime(2);
    let report = quietly(|| {
        profile_on(&runtime, async {
            for event in 0..4 {
                let timed_out =
                    tokio::time::timeout(Duration::from_millis(1), hangs.run(event)).await;
                assert!(timed_out.is_err(), "the call never completes");
            }
            for event in 0..5 {
                let pipeline = std::sync::Arc::clone(&panics);
                let joined = tokio::spawn(async move { pipeline.run(event).await }).await;
                assert_eq!(joined.is_err(), event == 3, "only event 3 panics");
            }
        })
    });
    let hangs = &report.stage("Hangs").unwrap().timing;
    assert_eq!((hangs.calls, hangs.cancelled), (4, 4), "{hangs:?}");
    assert!(hangs.total_ns >= 4 * 1_000_000, "counted with their time until the drop");
    let panics = &report.stage("PanicsOnThree").unwrap().timing;
    assert_eq!((panics.calls, panics.panicked, panics.cancelled), (5, 1, 0), "{panics:?}");
}

/// Fails odd events with its own error type; rejections through `reject_if`.
struct Validate;

#[derive(Debug)]
enum Invalid {
    Odd,
    Zero,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Invalid::Odd => "odd",
            Invalid::Zero => "zero",
        })
    }
}

impl std::error::Error for Invalid {}

#[stage(reject_if = |error: &Invalid| matches!(error, Invalid::Zero))]
impl Validate {
    async fn process(&self, event: u64) -> Result<String, Invalid> {
        yield_now().await;
        match event {
            0 => Err(Invalid::Zero),
            e if e % 2 == 1 => Err(Invalid::Odd),
            e => Ok(format!("#{e}")),
        }
    }
}

#[test]
fn async_stages_have_every_shape_sync_stages_have_and_named_instances() {
    let _lock = exclusive();
    let pipeline = AsyncPipeline::new()
        .stage_async_named("keep-even", KeepEven)
        .stage_named("score-twice", Score)
        .stage_async(Validate);
    let names: Vec<&str> = pipeline.stage_names().collect();
    assert_eq!(names, ["keep-even", "score-twice", "Validate"]);
    let runtime = runtime(1);
    let report = profile_on(&runtime, async {
        assert_eq!(pipeline.run(3).await.unwrap(), None, "filtered by the first stage");
        assert_eq!(pipeline.run(4).await.unwrap().as_deref(), Some("#8"));
        let validate = AsyncPipeline::new().stage_async(Validate);
        let rejected = validate.run(0).await.unwrap_err();
        assert_eq!(rejected.stage(), "Validate");
        assert!(matches!(rejected.error(), StageError::Rejected { .. }), "{rejected}");
        let failed = validate.run(5).await.unwrap_err();
        assert!(matches!(failed.error(), StageError::Failed { .. }), "{failed}");
        // The inherent `process` keeps the signature the user wrote, measured too.
        assert_eq!(Validate.process(4).await.unwrap(), "#4");
    });
    assert_eq!(report.stage("keep-even").unwrap().timing.calls, 2);
    assert_eq!(report.stage("score-twice").unwrap().timing.calls, 1);
    assert_eq!(report.stage("Validate").unwrap().timing.calls, 4);
    assert!(report.stage("KeepEven").is_none(), "a named instance is its own row only");
}

/// Fails event 8 by panicking and rejects multiples of 5, after an await.
struct Picky;

#[stage]
impl Picky {
    async fn process(&self, event: u64) -> Result<u64, StageError> {
        yield_now().await;
        match event {
            8 => panic!("eight"),
            e if e % 5 == 0 => Err(StageError::rejected("a multiple of five")),
            e => Ok(e),
        }
    }
}

#[test]
fn worker_tasks_account_for_every_event_and_a_panic_fails_only_its_own() {
    let _lock = exclusive();
    const EVENTS: u64 = 1_000;
    let pipeline = std::sync::Arc::new(
        AsyncPipeline::new().stage_async(Enrich).stage_async(KeepEven).stage_async(Picky),
    );
    let runtime = runtime(2);
    let mut run = None;
    let report = quietly(|| {
        profile_on(&runtime, async {
            let workers = pipeline::WorkerConfig::new(8).queue(32);
            run = Some(pipeline.run_concurrent(0..EVENTS, workers).await.expect("a run"));
        })
    });
    let run = run.unwrap();
    // (e + 1) * 1 after Enrich, even ones kept: Enrich hands on e + 1, so odd events pass.
    let kept = (0..EVENTS).filter(|e| (e + 1) % 2 == 0).count() as u64;
    let rejected = (0..EVENTS).filter(|e| (e + 1) % 2 == 0 && (e + 1) % 5 == 0).count() as u64;
    assert_eq!(run.submitted, EVENTS);
    assert_eq!(run.filtered, EVENTS - kept, "{run}");
    assert_eq!(run.rejected, rejected, "{run}");
    assert_eq!(run.failed, 1, "event 7 becomes 8 and panics: {run}");
    assert_eq!(run.completed, kept - rejected - 1, "{run}");
    assert_eq!(
        run.submitted,
        run.completed + run.filtered + run.rejected + run.failed + run.unfinished
    );
    assert_eq!(run.workers.len(), 8);
    assert!(run.queue.max_depth <= 32, "the queue is bounded: {run}");
    let picky = report.stage("Picky").unwrap();
    assert_eq!((picky.timing.calls, picky.timing.panicked), (kept, 1), "{report}");
    assert_eq!(report.stage("Enrich").unwrap().timing.calls, EVENTS);
    assert!(!report.runs.is_empty(), "the run is in the report: {report}");
}

/// Holds each event 2 ms (a timer): the queue fills behind one worker.
struct Slow;

#[stage]
impl Slow {
    async fn process(&self, event: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        event
    }
}

#[test]
fn submit_waits_while_the_queue_is_full_and_try_submit_hands_the_event_back() {
    let _lock = exclusive();
    let pipeline = std::sync::Arc::new(AsyncPipeline::new().stage_async(Slow));
    let runtime = runtime(2);
    runtime.block_on(async {
        let pool =
            pipeline::AsyncWorkerPool::start(pipeline, pipeline::WorkerConfig::new(1).queue(4))
                .expect("inside a runtime");
        let mut handed_back = 0;
        for event in 0..40 {
            assert!(pool.queue_len() <= 4, "never more than the capacity queued");
            if event % 2 == 0 {
                pool.submit(event).await.expect("open");
            } else if let Err(refused) = pool.try_submit(event) {
                assert_eq!(refused.into_event(), event, "the event comes back untouched");
                handed_back += 1;
            }
        }
        assert!(handed_back > 0, "a full queue refuses try_submit");
        let run = pool.finish().await.expect("a run");
        assert_eq!(run.submitted, 40 - handed_back);
        assert_eq!(run.completed, run.submitted);
        assert!(run.queue.first_full_at_ns.is_some(), "{run}");
    });
}

#[test]
fn the_pool_outside_a_runtime_is_a_clear_error() {
    let pipeline = std::sync::Arc::new(AsyncPipeline::new().stage_async(Slow));
    let error = pipeline::AsyncWorkerPool::start(pipeline, pipeline::WorkerConfig::new(1))
        .err()
        .expect("no runtime here");
    assert!(error.to_string().contains("tokio runtime"), "{error}");
}

#[test]
fn the_trace_draws_each_event_as_an_async_slice_with_its_stages_polls_and_flow() {
    use common::{load_trace, slices, write_expectations, Slice};
    let _lock = exclusive();
    const EVENTS: u64 = 300;
    let path = trace_dir().join("async_workers.json");
    // Enrich hands on e + 1; KeepEven drops the odd ones; Score doubles; Picky panics on 8 and
    // rejects multiples of 5.
    let pipeline = std::sync::Arc::new(
        AsyncPipeline::new()
            .stage_async(Enrich)
            .stage_async(KeepEven)
            .stage(Score)
            .stage_async(Picky),
    );
    let runtime = runtime(2);
    let profiler = Profiler::new().name("async-trace").chrome_trace(&path).start().expect("start");
    let run = quietly(|| {
        runtime
            .block_on(pipeline.run_concurrent(0..EVENTS, pipeline::WorkerConfig::new(8).queue(16)))
    })
    .expect("a run");
    let report = profiler.finish().expect("finish writes the trace");
    write_expectations(&path, &report);
    assert_eq!(run.failed, 1, "{run}");

    let slices = slices(&load_trace(&path));
    fn named<'a>(slices: &'a [Slice], name: &'a str) -> impl Iterator<Item = &'a Slice> {
        slices.iter().filter(move |s| s.name == name)
    }
    let named = |name: &'static str| named(&slices, name);
    let on_event_track = |s: &Slice| s.is_async && s.cat.as_deref() == Some("pipeline");
    let events: Vec<&Slice> = named("event").filter(|s| on_event_track(s)).collect();
    assert_eq!(events.len() as u64, EVENTS, "one async slice per event");
    let mut ids: Vec<u64> = events.iter().map(|s| s.args["id"].as_u64().expect("id")).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..EVENTS).collect::<Vec<_>>(), "every event once");
    // The arrow from each submission reaches its event's slice.
    let submits: std::collections::HashSet<u64> =
        named("submit").filter_map(|s| s.flow_out).collect();
    let linked = events.iter().filter(|e| e.flow_in.is_some_and(|f| submits.contains(&f)));
    assert_eq!(linked.count() as u64, EVENTS, "a flow from submit to every event");

    // The async stages nest in their event, on its track, with how each call ended.
    for (stage, calls) in
        [("Enrich", EVENTS), ("KeepEven", EVENTS), ("Picky", run.submitted - run.filtered)]
    {
        let drawn: Vec<&Slice> = named(stage).collect();
        assert_eq!(drawn.len() as u64, calls, "{stage}: one slice per call");
        for slice in &drawn {
            assert!(on_event_track(slice), "{stage} is on its event's track: {slice:?}");
            assert_eq!(slice.parents, ["event"], "{stage} nests in its event");
        }
    }
    let flagged =
        |stage: &'static str, flag: &str| named(stage).filter(|s| s.args[flag] == true).count();
    assert_eq!(flagged("KeepEven", "filtered") as u64, run.filtered);
    assert_eq!(flagged("Picky", "rejected") as u64, run.rejected);
    assert_eq!(flagged("Picky", "panicked"), 1);

    // Polls are drawn on the worker threads; the synchronous stage runs inside one of them.
    let polls: Vec<&Slice> = named("poll").collect();
    assert!(polls.len() as u64 >= EVENTS, "{} polls", polls.len());
    assert!(polls.iter().all(|p| !p.is_async && p.args["event"].is_u64()));
    let scores: Vec<&Slice> = named("Score").collect();
    assert_eq!(scores.len() as u64, run.submitted - run.filtered);
    assert!(scores
        .iter()
        .all(|s| !s.is_async && s.parents.last().map(String::as_str) == Some("poll")));
    // `fetch`, awaited inside Enrich, is an async slice of its own.
    assert_eq!(named("async_stages::fetch").filter(|s| s.is_async).count() as u64, EVENTS);

    // `pipeline-prof summary` reads it like a thread pool's trace.
    let profile = pipeline::analysis::Profile::read(&path).expect("the trace reads");
    for stage in ["Enrich", "KeepEven", "Score", "Picky"] {
        let row = profile.row(None, stage).unwrap_or_else(|| panic!("{stage} in {profile}"));
        assert_eq!(row.timing.calls, report.stage(stage).unwrap().timing.calls, "{stage}");
    }
    let figures = profile.events.as_ref().expect("per-event figures");
    assert_eq!(figures.events, EVENTS, "{profile}");
}

#[test]
fn thousands_of_tasks_and_the_blocking_pool_leave_nothing_out_of_the_trace() {
    use common::{load_trace, slices};
    let _lock = exclusive();
    const TASKS: u64 = 4_000;
    const BLOCKING: u64 = 600;
    let path = trace_dir().join("async_crowd.json");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(512)
        .build()
        .expect("a tokio runtime");
    let interleaved = std::sync::Arc::new(AsyncPipeline::new().stage_async(Enrich));
    let blocking = std::sync::Arc::new(pipeline::Pipeline::new().stage(Score));
    let session = Profiler::new().chrome_trace(&path).start().expect("start");
    runtime.block_on(async {
        // Every task in flight at once, interleaving on two threads...
        let tasks: Vec<_> = (0..TASKS)
            .map(|event| {
                let pipeline = std::sync::Arc::clone(&interleaved);
                tokio::spawn(async move { pipeline.run(event).await.expect("runs") })
            })
            .collect();
        // ...while the blocking pool starts hundreds of threads (each call holds its thread a
        // moment), which retire when the runtime shuts down.
        let blocked: Vec<_> = (0..BLOCKING)
            .map(|event| {
                let pipeline = std::sync::Arc::clone(&blocking);
                tokio::task::spawn_blocking(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    pipeline.run(event).expect("runs")
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("joined");
        }
        for task in blocked {
            task.await.expect("joined");
        }
    });
    drop(runtime);
    let report = session.finish().expect("finish");

    assert_eq!(report.trace.as_ref().unwrap().spans_left_out, 0, "nothing left out");
    assert_eq!(report.stage("Enrich").unwrap().timing.calls, TASKS);
    assert_eq!(report.stage("Score").unwrap().timing.calls, BLOCKING);
    let slices = slices(&load_trace(&path));
    let count = |name: &str| slices.iter().filter(|s| s.name == name).count() as u64;
    assert_eq!(count("Enrich"), TASKS, "every async call is a slice");
    assert_eq!(count("async_stages::fetch"), TASKS);
    assert_eq!(count("Score"), BLOCKING, "every blocking thread's call is a slice");
    let expect = format!("--expect=Enrich={TASKS}\n--expect=Score={BLOCKING}\n--strict");
    std::fs::write(path.with_extension("expect"), expect).expect("expect file");
}
