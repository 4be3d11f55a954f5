//! The native Chrome trace writer: one thread that reads the recorder's trace records
//! ([`crate::trace_records`]) and streams Chrome trace JSON to the session's file.
//!
//! What it writes, per thread track (named with the OS thread id and the thread's name):
//!
//! - every stage, function and user slice as one complete (`X`) event, in the order the slices
//!   began, so a parent comes before its children (a thread's slices wait in a small queue until
//!   its outermost slice ends; past [`PENDING_LIMIT`] waiting entries the open slices are written
//!   as `B`/`E` pairs instead, so memory stays bounded however deep or long a call runs);
//! - a worker's per-event slice (`cat` `pipeline`, name `event`) with its id and queue wait, and
//!   a flow arrow (`bind_id`) from the producer's `submit` slice to it;
//! - async calls as async slices (`b`/`e`, one per call from first poll to completion);
//! - instants (rejected, panic, failed, queue full) and counters (queue depth, live heap).
//!
//! Numbers are written straight into the output buffer, names escaped only when they need it,
//! and the output is written in whole entries, so the file is a valid (if unterminated) trace at
//! any moment. The file ends with a `pipeline_profile` metadata entry (stages, whether
//! allocations were measured, how many records were left out) and `]`.
//!
//! This module reads the records and runs the writer; `track` keeps each thread's slices in
//! order until they can be written; `json` formats each entry; `window` is the flight
//! recorder's.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

mod file;
mod flows;
mod json;
mod track;
mod window;

use file::TraceFile;
use flows::FlowSet;
use json::{async_event, async_event_begin, counter, metadata, AsyncTrack};

use crate::clock::now_ns;
use crate::trace_records::{self, Packed, Reader, Record, Records, SlotInfo};
use track::{AsyncKey, AsyncSlices, Begin, End, HeldEnd, Pending, ThreadView, EVENT};
use window::Window;

/// Entries a thread may hold back (waiting for its outermost slice to end) before its open
/// slices are written as `B`/`E` pairs.
pub(crate) const PENDING_LIMIT: usize = 4096;

/// Output is written to the file in pieces of about this size.
const WRITE_AT: usize = 64 * 1024;

/// How often the writer reads quiet threads' records when no chunk fills.
pub(crate) const COLLECT_EVERY: Duration = Duration::from_millis(20);

/// The file being written and everything needed to write it.
struct Writer {
    /// The trace being written (0: none; records drained then are discarded).
    generation: u32,
    file: Option<TraceFile>,
    path: PathBuf,
    error: Option<io::Error>,
    out: Vec<u8>,
    pid: u64,
    threads: HashMap<u64, ThreadView>,
    /// Async slices begun and not yet ended, per track and name.
    open_async: HashMap<AsyncKey, u32>,
    /// Async ends read before their begins (threads are drained one after another), held
    /// until the begin is written, so the file never holds an end before its begin.
    held_ends: HashMap<AsyncKey, Vec<HeldEnd>>,
    allocations_measured: bool,
    /// Slices and instants written into the current file.
    written: u64,
    /// Records left out before this trace began.
    left_out_at_start: u64,
    /// The flight recorder's window, when records are kept for dumps instead of written.
    window: Option<Window>,
    process_name: String,
    /// For a dump: the flows whose submission is in it. An event whose submission was let go
    /// with the window's oldest records gets no arrow (it would point from nowhere).
    flows_in_dump: Option<FlowSet>,
}

static WRITER: OnceLock<Mutex<Writer>> = OnceLock::new();

fn writer() -> MutexGuard<'static, Writer> {
    let writer = WRITER.get_or_init(|| {
        spawn_writer_thread();
        Mutex::new(Writer::new())
    });
    writer.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer's work on a thread that waits for a chunk, unless the writer (or another such
/// thread) is at it: drains what waits and writes it out.
fn help_write() {
    let Some(writer) = WRITER.get() else { return };
    let mut writer = match writer.try_lock() {
        Ok(writer) => writer,
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    let _bookkeeping = crate::alloc::bookkeeping();
    writer.collect();
}

/// The writer thread: reads records as chunks fill (and every [`COLLECT_EVERY`]), writes them out, and
/// gives the chunks back to the pool. Between traces it reads and discards, so chunks come back.
fn spawn_writer_thread() {
    trace_records::set_writer_help(help_write);
    let spawned =
        std::thread::Builder::new().name("pipeline-trace-writer".to_owned()).spawn(|| {
            // All of this thread's memory is the profiler's.
            let _bookkeeping = crate::alloc::bookkeeping();
            loop {
                trace_records::wait_for_chunks(COLLECT_EVERY);
                writer().collect();
            }
        });
    // Without the thread, records are still read by `finish`; memory is bounded by the pool.
    drop(spawned);
}

/// Registers (once per process) [`finish_at_exit`] to run when the process exits.
fn finish_at_exit_once() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: registers a plain `extern "C"` function; failure only means no hook.
        unsafe { libc::atexit(finish_at_exit) };
    });
}

/// Completes a trace still being written when the process exits without `finish` (a
/// `std::process::exit`, a session leaked with `mem::forget`): what was recorded is written, the
/// calls still running are closed as unfinished, and the file ends with `]`. Other threads still
/// run during exit, so the writer's lock is tried for a moment, never waited on forever.
extern "C" fn finish_at_exit() {
    let Some(writer) = WRITER.get() else { return };
    crate::mode::set_trace_records(false);
    trace_records::stop();
    for _ in 0..200 {
        let mut writer = match writer.try_lock() {
            Ok(writer) => writer,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let _bookkeeping = crate::alloc::bookkeeping();
        let stages = crate::callsite::stage_names();
        let left_out = trace_records::left_out().saturating_sub(writer.left_out_at_start);
        let _ = writer.close(&stages, left_out);
        return;
    }
}

/// A native trace being written.
#[derive(Debug)]
pub(crate) struct NativeTrace {
    path: PathBuf,
}

impl NativeTrace {
    /// Opens the file, writes its head, and turns records on.
    pub(crate) fn start(
        file: File,
        path: &Path,
        process_name: &str,
        unit_limit: usize,
        trace_one_in: u64,
    ) -> Result<Self, io::Error> {
        let _bookkeeping = crate::alloc::bookkeeping();
        let mut writer = writer();
        // What is left of an earlier trace is read and discarded first.
        trace_records::drain(&mut *writer);
        writer.file = Some(TraceFile::buffered(file));
        writer.window = None;
        writer.path = path.to_owned();
        writer.error = None;
        writer.written = 0;
        writer.out.clear();
        writer.open_async.clear();
        writer.held_ends.clear();
        writer.allocations_measured = crate::mode::allocations_measured();
        for thread in writer.threads.values_mut() {
            thread.named = false;
            thread.open.clear();
            thread.pending.clear();
        }
        writer.out.extend_from_slice(b"[\n");
        let pid = writer.pid;
        metadata(&mut writer.out, pid, pid, "process_name", process_name);
        writer.write_out(true);
        if let Some(error) = writer.error.take() {
            writer.file = None;
            return Err(error);
        }
        writer.left_out_at_start = trace_records::left_out();
        writer.generation = trace_records::start(unit_limit, trace_one_in);
        crate::mode::set_trace_records(true);
        finish_at_exit_once();
        Ok(NativeTrace { path: path.to_owned() })
    }

    /// Turns records on for a flight recorder: the writer keeps the last `keep_ns` of them in
    /// memory (all trace memory within `max_bytes`) and writes nothing until [`Self::dump`].
    pub(crate) fn start_window(
        process_name: &str,
        keep_ns: u64,
        max_bytes: usize,
        trace_one_in: u64,
    ) -> Self {
        let _bookkeeping = crate::alloc::bookkeeping();
        let mut writer = writer();
        trace_records::drain(&mut *writer); // what is left of an earlier trace
        writer.file = None;
        writer.path = PathBuf::new();
        writer.error = None;
        writer.process_name = process_name.to_owned();
        writer.allocations_measured = crate::mode::allocations_measured();
        writer.left_out_at_start = trace_records::left_out();
        // Half the budget holds the window; the rest is the chunks threads are filling, so a
        // thread that needs one finds it free rather than waiting for the window to let go.
        let unit_limit = max_bytes / std::mem::size_of::<Packed>();
        writer.window = Some(Window::new(keep_ns, max_bytes / 2));
        writer.generation = trace_records::start(unit_limit, trace_one_in);
        crate::mode::set_trace_records(true);
        NativeTrace { path: PathBuf::new() }
    }

    /// Stops a flight recorder's records and lets its window go.
    pub(crate) fn stop_window(&self) {
        crate::mode::set_trace_records(false);
        trace_records::stop();
        let _bookkeeping = crate::alloc::bookkeeping();
        let _ = writer().close(&[], 0);
    }

    /// Writes what the flight recorder's window holds to `file` as a complete Chrome trace, and
    /// empties the window (the next dump holds what comes after). The writer's lock is held only
    /// while the window is taken, not while it is formatted, so threads go on recording; each
    /// chunk goes back to the pool as soon as it is written. `note` (a JSON object) goes into
    /// the file's metadata entry, with when the window begins and ends. `pace` is called
    /// after each chunk is written (a few hundred microseconds of work) with the part of the
    /// window's chunks written so far (0 to 1): it may sleep to keep the dump's share of the
    /// CPU down.
    pub(crate) fn dump(
        &self,
        file: File,
        stage_names: &[&str],
        note: serde_json::Value,
        pace: &mut dyn FnMut(f64),
    ) -> Result<DumpWritten, io::Error> {
        let _bookkeeping = crate::alloc::bookkeeping();
        let (taken, mut out) = {
            let mut writer = writer();
            let Some(window) = writer.window.as_mut() else {
                return Err(io::Error::other("no flight recorder is running"));
            };
            let taken = window.take();
            let mut out = Writer::new();
            out.pid = writer.pid;
            out.generation = writer.generation;
            out.allocations_measured = writer.allocations_measured;
            out.left_out_at_start = writer.left_out_at_start;
            out.process_name = writer.process_name.clone();
            (taken, out)
        };
        let ended_ns = now_ns();
        let mut flows = Vec::new();
        for thread in &taken.threads {
            flows
                .extend(thread.chunks.iter().flat_map(|(chunk, _)| chunk.records().submit_flows()));
            for record in thread.current.iter().flat_map(|unread| unread.records.iter()) {
                if let Record::Submit { flow, .. } = record {
                    flows.push(*flow);
                }
            }
        }
        out.flows_in_dump = Some(FlowSet::of(flows));
        // Around the page cache: a dump's ~100 MB at once would otherwise be copied into pages
        // the kernel takes from free memory (see `file`).
        out.file = Some(TraceFile::around_page_cache(file));
        out.out.extend_from_slice(b"[\n");
        let pid = out.pid;
        metadata(&mut out.out, pid, pid, "process_name", &out.process_name.clone());
        let mut first_ns = u64::MAX;
        let chunks = taken.threads.iter().map(|thread| thread.chunks.len()).sum::<usize>();
        let mut chunks_written = 0;
        for thread in taken.threads {
            for (chunk, texts) in thread.chunks {
                trace_records::texts_taken(&texts);
                out.texts(&thread.info, texts);
                let batch = chunk.records();
                first_ns = first_ns.min(batch.first().map_or(u64::MAX, |record| record.ts()));
                out.write_records(&thread.info, chunk.generation(), batch.iter());
                drop(chunk); // written: back to the pool
                out.write_out(false);
                chunks_written += 1;
                pace(chunks_written as f64 / chunks as f64);
            }
            if let Some(unread) = thread.current {
                trace_records::texts_taken(&unread.texts);
                out.texts(&thread.info, unread.texts);
                first_ns = first_ns.min(unread.records.first().map_or(u64::MAX, Record::ts));
                out.write_records(&thread.info, unread.generation, unread.records.iter().copied());
            }
        }
        let left_out = trace_records::left_out().saturating_sub(out.left_out_at_start);
        let mut window = note;
        window["complete_after_us"] = (taken.complete_after_ns as f64 / 1e3).into();
        window["first_record_us"] =
            (if first_ns == u64::MAX { 0.0 } else { first_ns as f64 / 1e3 }).into();
        window["dumped_at_us"] = (ended_ns as f64 / 1e3).into();
        let written = out.end_file(ended_ns, stage_names, left_out, Some(window))?;
        Ok(DumpWritten { slices: written, complete_after_ns: taken.complete_after_ns, ended_ns })
    }

    /// Stops records, writes everything recorded, closes the slices still open, and ends the
    /// file. Returns how many slices and instants it holds.
    pub(crate) fn finish(&self, stage_names: &[&str], left_out: u64) -> Result<u64, io::Error> {
        crate::mode::set_trace_records(false);
        trace_records::stop();
        let _bookkeeping = crate::alloc::bookkeeping();
        let mut writer = writer();
        writer.close(stage_names, left_out)
    }

    /// Where the trace goes.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// A flight recorder dump that was written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DumpWritten {
    /// Slices and instants in the file.
    pub(crate) slices: u64,
    /// The file holds everything recorded after this time (0: since recording began).
    pub(crate) complete_after_ns: u64,
    /// When the window was taken: the file's last moment.
    pub(crate) ended_ns: u64,
}

impl Writer {
    fn new() -> Self {
        Writer {
            generation: 0,
            file: None,
            path: PathBuf::new(),
            error: None,
            out: Vec::new(),
            pid: u64::from(std::process::id()),
            threads: HashMap::new(),
            open_async: HashMap::new(),
            held_ends: HashMap::new(),
            allocations_measured: false,
            written: 0,
            left_out_at_start: 0,
            window: None,
            process_name: String::new(),
            flows_in_dump: None,
        }
    }

    /// The writer's work: reads what threads recorded and writes it out, or, for a flight
    /// recorder, keeps it in the window.
    fn collect(&mut self) {
        match &mut self.window {
            Some(window) => window.collect(now_ns()),
            None => {
                trace_records::drain(self);
                self.write_out(false);
            }
        }
    }

    /// Reads what is left, closes the slices still open, ends the file and closes it. Returns
    /// how many slices and instants the file holds. A flight recorder's window is let go.
    fn close(&mut self, stage_names: &[&str], left_out: u64) -> Result<u64, io::Error> {
        if self.generation == 0 {
            return Ok(self.written); // closed already (at exit, or by an earlier finish)
        }
        if self.window.take().is_some() {
            self.generation = 0;
            trace_records::drain(self); // discarded: the window's trace is over
            self.threads.clear();
            self.out.clear();
            return Ok(0);
        }
        trace_records::drain(self);
        self.end_file(now_ns(), stage_names, left_out, None)
    }

    /// Closes the slices still open at `ts`, writes the metadata entry (with `window` for a
    /// flight recorder dump) and `]`, and closes the file. Returns how many slices and instants
    /// the file holds.
    fn end_file(
        &mut self,
        ts: u64,
        stage_names: &[&str],
        left_out: u64,
        window: Option<serde_json::Value>,
    ) -> Result<u64, io::Error> {
        self.close_open_slices(ts);
        let mut args = serde_json::json!({
            "stages": stage_names,
            "allocations_measured": self.allocations_measured,
            "records_left_out": left_out,
            "timer_resolution_ns": crate::clock::resolution_ns(),
            "writer": "pipeline native",
        });
        if let Some(window) = window {
            args["flight_recorder_window"] = window;
        }
        let trailer = serde_json::json!({
            "ph": "M", "pid": self.pid, "tid": self.pid, "name": super::PROFILE_METADATA,
            "args": args,
        });
        self.out.extend_from_slice(b",\n");
        let _ = serde_json::to_writer(&mut self.out, &trailer);
        self.out.extend_from_slice(b"\n]\n");
        self.write_out(true);
        self.generation = 0;
        if let Some(file) = self.file.take() {
            if let Err(error) = file.finish() {
                self.error.get_or_insert(error);
            }
        }
        self.error.take().map_or(Ok(self.written), Err)
    }

    /// Writes the output buffer to the file once it is big enough (or `now`).
    fn write_out(&mut self, now: bool) {
        if self.out.is_empty() || (!now && self.out.len() < WRITE_AT) {
            return;
        }
        if let Some(file) = &mut self.file {
            if let Err(error) = file.write_all(&self.out) {
                self.error.get_or_insert(error);
                self.file = None; // keep what reached the file; stop writing
            }
        }
        self.out.clear();
    }

    fn thread(&mut self, slot: &SlotInfo) -> &mut ThreadView {
        let pid = self.pid;
        self.threads.entry(slot.id).or_insert_with(|| ThreadView::new(pid, slot))
    }

    /// Closes every slice still open (calls running when the trace ended) at `ts`, marked
    /// unfinished, and every async slice still open.
    fn close_open_slices(&mut self, ts: u64) {
        let pid = self.pid;
        let ids: Vec<u64> = self.threads.keys().copied().collect();
        for id in ids {
            let thread = self.threads.get_mut(&id).expect("listed");
            while !thread.open.is_empty() {
                let end = End { ts, allocations: 0, bytes: 0, outcome: None, unfinished: true };
                thread.end(end, pid, &mut self.out, &mut self.written);
            }
        }
        // A stage's slice ends before the event's it nests in (same time, written first).
        self.held_ends.clear(); // ends of begins from an earlier trace
        let mut open_async: Vec<(AsyncKey, u32)> = self.open_async.drain().collect();
        open_async.sort_by_key(|((track, name), _)| {
            (matches!(track, AsyncTrack::Event(_)) && *name == EVENT)
        });
        for ((track, name), open) in open_async {
            for _ in 0..open {
                async_event(&mut self.out, b'e', pid, pid, ts, name, track, Some("unfinished"));
            }
        }
    }

    /// Formats `slot`'s records, in the order the thread wrote them, all of trace `generation`.
    fn write_records(
        &mut self,
        slot: &SlotInfo,
        generation: u32,
        batch: impl Iterator<Item = Record>,
    ) {
        let current = generation == self.generation && self.generation != 0;
        let pid = self.pid;
        let measured = self.allocations_measured;
        let Writer { threads, out, open_async, held_ends, written, flows_in_dump, .. } = self;
        let flows_in_dump = &*flows_in_dump;
        let flow_kept = |flow: u64| match flows_in_dump {
            Some(flows) if !flows.contains(flow) => 0,
            _ => flow,
        };
        let mut asyncs = AsyncSlices { open: open_async, held: held_ends, pid };
        let thread = threads.entry(slot.id).or_insert_with(|| ThreadView::new(pid, slot));
        if !current {
            // An earlier trace's: consume the texts that go with them, write nothing.
            let texts = batch.filter(Record::has_text).count();
            thread.texts.drain(..texts.min(thread.texts.len()));
            return;
        }
        if !thread.named {
            thread.named = true;
            metadata(out, pid, thread.tid, "thread_name", &thread.name);
        }
        for record in batch {
            match record {
                Record::Begin { ts, name, kind } => {
                    thread.begin(Begin::Slice { ts, name, kind });
                }
                Record::EventBegin { ts, id, wait_ns, flow } => {
                    thread.begin(Begin::Event { ts, id, wait_ns, flow: flow_kept(flow) });
                }
                Record::End { ts, allocations, bytes, outcome } => {
                    let outcome = if outcome { thread.texts.pop_front() } else { None };
                    let (allocations, bytes) = if measured { (allocations, bytes) } else { (0, 0) };
                    let end = End { ts, allocations, bytes, outcome, unfinished: false };
                    thread.end(end, pid, out, written);
                }
                Record::Submit { start, end, id, flow } => {
                    thread.begin(Begin::Submit { ts: start, id, flow });
                    let end =
                        End { ts: end, allocations: 0, bytes: 0, outcome: None, unfinished: false };
                    thread.end(end, pid, out, written);
                }
                Record::Instant { ts, marker } => {
                    let args = thread.texts.pop_front().unwrap_or_else(|| "{}".into());
                    thread.pending.push(Pending::Instant { ts, marker, args });
                    if thread.open.is_empty() {
                        thread.flush(pid, out, written);
                    }
                }
                Record::Counter { ts, track, value } => counter(out, pid, ts, track, value),
                Record::AsyncBegin { ts, name, id, in_event } => {
                    let track = if in_event { AsyncTrack::Event(id) } else { AsyncTrack::Call(id) };
                    async_event(out, b'b', pid, thread.tid, ts, name, track, None);
                    asyncs.begun((track, name), out);
                }
                Record::AsyncEnd { ts, name, id, outcome, in_event } => {
                    let track = if in_event { AsyncTrack::Event(id) } else { AsyncTrack::Call(id) };
                    let end = HeldEnd { tid: thread.tid, ts, note: outcome.note() };
                    asyncs.ended((track, name), end, out);
                }
                Record::EventAsyncBegin { ts, id, wait_ns, track, flow } => {
                    let flow = flow && flow_kept(track) != 0;
                    async_event_begin(out, pid, thread.tid, ts, id, wait_ns, track, flow);
                    asyncs.begun((AsyncTrack::Event(track), EVENT), out);
                }
                Record::EventAsyncEnd { ts, track } => {
                    let end = HeldEnd { tid: thread.tid, ts, note: None };
                    asyncs.ended((AsyncTrack::Event(track), EVENT), end, out);
                }
                Record::PollBegin { ts, id } => thread.begin(Begin::Poll { ts, id }),
            }
        }
    }
}

impl Reader for Writer {
    fn texts(&mut self, slot: &SlotInfo, texts: VecDeque<Box<str>>) {
        self.thread(slot).texts.extend(texts);
    }

    fn ended(&mut self, slot: &SlotInfo) {
        let pid = self.pid;
        let Writer { threads, out, written, .. } = self;
        let Some(thread) = threads.get_mut(&slot.id) else { return };
        // A thread ends outside any call: its slices are all closed, and what waits is written
        // now. A view with a slice still open (the thread ended inside a call) stays for
        // `finish` to close it as unfinished.
        if thread.open.is_empty() {
            thread.flush(pid, out, written);
            threads.remove(&slot.id);
        }
    }

    fn records(&mut self, slot: &SlotInfo, generation: u32, records: Records<'_>) {
        self.write_records(slot, generation, records.iter());
    }
}

#[cfg(test)]
mod tests {
    use super::json::{micros, string};
    use super::*;
    use crate::trace_records::SliceKind;

    #[test]
    fn timestamps_are_microseconds_with_nanosecond_decimals() {
        let mut out = Vec::new();
        micros(&mut out, 1_234_567_089);
        assert_eq!(out, b"1234567.089");
        out.clear();
        micros(&mut out, 7);
        assert_eq!(out, b"0.007");
    }

    #[test]
    fn names_that_need_escaping_are_escaped() {
        let mut out = Vec::new();
        string(&mut out, "plain::name");
        string(&mut out, "a \"quoted\"\nname");
        assert_eq!(String::from_utf8(out).unwrap(), r#""plain::name""a \"quoted\"\nname""#);
    }

    fn view() -> ThreadView {
        ThreadView::new(1, &SlotInfo { id: 1, tid: 7, name: "t".into() })
    }

    fn slice(ts: u64, name: &'static str) -> Begin {
        Begin::Slice { ts, name, kind: SliceKind::Function }
    }

    fn end(ts: u64) -> End {
        End { ts, allocations: 0, bytes: 0, outcome: None, unfinished: false }
    }

    fn parse(out: &[u8]) -> Vec<serde_json::Value> {
        let text = format!("[{}]", String::from_utf8_lossy(out).trim_start_matches(",\n"));
        serde_json::from_str(&text).expect("valid JSON")
    }

    #[test]
    fn nested_slices_are_written_parent_first_when_the_outermost_ends() {
        let (mut thread, mut out, mut written) = (view(), Vec::new(), 0);
        thread.begin(slice(1_000, "outer"));
        thread.begin(slice(2_000, "inner"));
        thread.end(end(3_000), 1, &mut out, &mut written);
        assert!(out.is_empty(), "held back until the outermost slice ends");
        thread.end(end(9_000), 1, &mut out, &mut written);
        let events = parse(&out);
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0]["name"].as_str(), events[0]["dur"].as_f64()),
            (Some("outer"), Some(8.0))
        );
        assert_eq!(
            (events[1]["name"].as_str(), events[1]["ts"].as_f64()),
            (Some("inner"), Some(2.0))
        );
        assert_eq!(written, 2);
    }

    #[test]
    fn a_long_open_slice_is_written_as_begin_and_end_once_too_much_waits() {
        let (mut thread, mut out, mut written) = (view(), Vec::new(), 0);
        thread.begin(slice(1, "main"));
        for i in 0..PENDING_LIMIT as u64 + 10 {
            thread.begin(slice(10 + 2 * i, "f"));
            thread.end(end(11 + 2 * i), 1, &mut out, &mut written);
        }
        assert!(thread.pending.len() <= PENDING_LIMIT + 1, "bounded");
        thread.end(end(1_000_000), 1, &mut out, &mut written);
        let events = parse(&out);
        assert_eq!(events[0]["ph"], "B");
        assert_eq!(events.last().unwrap()["ph"], "E");
        let fs = events.iter().filter(|e| e["ph"] == "X").count();
        assert_eq!(fs, PENDING_LIMIT + 10, "every nested slice kept");
    }
}
