//! The flight recorder: the last seconds of trace kept in bounded memory, nothing written until
//! a trigger fires, and each dump a complete Chrome trace of the window before it (and the tail
//! after). Dumps are copied into `target/tmp/traces/` for `.ci/run` to check with a
//! Perfetto-style importer (`--strict`).
#![cfg(not(feature = "off"))] // asserts recorded figures; `tests/off.rs` covers the off build

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{exclusive, load_trace, quietly, rss_bytes, slices, spin_for};
use pipeline::trace::{DumpTrigger, FlightDump, FlightRecorder};
use pipeline::{
    profiled, stage, CountingAllocator, Error, Pipeline, Profiler, WorkerConfig, WorkerPool,
};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

/// Spins ~100 µs; sleeps 50 ms per call while `SLOW` is set; panics on events from
/// [`EXPLODES`] on (never, unless a test submits one).
struct Score;

static SLOW: AtomicBool = AtomicBool::new(false);
const EXPLODES: u64 = 1 << 62;

#[stage]
impl Score {
    fn process(&self, event: u64) -> u64 {
        if event >= EXPLODES {
            panic!("score exploded on {event}");
        }
        if SLOW.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        weigh(event)
    }
}

#[profiled]
fn weigh(event: u64) -> u64 {
    spin_for(Duration::from_micros(100));
    event.wrapping_mul(31)
}

/// An empty directory for one test's dumps.
fn dump_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("flight").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|entry| entry.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Leaves a copy of `dump` where `.ci/run` checks traces with the Perfetto-style importer.
fn keep_for_ci(dump: &FlightDump, name: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("traces");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&dump.path, dir.join(format!("{name}.json"))).unwrap();
    std::fs::write(dir.join(format!("{name}.expect")), "--strict").unwrap();
}

/// Feeds `pool` as fast as it takes events until `until` says stop; returns how many.
fn feed(pool: &WorkerPool<u64>, mut until: impl FnMut(u64) -> bool) -> u64 {
    let mut next = 1;
    while !until(next) {
        pool.submit(next).expect("the pool is open");
        next += 1;
    }
    next - 1
}

/// The metrics endpoint's answer at `address`.
fn scrape(address: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// The trailer's `flight_recorder_window` entry of a dump.
fn window_note(events: &[serde_json::Value]) -> serde_json::Value {
    events
        .iter()
        .find(|e| e["name"] == "pipeline_profile")
        .map(|e| e["args"]["flight_recorder_window"].clone())
        .expect("the dump's metadata entry")
}

#[test]
fn a_dump_on_demand_holds_the_whole_window_before_it_and_every_slice_in_it_is_complete() {
    let _lock = exclusive();
    let dir = dump_dir("on_demand");
    let window = Duration::from_millis(1_000);
    let flight = FlightRecorder::new(window).dir(&dir);
    let session = Profiler::new().flight_recorder(flight).start().unwrap();
    let pool =
        WorkerPool::start(Arc::new(Pipeline::new().stage(Score)), WorkerConfig::new(2)).unwrap();
    let started = Instant::now();
    let fed = feed(&pool, |_| started.elapsed() > Duration::from_millis(2_500));
    assert!(files_in(&dir).is_empty(), "nothing is written until asked");
    let dump = session.dump("checked").expect("dumped");
    pool.join().unwrap();
    let report = session.finish().unwrap();

    assert_eq!(report.stage("Score").unwrap().timing.calls, fed, "statistics see every call");
    let flight = report.flight.clone().expect("the report has the flight recorder's dumps");
    assert_eq!(flight.dumps, vec![dump.clone()]);
    let text = report.to_string();
    assert!(text.contains("Flight recorder: kept the last 1.00 s"), "{text}");
    assert!(text.contains(&format!("{} (asked for: checked)", dump.path.display())), "{text}");
    assert_eq!(dump.trigger, DumpTrigger::OnDemand { reason: "checked".into() });
    let name = dump.path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("flight-20") && name.ends_with("-on-demand-checked.json"), "{name}");
    assert!(dump.complete_before_trigger >= window, "{:?}", dump.complete_before_trigger);
    // One thread wrote it: its CPU time is some, and no more than the time it took (+ a tick).
    assert!(
        dump.cpu_time > Duration::ZERO
            && dump.cpu_time <= dump.write_time + Duration::from_millis(10),
        "{dump:?}"
    );
    assert!(text.contains("of CPU)"), "{text}");

    let events = load_trace(&dump.path);
    let kept = slices(&events); // panics on a slice without its begin or its end
    let note = window_note(&events);
    let triggered_us = note["triggered_at_us"].as_f64().unwrap();
    let events_kept: Vec<_> = kept.iter().filter(|s| s.name == "event").collect();
    let first_us = events_kept.iter().map(|s| s.ts).fold(f64::INFINITY, f64::min);
    assert!(
        first_us <= triggered_us - window.as_secs_f64() * 1e6,
        "the dump starts {} ms before the trigger",
        (triggered_us - first_us) / 1e3
    );
    assert!(events_kept.len() as u64 <= fed, "no event twice");
    let scores = kept.iter().filter(|s| s.name == "Score").count();
    // Each event's stage is in it with the event, but at the edges: per worker, an event whose
    // begin was let go with the oldest records (its stage is kept), and one running when the
    // window was taken (its stage may not have begun).
    assert!(
        scores.abs_diff(events_kept.len()) <= 4,
        "{scores} stages, {} events",
        events_kept.len()
    );
    // `pipeline-prof summary` reads a dump like a whole trace, and says it is a window.
    let profile = pipeline::analysis::Profile::read(&dump.path).expect("a dump reads as a trace");
    let read = profile.trace_read().expect("read from a trace");
    let window_read = read.extras.flight_window.as_ref().expect("the window is declared");
    assert_eq!(window_read.window_ms, 1_000.0);
    // Calls still running when the window was taken end there, marked unfinished; the
    // summary leaves those out of its figures.
    let finished = kept.iter().filter(|s| s.name == "Score" && s.args["unfinished"] != true);
    assert_eq!(profile.row(None, "Score").unwrap().timing.calls, finished.count() as u64);
    let summary = profile.to_string();
    assert!(summary.contains("A flight recorder window, not a whole run"), "{summary}");
    assert!(summary.contains("asked for: checked"), "{summary}");
    keep_for_ci(&dump, "flight_on_demand");
}

/// Rejects every third event, naming it: each rejection writes an outcome text on the stage's
/// slice and a `rejected` instant with the same reason, both texts of the worker's thread.
struct RejectThirds;

#[stage]
impl RejectThirds {
    fn process(&self, event: u64) -> Result<u64, pipeline::StageError> {
        spin_for(Duration::from_micros(5));
        if event % 3 == 0 {
            return Err(pipeline::StageError::rejected(format!("event {event}")));
        }
        Ok(event)
    }
}

#[test]
fn texts_stay_with_their_records_across_dumps_and_chunks_the_window_lets_go() {
    // A dump reads the part of each thread's current chunk not read before; the chunk, kept
    // later, holds records read and unread, and the window takes as many texts for it as its
    // unread records have. Off by one, every later outcome of that thread lands on the wrong
    // slice, wherever the window lets go of the chunk before. The smallest memory makes the
    // window let go of its oldest chunks (first the ones a dump read mid-fill) well within the
    // 250 ms between dumps.
    let _lock = exclusive();
    let dir = dump_dir("texts");
    let flight = FlightRecorder::new(Duration::from_secs(2)).max_bytes(1 << 20).dir(&dir);
    let session = Profiler::new().flight_recorder(flight).start().unwrap();
    let pool =
        WorkerPool::start(Arc::new(Pipeline::new().stage(RejectThirds)), WorkerConfig::new(2))
            .unwrap();
    let mut dumps = Vec::new();
    let mut id_offset = None;
    let mut next = 1; // events count on across rounds: each names one event
    for round in 0..8 {
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(250) {
            pool.submit(next).expect("the pool is open");
            next += 1;
        }
        dumps.push(session.dump(&format!("texts-{round}")).expect("dumped"));
    }
    pool.join().unwrap();
    session.finish().unwrap();
    for dump in &dumps {
        let events = load_trace(&dump.path); // valid JSON, or this fails
                                             // Each thread's `rejected` instants, in time order, with their reasons.
        let mut instants: HashMap<u64, Vec<(f64, String)>> = HashMap::new();
        for instant in events.iter().filter(|e| e["ph"] == "i" && e["name"] == "rejected") {
            let reason = instant["args"]["reason"].as_str().expect("its own arguments");
            let at = (instant["ts"].as_f64().unwrap(), reason.to_owned());
            instants.entry(instant["tid"].as_u64().unwrap()).or_default().push(at);
        }
        for list in instants.values_mut() {
            list.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let kept = slices(&events);
        // Each thread's event slices, in time order, with their ids.
        let mut event_ids: HashMap<u64, Vec<(f64, u64)>> = HashMap::new();
        for event in kept.iter().filter(|s| s.name == "event") {
            let id = event.args["id"].as_u64().expect("an event's id");
            event_ids.entry(event.tid).or_default().push((event.ts, id));
        }
        for list in event_ids.values_mut() {
            list.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let rejected: Vec<_> = kept
            .into_iter()
            .filter(|s| s.name == "RejectThirds" && s.args["outcome"].is_string())
            .collect();
        assert!(rejected.len() > 20, "{} rejected calls in {:?}", rejected.len(), dump.path);
        let mut last_call: HashMap<u64, f64> = HashMap::new();
        for slice in &rejected {
            let last = last_call.entry(slice.tid).or_insert(slice.ts);
            *last = last.max(slice.ts);
        }
        for slice in &rejected {
            let outcome = slice.args["outcome"].as_str().unwrap();
            let reason = outcome.strip_prefix("rejected: ").unwrap_or_else(|| panic!("{outcome}"));
            let event: u64 = reason.strip_prefix("event ").unwrap().parse().unwrap();
            assert_eq!(event % 3, 0, "{reason}: a rejected event's own reason");
            // The event the call was in (the last on its thread to begin before it) was
            // submitted as `event`: ids count submissions, so they differ by a constant.
            let events_of_thread = &event_ids[&slice.tid];
            let within = events_of_thread.partition_point(|(ts, _)| *ts <= slice.ts);
            if within > 0 {
                let id = events_of_thread[within - 1].1;
                let offset = *id_offset.get_or_insert(event.wrapping_sub(id));
                assert_eq!(
                    event.wrapping_sub(id),
                    offset,
                    "the call at {} us in event {id} says {reason:?} ({:?})",
                    slice.ts,
                    dump.path
                );
            }
            // The thread's next `rejected` instant after the call began is this event's (the
            // thread's last call may have ended just before the window was taken, and its
            // instant, written next, after).
            let list = &instants[&slice.tid];
            let next = list.partition_point(|(ts, _)| *ts < slice.ts);
            if next == list.len() && last_call[&slice.tid] == slice.ts {
                continue;
            }
            assert_eq!(
                list.get(next).map(|(_, r)| r.as_str()),
                Some(reason),
                "the outcome of the call at {} us in {:?}",
                slice.ts,
                dump.path
            );
        }
    }
    keep_for_ci(&dumps[7], "flight_texts");
}

#[test]
fn asking_for_a_dump_without_a_flight_recorder_or_with_a_full_trace_too_is_a_clear_error() {
    let _lock = exclusive();
    let session = Profiler::new().start().unwrap();
    let error = session.dump("why").unwrap_err();
    assert!(error.to_string().contains("Profiler::flight_recorder"), "{error}");
    session.finish().unwrap();

    let both = Profiler::new()
        .chrome_trace(dump_dir("both").join("trace.json"))
        .flight_recorder(FlightRecorder::new(Duration::from_secs(1)))
        .start();
    assert!(matches!(both, Err(Error::InvalidConfig(why)) if why.contains("choose one")));
    // Nothing was left running: another session starts.
    Profiler::new().start().unwrap().finish().unwrap();
}

#[test]
fn an_unwritable_directory_is_an_error_naming_the_file_and_the_session_goes_on() {
    let _lock = exclusive();
    let blocker = dump_dir("unwritable");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, "a file where the directory should be").unwrap();
    let flight = FlightRecorder::new(Duration::from_secs(1)).dir(blocker.join("dumps"));
    let session = Profiler::new().flight_recorder(flight).start().unwrap();
    Pipeline::new().stage(Score).run(1).unwrap();
    let error = session.dump("first").unwrap_err();
    assert!(matches!(&error, Error::Write { path, .. } if path.starts_with(&blocker)), "{error}");
    Pipeline::new().stage(Score).run(2).unwrap();
    let report = session.finish().unwrap();
    assert_eq!(report.stage("Score").unwrap().timing.calls, 2);
    let flight = report.flight.unwrap();
    assert!(flight.dumps.is_empty());
    assert_eq!(flight.failed.len(), 1, "{:?}", flight.failed);
    let _ = std::fs::remove_file(&blocker);
}

#[test]
fn a_stage_slow_for_a_second_writes_exactly_one_dump_holding_that_second() {
    let _lock = exclusive();
    let dir = dump_dir("latency");
    let flight = FlightRecorder::new(Duration::from_secs(2))
        .dir(&dir)
        .when_p99_over("Score", Duration::from_millis(30))
        .tail(Duration::from_millis(1_300))
        .max_bytes(64 << 20);
    let session = Profiler::new().flight_recorder(flight).start().unwrap();
    let pool =
        WorkerPool::start(Arc::new(Pipeline::new().stage(Score)), WorkerConfig::new(2)).unwrap();
    let started = Instant::now();
    let mut slow_from = None;
    let mut slow_until = None;
    feed(&pool, |_| {
        let now = started.elapsed();
        if now > Duration::from_millis(2_500) && slow_from.is_none() {
            SLOW.store(true, Ordering::Relaxed);
            slow_from = Some(Instant::now());
        }
        if now > Duration::from_millis(3_500) && slow_until.is_none() {
            SLOW.store(false, Ordering::Relaxed);
            slow_until = Some(Instant::now());
        }
        now > Duration::from_millis(6_000)
    });
    pool.join().unwrap();
    let report = session.finish().unwrap();
    SLOW.store(false, Ordering::Relaxed);

    let flight = report.flight.unwrap();
    assert_eq!(flight.dumps.len(), 1, "one incident, one dump: {:?}", flight.dumps);
    let dump = &flight.dumps[0];
    assert!(matches!(&dump.trigger, DumpTrigger::Latency { stage, .. } if stage == "Score"));
    assert_eq!(files_in(&dir), vec![dump.path.clone()]);
    let kept = slices(&load_trace(&dump.path));
    let slow: Vec<_> = kept.iter().filter(|s| s.name == "Score" && s.dur >= 50_000.0).collect();
    let span_us = |from: f64, to: f64| (to - from) / 1e3;
    let first = slow.iter().map(|s| s.ts).fold(f64::INFINITY, f64::min);
    let last = slow.iter().map(|s| s.ts + s.dur).fold(0.0, f64::max);
    // The slow second is in it whole: its slow calls span (nearly) a second.
    let slow_for = slow_until.unwrap() - slow_from.unwrap();
    assert!(
        span_us(first, last) >= slow_for.as_secs_f64() * 1e3 - 120.0,
        "slow calls span {} ms of the {slow_for:?} slow",
        span_us(first, last)
    );
    keep_for_ci(dump, "flight_latency");
}

#[test]
fn a_panicking_stage_writes_a_dump_and_later_panics_within_the_cooldown_are_counted() {
    let _lock = exclusive();
    let dir = dump_dir("panic");
    let flight = FlightRecorder::new(Duration::from_secs(1))
        .dir(&dir)
        .on_stage_panic(true)
        .tail(Duration::from_millis(100));
    let session =
        Profiler::new().flight_recorder(flight).serve_metrics("127.0.0.1:0").start().unwrap();
    let pool =
        WorkerPool::start(Arc::new(Pipeline::new().stage(Score)), WorkerConfig::new(2)).unwrap();
    quietly(|| {
        for event in 1..=2_000u64 {
            pool.submit(event).unwrap();
        }
        pool.submit(EXPLODES + 1).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        pool.submit(EXPLODES + 2).unwrap();
        std::thread::sleep(Duration::from_millis(400));
    });
    // The metrics endpoint says how many dumps, and where the last went.
    let metrics = scrape(session.metrics_address().unwrap());
    let written = session.flight_dumps();
    assert!(
        metrics.contains("pipeline_flight_dumps_total{trigger=\"panic-Score\"} 1"),
        "{metrics}"
    );
    let path = written[0].path.display().to_string();
    assert!(metrics.contains(&format!("path=\"{path}\"")), "{metrics}");
    pool.join().unwrap();
    let report = session.finish().unwrap();

    let flight = report.flight.unwrap();
    assert_eq!(flight.dumps.len(), 1, "{:?}", flight.dumps);
    assert_eq!(flight.dumps[0].trigger, DumpTrigger::StagePanicked { stage: "Score".into() });
    assert_eq!(flight.triggers_in_cooldown, 1, "the second panic came within the cooldown");
    let events = load_trace(&flight.dumps[0].path);
    let panics: Vec<_> = events.iter().filter(|e| e["name"] == "panic").collect();
    assert_eq!(panics.len(), 1, "the panic's instant is in the dump");
    assert!(panics[0]["args"]["message"].as_str().unwrap().contains(&(EXPLODES + 1).to_string()));
    slices(&events);
    keep_for_ci(&flight.dumps[0], "flight_panic");
}

#[test]
fn a_queue_full_for_longer_than_its_limit_writes_a_dump() {
    let _lock = exclusive();
    let dir = dump_dir("queue_full");
    let flight = FlightRecorder::new(Duration::from_secs(1))
        .dir(&dir)
        .when_queue_full_for(Duration::from_millis(200))
        .tail(Duration::from_millis(100));
    let session = Profiler::new().flight_recorder(flight).start().unwrap();
    let pool =
        WorkerPool::start(Arc::new(Pipeline::new().stage(Score)), WorkerConfig::new(1).queue(8))
            .unwrap();
    SLOW.store(true, Ordering::Relaxed); // 50 ms per event: the queue fills and stays full
    for event in 1..=20u64 {
        pool.submit(event).unwrap();
    }
    SLOW.store(false, Ordering::Relaxed);
    pool.join().unwrap();
    let report = session.finish().unwrap();
    let flight = report.flight.unwrap();
    assert_eq!(flight.dumps.len(), 1, "{flight:?} {:?}", report.runs[0].queue);
    let DumpTrigger::QueueFull { for_ns } = flight.dumps[0].trigger else {
        panic!("{:?}", flight.dumps[0].trigger)
    };
    assert!(for_ns >= 200_000_000, "{for_ns}");
    let events = load_trace(&flight.dumps[0].path);
    let depths: Vec<f64> = events
        .iter()
        .filter(|e| e["ph"] == "C" && e["name"] == "queue")
        .filter_map(|e| e["args"]["depth"].as_f64())
        .collect();
    assert!(depths.iter().any(|&d| d >= 8.0), "the queue filling is in the dump: {depths:?}");
    slices(&events);
    keep_for_ci(&flight.dumps[0], "flight_queue_full");
}

#[cfg(target_os = "linux")]
#[test]
fn sigusr2_writes_a_dump_and_the_signal_is_ours_only_while_the_session_runs() {
    let _lock = exclusive();
    let dir = dump_dir("signal");
    let flight = FlightRecorder::new(Duration::from_secs(1))
        .dir(&dir)
        .on_signal(true)
        .tail(Duration::from_millis(50));
    let session = Profiler::new().flight_recorder(flight).start().unwrap();
    Pipeline::new().stage(Score).run(7).unwrap();
    // SAFETY: raising a signal whose handler the session installed.
    assert_eq!(unsafe { libc::raise(libc::SIGUSR2) }, 0);
    let waited = Instant::now();
    while session.flight_dumps().is_empty() && waited.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = session.finish().unwrap();
    let flight = report.flight.unwrap();
    assert_eq!(flight.dumps.len(), 1);
    assert_eq!(flight.dumps[0].trigger, DumpTrigger::Signal);
    let kept = slices(&load_trace(&flight.dumps[0].path));
    assert_eq!(kept.iter().filter(|s| s.name == "Score").count(), 1);
    // The previous disposition (the default) is back.
    // SAFETY: reads the disposition into a zeroed `sigaction`.
    let now = unsafe {
        let mut now: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut now), 0);
        now
    };
    assert_eq!(now.sa_sigaction, libc::SIG_DFL);
}

/// A run at full speed for `FLIGHT_SOAK_SECS` seconds (6 unless set; `.ci/run` sets 60) with a
/// 2 s window: the flight recorder's memory stays within `max_bytes` and a small constant
/// (the texts' budget, a thread's buffers), nothing is written until the dump, and the dump at
/// the end holds at least the 2 s before it, every slice whole.
#[cfg(target_os = "linux")]
#[test]
fn a_long_run_at_full_speed_keeps_the_window_in_bounded_memory() {
    let _lock = exclusive();
    let seconds: u64 =
        std::env::var("FLIGHT_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let dir = dump_dir("soak");
    let max_bytes = 128 << 20;
    let window = Duration::from_secs(2);
    let flight = FlightRecorder::new(window).dir(&dir).max_bytes(max_bytes);
    let rss_before = rss_bytes();
    let session = Profiler::new().flight_recorder(flight).start().unwrap();
    let pool =
        WorkerPool::start(Arc::new(Pipeline::new().stage(Score)), WorkerConfig::new(2)).unwrap();
    let started = Instant::now();
    let (mut most_profiler_bytes, mut most_rss) = (0, 0);
    let mut last_look = Instant::now();
    let fed = feed(&pool, |_| {
        if last_look.elapsed() > Duration::from_millis(50) {
            last_look = Instant::now();
            most_profiler_bytes = most_profiler_bytes.max(pipeline::alloc::heap().profiler_bytes);
            most_rss = most_rss.max(rss_bytes());
            assert!(files_in(&dir).is_empty(), "nothing is written until a trigger");
        }
        started.elapsed() > Duration::from_secs(seconds)
    });
    let dump = session.dump("soak").unwrap();
    pool.join().unwrap();
    let report = session.finish().unwrap();

    assert_eq!(report.stage("Score").unwrap().timing.calls, fed);
    // The texts' budget (8 MiB, unused here) and a few MiB of thread buffers and tables.
    let constant = 8 << 20;
    assert!(
        most_profiler_bytes <= max_bytes as u64 + constant,
        "the profiler held {} MiB for a {} MiB flight recorder",
        most_profiler_bytes >> 20,
        max_bytes >> 20
    );
    let grown = most_rss.saturating_sub(rss_before);
    assert!(
        grown <= max_bytes as u64 + 2 * constant,
        "resident memory grew by {} MiB for a {} MiB flight recorder",
        grown >> 20,
        max_bytes >> 20
    );
    assert!(dump.complete_before_trigger >= window, "{:?}", dump.complete_before_trigger);
    let events = load_trace(&dump.path);
    let kept = slices(&events);
    let triggered_us = window_note(&events)["triggered_at_us"].as_f64().unwrap();
    let first_us = kept.iter().map(|s| s.ts).fold(f64::INFINITY, f64::min);
    assert!(first_us <= triggered_us - 2e6, "{} ms before", (triggered_us - first_us) / 1e3);
    eprintln!(
        "{seconds} s, {fed} events; profiler memory at most {} MiB, RSS +{} MiB; dump {} slices \
         ({} MiB) complete {:?} back, written in {:?} ({:?} of CPU)",
        most_profiler_bytes >> 20,
        grown >> 20,
        dump.slices,
        std::fs::metadata(&dump.path).unwrap().len() >> 20,
        dump.complete_before_trigger,
        dump.write_time,
        dump.cpu_time
    );
}

#[test]
fn finishing_the_session_dumps_when_asked_to_on_exit() {
    let _lock = exclusive();
    let dir = dump_dir("exit");
    let flight = FlightRecorder::new(Duration::from_secs(1)).dir(&dir).on_exit(true);
    let session = Profiler::new().flight_recorder(flight).start().unwrap();
    Pipeline::new().stage(Score).run(3).unwrap();
    assert!(files_in(&dir).is_empty());
    let report = session.finish().unwrap();
    let flight = report.flight.unwrap();
    assert_eq!(flight.dumps.len(), 1);
    assert_eq!(flight.dumps[0].trigger, DumpTrigger::Exit);
    assert!(flight.dumps[0].path.to_string_lossy().ends_with("-exit.json"));
    let kept = slices(&load_trace(&flight.dumps[0].path));
    assert_eq!(kept.iter().filter(|s| s.name == "Score").count(), 1);
}

/// An async stage: awaits a yield between two halves of its work.
struct Fetch;

#[stage]
impl Fetch {
    async fn process(&self, event: u64) -> u64 {
        common::YieldTimes(2).await;
        event + 1
    }
}

/// Async events span threads and polls: a window cut through them still holds only whole
/// slices (an async end whose begin was let go is dropped, a call still running ends marked
/// unfinished), and every event in it keeps its stages on its own track.
#[test]
fn a_dump_of_async_events_holds_whole_async_slices() {
    let _lock = exclusive();
    let dir = dump_dir("async");
    let flight = FlightRecorder::new(Duration::from_millis(300))
        .dir(&dir)
        .tail(Duration::ZERO)
        .max_bytes(4 << 20);
    let session = Profiler::new().flight_recorder(flight).start().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let pipeline = Arc::new(pipeline::AsyncPipeline::new().stage_async(Fetch).stage(Score));
    let started = Instant::now();
    let mut runs = 0;
    while started.elapsed() < Duration::from_millis(1_500) {
        runtime
            .block_on(pipeline.run_concurrent(0..2_000u64, WorkerConfig::new(8).queue(64)))
            .unwrap();
        runs += 1;
    }
    let dump = session.dump("async").unwrap();
    let report = session.finish().unwrap();
    assert_eq!(report.stage("Fetch").unwrap().timing.calls, runs * 2_000);
    let kept = slices(&load_trace(&dump.path)); // panics on an async end without its begin
    let events = kept.iter().filter(|s| s.is_async && s.name == "event").count();
    let fetches: Vec<_> = kept.iter().filter(|s| s.name == "Fetch").collect();
    assert!(events > 100, "{events} async events in the window");
    assert!(
        fetches.iter().filter(|s| s.parents.first().is_some_and(|p| p == "event")).count()
            >= fetches.len().saturating_sub(16),
        "async stages nest in their event (but at the window's edges)"
    );
    keep_for_ci(&dump, "flight_async");
}
