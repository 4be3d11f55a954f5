//! The Chrome trace: well-formed per thread, every worker named, counters and instant events
//! present, slices carrying their outcome and allocations, and counts equal to the report's.
//! Traces are left in `target/tmp/traces/` with an `.expect` file beside each, for `.ci/run` to
//! check with a Perfetto-style importer as well.
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::{count, exclusive, load_trace, quietly, slices, trace_dir, write_expectations};
use pipeline::{
    profiled, stage, CountingAllocator, Pipeline, Profiler, Report, StageError, WorkerConfig,
};
use serde_json::Value;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

struct Enrich;

#[stage]
impl Enrich {
    fn process(&self, event: u64) -> u64 {
        let found = lookup(event);
        std::hint::black_box(&found);
        event
    }
}

#[profiled]
fn lookup(event: u64) -> Vec<u64> {
    vec![event; 4]
}

/// Rejects every 10th event and panics on every 25th.
struct Check;

#[stage]
impl Check {
    fn process(&self, event: u64) -> Result<u64, StageError> {
        if event % 25 == 0 {
            panic!("check exploded on {event}");
        }
        if event % 10 == 0 {
            return Err(StageError::rejected("multiple of ten"));
        }
        Ok(event)
    }
}

fn traced_run(path: &Path, events: u64) -> Report {
    let pipeline = Pipeline::new().stage(Enrich).stage(Check);
    let profiler = Profiler::new().name("trace-test").chrome_trace(path).start().expect("start");
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let run = pipeline.run_concurrent(1..=events, WorkerConfig::new(2).queue(8));
    std::panic::set_hook(hook);
    run.expect("run");
    let report = profiler.finish().expect("finish writes the trace");
    write_expectations(path, &report);
    report
}

fn load(path: &Path) -> Vec<Value> {
    load_trace(path)
}

#[test]
fn the_trace_is_well_formed_and_matches_the_report() {
    let _lock = exclusive();
    let path = trace_dir().join("workers.json");
    let report = traced_run(&path, 200);
    let events = load(&path);

    // Slices nest properly per thread (checked by `slices`), and their counts per stage equal
    // the report's call counts.
    let all = slices(&events);
    for stage in &report.stages {
        assert_eq!(count(&all, &stage.name), stage.timing.calls, "{}", stage.name);
    }
    assert_eq!(count(&all, "event"), 200, "one event slice per event");
    assert_eq!(count(&all, "trace::lookup"), 200, "profiled functions are slices too");
    for lookup in all.iter().filter(|s| s.name == "trace::lookup") {
        assert_eq!(lookup.parents, ["event", "Enrich"], "nested in its stage, in its event");
    }
    // Every event's slice is the end of a flow arrow that starts at its submission.
    let submitted: HashMap<u64, &common::Slice> =
        all.iter().filter_map(|s| Some((s.flow_out?, s))).collect();
    let event_slices: Vec<&common::Slice> = all.iter().filter(|s| s.name == "event").collect();
    for event in &event_slices {
        let flow = event.flow_in.expect("every event slice has its arrow");
        let submit = submitted.get(&flow).expect("its submission");
        assert_eq!(submit.name, "submit");
        assert_eq!(submit.args["id"], event.args["id"]);
        assert!(submit.ts <= event.ts, "submitted before it was picked");
        assert_ne!(submit.tid, event.tid, "submitted on the producer's track");
    }

    // Threads are named with their real ids: never 0, never the process id for a worker.
    let pid = u64::from(std::process::id());
    let names: HashMap<u64, String> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| (e["tid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap().to_owned()))
        .collect();
    for event in &event_slices {
        assert_ne!(event.tid, 0);
        assert_ne!(event.tid, pid);
        assert!(names[&event.tid].starts_with("worker-"), "{:?}", names.get(&event.tid));
    }
    assert!(events.iter().all(|e| e["pid"] == pid), "one process id, the real one");

    // Every worker has a named track; the process is named.
    let metadata = |kind: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == kind)
            .map(|e| e["args"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // (Under load one worker may start late and run no event: it then has no track.)
    let threads = metadata("thread_name");
    let workers = &report.runs[0].workers;
    for worker in workers.iter().filter(|worker| worker.events > 0) {
        assert!(threads.contains(&worker.name), "{} ran events: {threads:?}", worker.name);
    }
    assert!(workers.iter().any(|worker| worker.events > 0));
    assert_eq!(metadata("process_name"), ["trace-test"]);

    // Counter tracks: queue depth and live heap.
    let counters: Vec<&str> =
        events.iter().filter(|e| e["ph"] == "C").map(|e| e["name"].as_str().unwrap()).collect();
    assert!(counters.contains(&"queue"), "{counters:?}");
    assert!(counters.contains(&"heap"), "{counters:?}");

    // Instant events for rejections and panics.
    let instants: Vec<&str> =
        events.iter().filter(|e| e["ph"] == "i").map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(instants.iter().filter(|n| **n == "panic").count(), 8, "events 25, 50, ... 200");
    assert_eq!(
        instants.iter().filter(|n| **n == "rejected").count(),
        16,
        "multiples of 10, not of 25"
    );

    // Stage slices carry what a reader could not know otherwise: the allocations of a call that
    // allocated, and the outcome of a call that failed.
    let args_of = |name: &str| -> Vec<Value> {
        all.iter().filter(|s| s.name == name).map(|s| s.args.clone()).collect()
    };
    let enrich = args_of("Enrich");
    assert!(
        enrich.iter().all(|a| a["allocations"] == 1 && a["bytes_allocated"] == 32),
        "{:?}",
        enrich[0]
    );
    assert!(enrich.iter().all(|a| a.get("outcome").is_none()), "{:?}", enrich[0]);
    let check = args_of("Check");
    let rejected = check
        .iter()
        .filter(|a| a["outcome"].as_str().unwrap_or("").starts_with("rejected"))
        .count();
    assert_eq!(rejected, 16);
    // Panicked calls say so (and a `panic` instant marks them); the rest passed and allocated
    // nothing.
    let panicked = check.iter().filter(|a| a["outcome"] == "panicked").count();
    assert_eq!(panicked, 8);
    let not_rejected = report.stage("Check").unwrap().timing.calls - 16 - 8;
    let bare = check.iter().filter(|a| a.as_object().is_none_or(|a| a.is_empty())).count();
    assert_eq!(declared_left_out(&events), 0, "nothing left out at default settings");
    assert_eq!(
        bare as u64, not_rejected,
        "a call that passed and allocated nothing records nothing"
    );

    // The trace closes by declaring its stages and that allocations were measured.
    let declared: Vec<&Value> =
        events.iter().filter(|e| e["ph"] == "M" && e["name"] == "pipeline_profile").collect();
    assert_eq!(declared.len(), 1, "one closing declaration");
    assert_eq!(events.last(), Some(declared[0]), "it is the last entry");
    let stages = declared[0]["args"]["stages"].as_array().unwrap();
    assert!(stages.contains(&"Enrich".into()) && stages.contains(&"Check".into()), "{stages:?}");
    assert!(!stages.contains(&"trace::lookup".into()), "functions are not stages");
    assert_eq!(declared[0]["args"]["allocations_measured"], true);
}

#[test]
fn an_unwritable_trace_path_is_a_clear_error_from_start() {
    let _lock = exclusive();
    let missing = Path::new("/definitely/not/a/directory/trace.json");
    let error = Profiler::new().chrome_trace(missing).start().unwrap_err();
    let message = error.to_string();
    assert!(message.contains("cannot write the trace"), "{message}");
    assert!(message.contains("/definitely/not/a/directory/trace.json"), "{message}");

    let directory = trace_dir(); // a directory is not a writable file either
    let error = Profiler::new().chrome_trace(&directory).start().unwrap_err();
    assert!(error.to_string().contains(&directory.display().to_string()), "{error}");

    // The failed starts left no profiler running.
    drop(Profiler::new().start().expect("the profiler is free again"));
}

#[test]
fn consecutive_sessions_each_write_a_complete_trace() {
    let _lock = exclusive();
    let (first, second) = (trace_dir().join("first.json"), trace_dir().join("second.json"));
    let a = traced_run(&first, 30);
    let b = traced_run(&second, 50);
    let enrich = |path: &Path| count(&slices(&load(path)), "Enrich");
    assert_eq!(enrich(&first), a.stage("Enrich").unwrap().timing.calls);
    assert_eq!(enrich(&second), b.stage("Enrich").unwrap().timing.calls);
}

const CHILD: &str = "PIPELINE_TRACE_PANIC_CHILD";

/// Run as a child process by the test below: starts tracing, records, then panics on main.
#[test]
#[ignore = "a child process of another test, which runs it with --ignored"]
fn child_that_panics_mid_run() {
    let Ok(path) = std::env::var(CHILD) else { return };
    let pipeline = Pipeline::new().stage(Enrich);
    let _profiler = Profiler::new().chrome_trace(&path).start().unwrap();
    for event in 1..=40 {
        pipeline.run(event).unwrap();
    }
    panic!("the program crashed mid-run");
}

#[test]
fn a_panic_mid_run_still_leaves_a_trace_with_what_was_recorded() {
    // Holds the lock although it profiles nothing here: what it allocates and frees (the
    // child's output, the parsed trace) would show in another test's process-wide heap growth.
    let _lock = exclusive();
    let path = trace_dir().join("panicked.json");
    let _ = std::fs::remove_file(&path);
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_that_panics_mid_run", "--ignored", "--nocapture"])
        .env(CHILD, &path)
        .output()
        .expect("run the child");
    assert!(!output.status.success(), "the child panicked");
    let enrich_slices = count(&slices(&load(&path)), "Enrich");
    assert_eq!(enrich_slices, 40, "every slice recorded before the panic is in the trace");
    std::fs::write(path.with_extension("expect"), "--expect=Enrich=40\n--strict").unwrap();
}

const EXIT_CHILD: &str = "PIPELINE_TRACE_EXIT_CHILD";

/// Run as a child process by the test below: starts tracing, records on two threads, then exits
/// the process without `finish`.
#[test]
#[ignore = "a child process of another test, which runs it with --ignored"]
fn child_that_exits_without_finish() {
    let Ok(path) = std::env::var(EXIT_CHILD) else { return };
    let pipeline = Pipeline::new().stage(Enrich);
    let profiler = Profiler::new().chrome_trace(&path).start().unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| (1..=25).for_each(|e| drop(pipeline.run(e))));
        (26..=40).for_each(|e| drop(pipeline.run(e)));
    });
    std::mem::forget(profiler);
    std::process::exit(3);
}

#[test]
fn a_process_that_exits_without_finish_still_leaves_a_complete_trace() {
    let _lock = exclusive();
    let path = trace_dir().join("exited.json");
    let _ = std::fs::remove_file(&path);
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_that_exits_without_finish", "--ignored", "--nocapture"])
        .env(EXIT_CHILD, &path)
        .output()
        .expect("run the child");
    assert_eq!(output.status.code(), Some(3), "the child exited on its own terms");
    let events = load(&path); // one complete JSON array: the file was ended at exit
    assert_eq!(count(&slices(&events), "Enrich"), 40, "every slice recorded before the exit");
    assert!(events.last().is_some_and(|e| e["name"] == "pipeline_profile"), "closing entry");
    std::fs::write(path.with_extension("expect"), "--expect=Enrich=40\n--strict").unwrap();
}

#[test]
fn tracing_does_not_show_up_as_heap_growth_or_in_stage_allocations() {
    let _lock = exclusive();
    let path = trace_dir().join("heap.json");
    let report = traced_run(&path, 3_000);
    let growth = report.memory.growth_bytes.expect("measured");
    // Trace records and texts are made on the workers and read on the writer's thread: none of
    // it may count as the program's growth (a drift would be ~1 MB here). The heap figure is
    // exact to 64 KiB per thread (each batches its changes), and four threads take part: the
    // test's, two workers and the queue sampler.
    assert!(growth.abs() < 4 * 64 * 1024, "heap grew by {growth} B while only tracing");
    let lookup = report.stage("Enrich").unwrap().memory.unwrap();
    assert_eq!(lookup.total.allocations, 3_000, "one Vec per call, tracing's allocations excluded");
    let _ = std::fs::remove_file(&path); // large; the other traces cover the checks
}

#[test]
fn sampling_traces_one_event_in_n_while_statistics_cover_all() {
    let _lock = exclusive();
    let path = trace_dir().join("sampled.json");
    let pipeline = Pipeline::new().stage(Enrich);
    let profiler = Profiler::new().chrome_trace(&path).trace_one_in(10).start().unwrap();
    pipeline.run_concurrent(0..200, WorkerConfig::new(2)).unwrap();
    let report = profiler.finish().unwrap();
    write_expectations_for(&path, &[("Enrich", 20), ("event", 20)]);

    assert_eq!(report.stage("Enrich").unwrap().timing.calls, 200, "statistics are complete");
    let traced = slices(&load(&path));
    assert_eq!(count(&traced, "event"), 20, "events 0, 10, ..., 190");
    assert_eq!(count(&traced, "Enrich"), 20);
    assert_eq!(report.trace.as_ref().unwrap().traced_one_in, 10);
    assert!(report.to_string().contains("1 in 10 events traced"));
}

#[test]
fn a_tiny_trace_budget_slows_threads_to_the_writer_and_loses_no_span() {
    let _lock = exclusive();
    let path = trace_dir().join("bounded.json");
    let pipeline = Pipeline::new().stage(Enrich).stage(Check);
    let profiler = Profiler::new().chrome_trace(&path).trace_backlog_limit(20).start().unwrap();
    let run = quietly(|| pipeline.run_concurrent(1..=2_000, WorkerConfig::new(2)));
    let report = profiler.finish().unwrap();
    run.unwrap();

    assert_eq!(report.trace.as_ref().unwrap().spans_left_out, 0, "threads waited for the writer");
    let kept = slices(&load(&path));
    assert_eq!(count(&kept, "Enrich"), 2_000);
    assert_eq!(count(&kept, "event"), 2_000);
    let _ = std::fs::remove_file(&path);
}

/// A writer stuck on its file (a stalled disk, here a pipe nobody reads for a while) costs
/// spans, not memory and not the program's progress: after a second without any chunk coming
/// back, threads leave whole spans out instead of waiting; the statistics stay complete, and
/// once the file moves again the trace is finished, well formed, and says what it left out.
#[cfg(target_os = "linux")]
#[test]
fn a_stalled_writer_costs_whole_spans_not_progress_and_the_trace_says_so() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    use std::time::{Duration, Instant};

    let _lock = exclusive();
    let path = trace_dir().join("stalled.fifo");
    let _ = std::fs::remove_file(&path);
    let made = Command::new("mkfifo").arg(&path).status().expect("mkfifo runs");
    assert!(made.success());
    // The reading end is open (so the trace's file opens) but not read: writes block once the
    // pipe's buffer is full.
    const O_NONBLOCK: i32 = 0o4000;
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(&path)
        .expect("reading end");
    let pipeline = Pipeline::new().stage(Enrich).stage(Check);
    let profiler = Profiler::new().chrome_trace(&path).start().unwrap();
    let started = Instant::now();
    let mut events = 0;
    while started.elapsed() < Duration::from_millis(2_500) {
        quietly(|| pipeline.run_concurrent(0..2_000, WorkerConfig::new(2))).expect("run");
        events += 2_000;
    }
    // The disk comes back: everything written since is read.
    let drained = std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut buffer = [0u8; 1 << 16];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => return text,
                Ok(n) => text.extend_from_slice(&buffer[..n]),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(error) => panic!("reading the trace: {error}"),
            }
        }
    });
    let report = profiler.finish().expect("finish");
    let text = drained.join().expect("reader");
    let _ = std::fs::remove_file(&path);

    let left_out = report.trace.as_ref().unwrap().spans_left_out;
    assert!(left_out > 0, "a writer stuck for over a second must cost spans");
    assert_eq!(report.stage("Enrich").unwrap().timing.calls, events, "statistics are complete");
    assert!(report.to_string().contains("spans left out because the trace writer fell behind"));
    // Whole spans are left out: every slice that is there ended and nests (`slices` checks),
    // and the trace itself says how many records were left out.
    let events_in_trace: Vec<Value> = serde_json::from_slice(&text).expect("one JSON array");
    let kept = slices(&events_in_trace);
    assert!(count(&kept, "Enrich") < events, "some were left out");
    assert_eq!(declared_left_out(&events_in_trace), left_out);
}

fn write_expectations_for(trace: &Path, counts: &[(&str, u64)]) {
    let mut lines: Vec<String> =
        counts.iter().map(|(name, n)| format!("--expect={name}={n}")).collect();
    lines.push("--strict".to_owned());
    std::fs::write(trace.with_extension("expect"), lines.join("\n")).expect("expect file");
}

struct CalledBeforeTracing;

#[stage]
impl CalledBeforeTracing {
    fn process(&self, event: u64) -> u64 {
        event + 1
    }
}

#[test]
fn a_stage_first_called_while_not_tracing_is_traced_once_tracing_starts() {
    let _lock = exclusive();
    // The span's call site is registered now, while no trace runs (a filter that cached its
    // first answer per call site would never trace it afterwards).
    let pipeline = Pipeline::new().stage(CalledBeforeTracing);
    pipeline.run(1).unwrap();
    let path = trace_dir().join("late.json");
    let profiler = Profiler::new().chrome_trace(&path).start().unwrap();
    for event in 0..5 {
        pipeline.run(event).unwrap();
    }
    profiler.finish().unwrap();
    write_expectations_for(&path, &[("CalledBeforeTracing", 5)]);
    assert_eq!(count(&slices(&load(&path)), "CalledBeforeTracing"), 5);
}

/// What the trace's closing entry says was left out.
fn declared_left_out(events: &[Value]) -> u64 {
    let declared = events.iter().find(|e| e["ph"] == "M" && e["name"] == "pipeline_profile");
    declared.expect("closing entry")["args"]["records_left_out"].as_u64().expect("a count")
}
