//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod pprof;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The profiler is process-wide: tests that run instrumented code take this lock so that one
/// test's calls never land in another test's report.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `target/tmp/<name>` (the build's scratch space), created if missing: where tests write what
/// they produce.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// `target/tmp/traces`: the traces tests write, which `.ci/run` checks the way Perfetto reads
/// them.
pub fn trace_dir() -> PathBuf {
    scratch_dir("traces")
}

/// The process's resident memory now, bytes (Linux's `/proc/self/status`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    let kib: u64 = line.split_whitespace().nth(1).expect("a figure").parse().expect("a number");
    kib * 1024
}

/// Runs `f` with the panic hook silenced: stages that panic on purpose would print a message and
/// a backtrace per event.
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = f();
    std::panic::set_hook(hook);
    result
}

/// Writes the `--expect NAME=COUNT` arguments `.ci/run` passes to the Perfetto-style checker
/// beside `trace`: one per stage of `report`, and `--strict` (the native writer's traces have no
/// warnings at all).
pub fn write_expectations(trace: &std::path::Path, report: &pipeline::Report) {
    let mut lines: Vec<String> = report
        .stages
        .iter()
        .map(|stage| format!("--expect={}={}", stage.name, stage.timing.calls))
        .collect();
    lines.push("--strict".to_owned());
    std::fs::write(trace.with_extension("expect"), lines.join("\n")).expect("expect file");
}

/// Burns CPU for `duration` (a spin, not a sleep, so it is "work").
pub fn spin_for(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

/// Polls a future to completion on this thread, counting the polls.
pub fn block_on<F: std::future::Future>(future: F) -> (F::Output, usize) {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    let mut polls = 0;
    loop {
        polls += 1;
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return (output, polls);
        }
    }
}

/// A future that is pending `n` times before it completes (waking itself each time).
pub struct YieldTimes(pub usize);

impl std::future::Future for YieldTimes {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            Poll::Ready(())
        } else {
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// One slice of a Chrome trace, nested the way Perfetto's importer nests them.
#[derive(Clone, Debug)]
pub struct Slice {
    pub tid: u64,
    pub name: String,
    pub cat: Option<String>,
    pub ts: f64,
    pub dur: f64,
    /// Slices enclosing it on its thread (0: top level), or on its async track.
    pub depth: usize,
    /// The names of the enclosing slices, outermost first.
    pub parents: Vec<String>,
    pub args: serde_json::Value,
    /// `b`/`e` async slice.
    pub is_async: bool,
    /// `bind_id` with `flow_in` / `flow_out`.
    pub flow_in: Option<u64>,
    pub flow_out: Option<u64>,
}

/// Reads a trace file as JSON (an array of events), panicking with the reason if it is not.
pub fn load_trace(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("trace file");
    serde_json::from_str::<Vec<serde_json::Value>>(&text)
        .expect("the trace is one valid JSON array")
}

/// Every slice of `events`: `X` slices nest by time per thread, `B`/`E` by order, `b`/`e` by
/// category and id (an async track: its slices nest, and must end innermost first).
/// Panics on what Perfetto would flag: an `E` without a begin, a slice that never ends, a
/// complete slice that overlaps its parent's end.
pub fn slices(events: &[serde_json::Value]) -> Vec<Slice> {
    use serde_json::Value;
    let mut sorted: Vec<&Value> = events
        .iter()
        .filter(|e| matches!(e["ph"].as_str(), Some("X" | "B" | "E" | "b" | "e")))
        .collect();
    // Perfetto's order: by time; at one time, ends first, then longer complete slices first.
    let key = |e: &Value| {
        let rank = match e["ph"].as_str() {
            Some("E") => 0.0,
            Some("X") => 1.0 / (1.0 + e["dur"].as_f64().unwrap_or(0.0)),
            _ => 2.0,
        };
        (e["ts"].as_f64().expect("ts"), rank)
    };
    sorted.sort_by(|a, b| key(a).partial_cmp(&key(b)).unwrap());
    let mut out = Vec::new();
    let mut stacks: std::collections::HashMap<u64, Vec<(usize, f64)>> = Default::default();
    let mut asyncs: std::collections::HashMap<(String, u64), usize> = Default::default();
    let mut async_tracks: std::collections::HashMap<(String, u64), Vec<usize>> = Default::default();
    for e in sorted {
        let tid = e["tid"].as_u64().expect("numeric tid");
        let ts = e["ts"].as_f64().unwrap();
        let ph = e["ph"].as_str().unwrap();
        let stack = stacks.entry(tid).or_default();
        // Complete slices that ended by now close.
        while let Some(&(index, end)) = stack.last() {
            if end.is_finite() && end <= ts && !(ph == "X" && e["dur"] == 0.0 && end == ts) {
                stack.pop();
                let _ = index;
            } else {
                break;
            }
        }
        let bind = e["bind_id"].as_u64();
        let slice = |depth, parents: Vec<String>, dur, is_async| Slice {
            tid,
            name: e["name"].as_str().unwrap_or("").to_owned(),
            cat: e["cat"].as_str().map(str::to_owned),
            ts,
            dur,
            depth,
            parents,
            args: e["args"].clone(),
            is_async,
            flow_in: bind.filter(|_| e["flow_in"] == true),
            flow_out: bind.filter(|_| e["flow_out"] == true),
        };
        let parents = |stack: &Vec<(usize, f64)>, out: &Vec<Slice>| {
            stack.iter().map(|(i, _)| out[*i].name.clone()).collect::<Vec<_>>()
        };
        match ph {
            "X" => {
                let dur = e["dur"].as_f64().expect("dur");
                if let Some(&(_, parent_end)) = stack.last() {
                    // Within the file's resolution (1 ns): microseconds near 2e7 add up inexactly in f64.
                    assert!(ts + dur <= parent_end + 1e-3, "slice overlaps its parent's end: {e}");
                }
                let p = parents(stack, &out);
                out.push(slice(stack.len(), p, dur, false));
                stack.push((out.len() - 1, ts + dur));
            }
            "B" => {
                let p = parents(stack, &out);
                out.push(slice(stack.len(), p, f64::NAN, false));
                stack.push((out.len() - 1, f64::INFINITY));
            }
            "E" => {
                let (index, end) = stack.pop().unwrap_or_else(|| panic!("E without a begin: {e}"));
                assert!(end.is_infinite(), "E closes a complete slice: {e}");
                out[index].dur = ts - out[index].ts;
                if let Some(args) = e["args"].as_object() {
                    for (k, v) in args {
                        out[index].args[k] = v.clone();
                    }
                }
            }
            "b" => {
                let id = e["id"].as_u64().expect("numeric async id");
                let track = async_tracks.entry((e["cat"].to_string(), id)).or_default();
                let parents = track.iter().map(|i| out[*i].name.clone()).collect();
                out.push(slice(track.len(), parents, f64::NAN, true));
                track.push(out.len() - 1);
                assert!(asyncs.insert((e["name"].to_string(), id), out.len() - 1).is_none());
            }
            "e" => {
                let id = e["id"].as_u64().expect("numeric async id");
                let index = asyncs
                    .remove(&(e["name"].to_string(), id))
                    .unwrap_or_else(|| panic!("async end without a begin: {e}"));
                let track = async_tracks.get_mut(&(e["cat"].to_string(), id)).expect("its track");
                assert_eq!(track.pop(), Some(index), "async slices end innermost first: {e}");
                out[index].dur = ts - out[index].ts;
                if let Some(args) = e["args"].as_object() {
                    for (k, v) in args {
                        out[index].args[k] = v.clone();
                    }
                }
            }
            _ => unreachable!(),
        }
    }
    for (tid, stack) in stacks {
        for (index, end) in stack {
            assert!(end.is_finite(), "slice {} on {tid} never ended", out[index].name);
        }
    }
    assert!(asyncs.is_empty(), "async slices never ended: {asyncs:?}");
    out
}

/// How many slices are named `name`.
pub fn count(slices: &[Slice], name: &str) -> u64 {
    slices.iter().filter(|s| s.name == name).count() as u64
}
