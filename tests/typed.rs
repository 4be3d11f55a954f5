//! Pipelines as users write them: stages that change the event's type, filters, outputs handed
//! to a sink, named instances, a stage's own error types, and a stage's state read after a run.
//!
//! The trace is left in `target/tmp/traces/typed.json` with an `.expect` file beside it, for
//! `.ci/run` to check the way Perfetto reads it.

mod common;

use std::collections::HashSet;
use std::hash::Hash;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{count, exclusive, load_trace, quietly, slices, write_expectations};
use pipeline::{
    stage, CountingAllocator, Pipeline, Profiler, StageError, WorkerConfig, WorkerPool,
};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

/// Stage calls are recorded (built without `off`, which compiles `#[stage]` to the bare code;
/// the runtime's own figures, the run's counts, outputs, the sink's row and the trace's instants,
/// are there either way).
const RECORDS_STAGES: bool = !cfg!(feature = "off");

/// A parsed transaction: what `Parse` makes of a text line.
#[derive(Clone, Debug, PartialEq)]
struct Tx {
    id: u64,
    amount: u64,
}

/// Why a line is not a transaction: a `std::error::Error` of the stage's own.
#[derive(Debug)]
enum ParseError {
    /// Not `id,amount`: the input is bad, reject it.
    Malformed(String),
    /// An amount that does not fit: a fault of ours, fail it.
    Overflow { id: u64 },
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Malformed(line) => write!(f, "malformed line {line:?}"),
            ParseError::Overflow { id } => write!(f, "amount of tx {id} overflows"),
        }
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    fn is_rejection(&self) -> bool {
        matches!(self, ParseError::Malformed(_))
    }
}

/// `"id,amount"` → `Tx`: changes the event's type; malformed lines are rejections, overflows
/// failures (the error's own text kept).
struct Parse;

#[stage(reject_if = ParseError::is_rejection)]
impl Parse {
    fn process(&self, line: String) -> Result<Tx, ParseError> {
        let (id, amount) =
            line.split_once(',').ok_or_else(|| ParseError::Malformed(line.clone()))?;
        let id: u64 = id.parse().map_err(|_| ParseError::Malformed(line.clone()))?;
        if amount == "overflow" {
            return Err(ParseError::Overflow { id });
        }
        let amount = amount.parse().map_err(|_| ParseError::Malformed(line.clone()))?;
        Ok(Tx { id, amount })
    }
}

/// Drops transactions under a minimum: a filter, not a rejection.
struct AtLeast(u64);

#[stage]
impl AtLeast {
    fn process(&self, tx: Tx) -> Option<Tx> {
        (tx.amount >= self.0).then_some(tx)
    }
}

/// Panics on some ids, to show filters, rejections and panics add up together.
struct Fragile;

#[stage]
impl Fragile {
    fn process(&self, tx: Tx) -> (u64, u64) {
        if tx.id % 97 == 13 {
            panic!("fragile cannot take tx {}", tx.id);
        }
        (tx.id, tx.amount * 2)
    }
}

/// The line for event `i`: every 10th malformed, every 50th (of the rest) overflowing.
fn line(i: u64) -> String {
    if i % 10 == 3 {
        format!("garbage-{i}")
    } else if i % 50 == 7 {
        format!("{i},overflow")
    } else {
        format!("{i},{}", i % 100)
    }
}

/// What each line should become: `None` for events that do not complete.
fn expected(i: u64) -> Option<(u64, u64)> {
    let malformed = i % 10 == 3;
    let overflow = !malformed && i % 50 == 7;
    let filtered = !malformed && !overflow && i % 100 < 20;
    let panics = !malformed && !overflow && !filtered && i % 97 == 13;
    (!(malformed || overflow || filtered || panics)).then_some((i, (i % 100) * 2))
}

/// Where the trace `name` goes: `target/tmp/traces/`, apart for the `off` build (whose traces
/// have no stage slices, so the recording build's expectations do not apply to them).
fn trace_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("traces");
    std::fs::create_dir_all(&dir).expect("trace dir");
    let build = if RECORDS_STAGES { "" } else { "-off" };
    dir.join(format!("{name}{build}.json"))
}

#[test]
fn filtered_rejected_failed_and_completed_add_up_with_outputs_delivered_exactly_once() {
    let _lock = exclusive();
    const EVENTS: u64 = 5_000;
    let pipeline: Pipeline<String, (u64, u64)> =
        Pipeline::new().stage(Parse).stage(AtLeast(20)).stage(Fragile);
    let seen = Mutex::new(HashSet::new());
    let checksum = AtomicU64::new(0);
    let sink = |(id, doubled): (u64, u64)| {
        assert!(seen.lock().unwrap().insert(id), "output of event {id} delivered twice");
        checksum.fetch_add(id * 1_000 + doubled, Ordering::Relaxed);
    };
    let profiler = Profiler::new().start().expect("start");
    let run = quietly(|| {
        pipeline.run_concurrent_into((0..EVENTS).map(line), WorkerConfig::new(2).queue(32), &sink)
    })
    .expect("run");
    let report = profiler.finish().expect("finish");

    let want: Vec<(u64, u64)> = (0..EVENTS).filter_map(expected).collect();
    let malformed = (0..EVENTS).filter(|i| i % 10 == 3).count() as u64;
    let overflow = (0..EVENTS).filter(|i| i % 10 != 3 && i % 50 == 7).count() as u64;
    let filtered =
        (0..EVENTS).filter(|i| i % 10 != 3 && i % 50 != 7 && i % 100 < 20).count() as u64;
    let panics = EVENTS - malformed - overflow - filtered - want.len() as u64;
    assert!(panics > 0 && filtered > 0 && overflow > 0, "every kind of ending occurs");

    assert_eq!(run.submitted, EVENTS);
    assert_eq!(run.submitted, run.completed + run.filtered + run.rejected + run.failed);
    assert_eq!(run.completed, want.len() as u64);
    assert_eq!(run.filtered, filtered);
    assert_eq!(run.rejected, malformed);
    assert_eq!(run.failed, overflow + panics);
    // Per stage: the filter's count is its own, not a rejection or a failure.
    let names: Vec<&str> = run.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Parse", "AtLeast", "Fragile", "sink"]);
    let (parse, at_least, fragile) = (&run.stages[0], &run.stages[1], &run.stages[2]);
    assert_eq!((parse.rejected, parse.failed, parse.filtered), (malformed, overflow, 0));
    assert_eq!((at_least.filtered, at_least.rejected, at_least.failed), (filtered, 0, 0));
    assert_eq!((fragile.failed, fragile.panicked), (panics, panics));
    // The custom error's own text reaches the run's failure messages.
    let (message, _) = &parse.failure_messages[0];
    assert!(
        message.starts_with("failed: amount of tx ") && message.ends_with(" overflows"),
        "{message}"
    );

    // Every output arrived exactly once, and they are the right ones.
    assert_eq!(seen.lock().unwrap().len(), want.len());
    let want_sum: u64 = want.iter().map(|(id, doubled)| id * 1_000 + doubled).sum();
    assert_eq!(checksum.load(Ordering::Relaxed), want_sum);

    let text = run.to_string();
    assert!(text.contains(&format!("{filtered} filtered")), "{text}");
    assert!(text.contains(&format!("AtLeast: {filtered} filtered\n")), "{text}");

    // The sink is measured like a stage: a row of its own, one call per completed event. (It
    // is the runtime's call, recorded in the `off` build too; stages are not.)
    assert_eq!(report.stage("sink").expect("a sink row").timing.calls, want.len() as u64);
    if RECORDS_STAGES {
        let at_least = report.stage("AtLeast").expect("a row").timing.calls;
        assert_eq!(at_least, EVENTS - malformed - overflow);
    }
}

#[test]
fn a_sink_slower_than_the_stages_slows_the_workers_and_memory_stays_bounded() {
    let _lock = exclusive();
    // Outputs of 16 KiB each: 4,000 of them piled up would be 64 MiB.
    const EVENTS: u64 = 4_000;
    const OUTPUT_BYTES: usize = 16 * 1024;
    struct Inflate;
    #[stage]
    impl Inflate {
        fn process(&self, id: u64) -> Vec<u8> {
            vec![(id % 251) as u8; OUTPUT_BYTES]
        }
    }
    let pipeline = Pipeline::new().stage(Inflate);
    let (outputs, received) = mpsc::sync_channel::<Vec<u8>>(16);
    let reader = std::thread::spawn(move || {
        let mut sum = 0u64;
        let mut count = 0u64;
        for output in received {
            // The consumer is the slow part: 20 µs per output.
            common::spin_for(Duration::from_micros(20));
            sum += output.iter().map(|&b| u64::from(b)).sum::<u64>();
            count += 1;
        }
        (count, sum)
    });
    pipeline::alloc::reset_peak();
    let before = pipeline::alloc::heap();
    let run = pipeline.run_concurrent_into(0..EVENTS, WorkerConfig::new(2).queue(16), outputs);
    let peak = pipeline::alloc::heap().peak_bytes;
    let run = run.expect("run");
    let (count, sum) = reader.join().expect("reader");
    assert_eq!((run.completed, count), (EVENTS, EVENTS), "every output arrived once");
    let want: u64 = (0..EVENTS).map(|id| (id % 251) * OUTPUT_BYTES as u64).sum();
    assert_eq!(sum, want, "checksum of every byte delivered");
    // Queue (16) + channel (16) + one per worker in flight, with room for the run's own
    // figures: far below the 64 MiB that unbounded outputs would hold.
    let grown = peak.saturating_sub(before.live_bytes);
    assert!(grown < 4 * 1024 * 1024, "peak grew by {grown} bytes");
    // The workers waited on the sink: its time is the run's, named as its own slot.
    assert!(run.latency_split.stage("sink") > 0.0, "{:?}", run.latency_split);
}

#[test]
fn a_slow_sink_is_named_by_the_diagnosis() {
    let _lock = exclusive();
    struct Quick;
    #[stage]
    impl Quick {
        fn process(&self, id: u64) -> u64 {
            id + 1
        }
    }
    let sink = |_: u64| common::spin_for(Duration::from_micros(200));
    let run = Pipeline::new()
        .stage(Quick)
        .run_concurrent_into(0..300, WorkerConfig::new(2).queue(8), sink)
        .expect("run");
    assert!(run.diagnosis.contains("sink"), "{}", run.diagnosis);
}

#[test]
fn a_sink_whose_receiver_is_gone_fails_its_events_and_loses_none() {
    let _lock = exclusive();
    struct Same;
    #[stage]
    impl Same {
        fn process(&self, id: u64) -> u64 {
            id
        }
    }
    let (outputs, received) = mpsc::sync_channel::<u64>(4);
    drop(received);
    let run = Pipeline::new()
        .stage(Same)
        .run_concurrent_into(0..100, WorkerConfig::new(2), outputs)
        .expect("run");
    assert_eq!((run.submitted, run.completed, run.failed), (100, 0, 100));
    let sink = run.stages.last().expect("the sink's entry");
    assert_eq!((sink.name.as_str(), sink.failed), ("sink", 100));
    assert!(sink.failure_messages[0].0.contains("receiver is gone"), "{:?}", sink.failure_messages);
}

#[test]
fn a_panicking_sink_fails_that_event_only() {
    let _lock = exclusive();
    struct Same;
    #[stage]
    impl Same {
        fn process(&self, id: u64) -> u64 {
            id
        }
    }
    let delivered = AtomicU64::new(0);
    let sink = |id: u64| {
        if id % 4 == 0 {
            panic!("sink cannot store {id}");
        }
        delivered.fetch_add(1, Ordering::Relaxed);
    };
    let run = quietly(|| {
        Pipeline::new().stage(Same).run_concurrent_into(0..100, WorkerConfig::new(2), &sink)
    })
    .expect("run");
    assert_eq!((run.completed, run.failed), (75, 25));
    assert_eq!(delivered.load(Ordering::Relaxed), 75);
    assert_eq!(run.stages[1].panicked, 25);
}

/// Drops events it has seen before: generic over the key, so one pipeline can hold two.
struct Dedup<K, F> {
    seen: Mutex<HashSet<K>>,
    key: F,
}

impl<K, F> Dedup<K, F> {
    fn new(key: F) -> Self {
        Dedup { seen: Mutex::new(HashSet::new()), key }
    }

    fn seen(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[stage]
impl<K: Hash + Eq + Send + 'static, F: Fn(&Tx) -> K + Send + Sync> Dedup<K, F> {
    fn process(&self, tx: Tx) -> Result<Tx, StageError> {
        if !self.seen.lock().unwrap().insert((self.key)(&tx)) {
            return Err(StageError::rejected("seen before"));
        }
        Ok(tx)
    }
}

fn by_id(tx: &Tx) -> u64 {
    tx.id
}

fn by_amount(tx: &Tx) -> String {
    tx.amount.to_string()
}

#[test]
fn two_instances_of_a_generic_stage_get_their_own_rows_halts_and_trace_slices() {
    let _lock = exclusive();
    let path = trace_path("typed");
    // Named where they are added.
    let by_id_stage = Arc::new(Dedup::new(by_id));
    let pipeline = Pipeline::new()
        .stage(Parse)
        .stage_named("dedup-ids", Arc::clone(&by_id_stage))
        .stage_named("dedup-amounts", Dedup::new(by_amount));
    // Unnamed: each instantiation is its own row.
    let unnamed =
        Pipeline::new().stage(Parse).stage(Dedup::new(by_id)).stage(Dedup::new(by_amount));
    let names: Vec<String> = unnamed.stage_names().map(str::to_owned).collect();
    let (ids_name, amounts_name) = (&names[1], &names[2]);
    assert!(ids_name.starts_with("Dedup<u64, ") && !ids_name.contains("::"), "{ids_name}");
    assert!(amounts_name.starts_with("Dedup<String, "), "{amounts_name}");

    let profiler = Profiler::new().chrome_trace(&path).start().expect("start");
    // ids 0..40, amounts repeating every 25: the second dedup rejects 15.
    let lines: Vec<String> = (0..40).map(|i| format!("{},{}", i % 30, i % 25)).collect();
    let mut stops = Vec::new();
    for line in &lines {
        if let Err(stop) = pipeline.run(line.clone()) {
            stops.push(stop.stage().to_owned());
        }
    }
    let halts_unnamed: Vec<String> = lines
        .iter()
        .filter_map(|l| unnamed.run(l.clone()).err())
        .map(|h| h.stage().to_owned())
        .collect();
    let run = pipeline.run_concurrent(lines.clone(), WorkerConfig::new(2)).expect("run");
    let report = profiler.finish().expect("finish");

    // ids 30..40 repeat 0..10: dedup-ids rejects them; of the rest, amounts 25..30 repeat.
    assert_eq!(stops.iter().filter(|h| *h == "dedup-ids").count(), 10);
    assert_eq!(stops.iter().filter(|h| *h == "dedup-amounts").count(), 5);
    assert_eq!(halts_unnamed.iter().filter(|h| *h == ids_name).count(), 10);
    assert_eq!(halts_unnamed.iter().filter(|h| *h == amounts_name).count(), 5);
    // The second run through the same (stateful) stages: every line was seen before.
    assert_eq!(run.stages[1].name, "dedup-ids");
    assert_eq!(run.stages[1].rejected, 40);
    // The stage's own state, read after the runs through the Arc the pipeline shares.
    assert_eq!(by_id_stage.seen(), 30);

    if !RECORDS_STAGES {
        return;
    }
    for (name, calls) in [("dedup-ids", 80), ("dedup-amounts", 30)] {
        let row = report.stage(name).unwrap_or_else(|| panic!("a row for {name}"));
        assert_eq!(row.timing.calls, calls, "{name}");
    }
    assert_eq!(report.stage(ids_name).unwrap().timing.calls, 40);
    assert_eq!(report.stage(amounts_name).unwrap().timing.calls, 30);

    let events = load_trace(&path);
    let all = slices(&events);
    assert_eq!(count(&all, "dedup-ids"), 80);
    assert_eq!(count(&all, "dedup-amounts"), 30);
    // A filter or a stop is an instant naming its stage; stops name the instance.
    let rejected: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["ph"] == "i" && e["name"] == "rejected").collect();
    assert!(rejected.iter().any(|e| e["args"]["stage"] == "dedup-ids"));
    write_expectations(&path, &report);
}

#[test]
fn filtered_events_are_instants_and_a_custom_errors_text_is_on_its_slice() {
    let _lock = exclusive();
    let path = trace_path("typed-filtered");
    let pipeline = Pipeline::new().stage(Parse).stage(AtLeast(50));
    let profiler = Profiler::new().chrome_trace(&path).start().expect("start");
    let lines = ["1,10", "2,60", "3,overflow", "x"].map(String::from);
    let run = pipeline.run_concurrent(lines, WorkerConfig::new(1)).expect("run");
    let report = profiler.finish().expect("finish");
    assert_eq!((run.completed, run.filtered, run.failed, run.rejected), (1, 1, 1, 1));
    let events = load_trace(&path);
    let instant = |name: &str| {
        events.iter().filter(|e| e["ph"] == "i" && e["name"] == name).cloned().collect::<Vec<_>>()
    };
    let filtered = instant("filtered");
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0]["args"]["stage"], "AtLeast");
    let failed = instant("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["args"]["error"], "failed: amount of tx 3 overflows");
    if !RECORDS_STAGES {
        return;
    }
    let slices = slices(&events);
    let parse_outcomes: Vec<&str> = slices
        .iter()
        .filter(|s| s.name == "Parse")
        .filter_map(|s| s.args["outcome"].as_str())
        .collect();
    assert!(parse_outcomes.contains(&"failed: amount of tx 3 overflows"), "{parse_outcomes:?}");
    assert!(parse_outcomes.contains(&"rejected: malformed line \"x\""), "{parse_outcomes:?}");
    assert_eq!(report.stage("AtLeast").unwrap().timing.calls, 2);
    write_expectations(&path, &report);
}

#[test]
fn a_worker_pool_hands_outputs_to_its_sink_and_counts_filtered_events() {
    let _lock = exclusive();
    let pipeline = Arc::new(Pipeline::new().stage(Parse).stage(AtLeast(50)));
    let (outputs, received) = mpsc::sync_channel::<Tx>(8);
    let reader = std::thread::spawn(move || received.iter().map(|tx| tx.id).collect::<Vec<_>>());
    let pool = WorkerPool::start_with_sink(pipeline, WorkerConfig::new(2).queue(4), outputs)
        .expect("start");
    for i in 0..200u64 {
        pool.submit(format!("{i},{}", i % 100)).expect("open");
    }
    let run = pool.join().expect("join");
    let mut ids = reader.join().expect("reader");
    ids.sort_unstable();
    let want: Vec<u64> = (0..200).filter(|i| i % 100 >= 50).collect();
    assert_eq!(ids, want);
    assert_eq!((run.completed, run.filtered), (100, 100));
    assert_eq!(run.submitted, run.completed + run.filtered + run.rejected + run.failed);
}

#[test]
fn a_hand_written_stage_changes_the_type_and_filters_too() {
    use pipeline::{Stage, StageResult};
    struct Words;
    impl Stage<&'static str> for Words {
        type Out = Vec<&'static str>;
        fn name(&self) -> &str {
            "Words"
        }
        fn process(&self, line: &'static str) -> StageResult<Vec<&'static str>> {
            let words: Vec<&str> = line.split_whitespace().collect();
            Ok((!words.is_empty()).then_some(words))
        }
    }
    let pipeline = Pipeline::new().stage(Words);
    assert_eq!(pipeline.run("a b").unwrap(), Some(vec!["a", "b"]));
    assert_eq!(pipeline.run("  ").unwrap(), None);
}

#[test]
fn a_stage_error_is_a_std_error_through_halt_and_box() {
    let pipeline = Pipeline::new().stage(Parse);
    let stop = pipeline.run("5,overflow".to_owned()).unwrap_err();
    let source = std::error::Error::source(&stop).expect("the stage's own error as source");
    assert_eq!(source.to_string(), "amount of tx 5 overflows");
    let boxed: Box<dyn std::error::Error + Send + Sync> = stop.into_error().into();
    assert_eq!(boxed.to_string(), "failed: amount of tx 5 overflows");
    assert!(std::error::Error::source(&*boxed).is_some());
    let rejected = pipeline.run("nope".to_owned()).unwrap_err();
    assert!(matches!(rejected.error(), StageError::Rejected { .. }));
}

/// Turns every event away with a fixed reason.
struct TurnAway;

#[stage]
impl TurnAway {
    fn process(&self, _: u64) -> Result<u64, StageError> {
        Err(StageError::rejected("closed"))
    }
}

#[test]
fn a_rejected_event_allocates_nothing_for_its_halt() {
    let _lock = exclusive();
    let pipeline = Pipeline::new().stage_named("turn-away", TurnAway);
    let rejections = |pipeline: &Pipeline<u64>| {
        let _ = pipeline.run(0); // anything the first call sets up once
        let region = pipeline::alloc::ThreadRegion::new();
        for event in 0..100 {
            let stop = pipeline.run(event).unwrap_err();
            assert_eq!(stop.stage(), "turn-away");
        }
        region.change().allocations
    };
    assert_eq!(rejections(&pipeline), 0, "not profiled");
    let profiler = Profiler::new().start().expect("start");
    assert_eq!(rejections(&pipeline), 0, "recorded: the user's figures show no allocation");
    profiler.finish().expect("finish");
}
