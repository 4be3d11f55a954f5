//! The tracing-chrome backend (`TraceBackend::TracingChrome`): the trace made of the stage and
//! function `tracing` spans, written by `tracing-chrome`. Kept as a second backend and as the
//! reference the native writer is checked against.
//!
//! One `tracing_chrome::ChromeLayer` serves the whole process: tracing-chrome keeps per-thread
//! state (thread ids, a cached channel sender) in process-wide thread-locals, so a second layer
//! would silently lose the events of threads the first one saw. The layer sits behind a filter
//! that is on only while a session traces with this backend, and writes into a `SessionWriter`
//! that re-frames tracing-chrome's stream (one compact JSON entry per line) into the current
//! session's file:
//!
//! - each file starts with `[`, the process name and the name of every thread seen so far, so it
//!   is complete on its own and every worker track is named;
//! - counter events (queue depth, live heap) are appended to the same file as whole lines, so
//!   they interleave safely with the slices and are streamed to disk like them;
//! - tracing-chrome's `Flush` is acknowledged, so `finish()` knows everything recorded before it
//!   is in the file, and ends the file with a `pipeline_profile` metadata entry and `]`.
//!
//! Its queue to the writer thread is bounded in entries (`Profiler::trace_backlog_limit`):
//! whole spans are left out past it, and counted.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::Subscriber;
use tracing_chrome::{ChromeLayer, ChromeLayerBuilder, EventOrSpan, FlushGuard};
use tracing_subscriber::filter::{dynamic_filter_fn, DynFilterFn, Filtered};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::error::Error;
use crate::trace_records::{self, CounterTrack};

/// The filter in front of the layer: asked for every span and event (a `DynFilterFn`, because
/// a plain `FilterFn` caches its first answer per call site, which would freeze the on/off
/// switch and the sampling decision).
pub(crate) type SessionFilter<S> =
    DynFilterFn<S, for<'a, 'b, 'c, 'd> fn(&'a tracing::Metadata<'b>, &'c Context<'d, S>) -> bool>;

/// The tracing layer [`super::layer`] includes: tracing-chrome's, on only while a session traces.
pub(crate) type PipelineChromeLayer<S> = Filtered<ChromeLayer<S>, SessionFilter<S>, S>;

/// The process's one trace writer, created with the layer.
struct Tracer {
    writer: Arc<Shared>,
    guard: Mutex<FlushGuard>,
    /// tracing-chrome's time zero (its timestamps are microseconds since the layer was built).
    epoch: Instant,
}

static TRACER: OnceLock<Tracer> = OnceLock::new();
static TRACING: AtomicBool = AtomicBool::new(false);

/// Trace entries (a span's begin and end, an instant event) let through to tracing-chrome.
static ADMITTED: AtomicU64 = AtomicU64::new(0);
/// Trace entries the writer has put in the file (or discarded between sessions).
static WRITTEN: AtomicU64 = AtomicU64::new(0);
/// Spans and events left out of the trace because the writer was too far behind.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The backlog limit of the running session (`Profiler::trace_backlog_limit`).
static BACKLOG_LIMIT: AtomicU64 = AtomicU64::new(super::MAX_BACKLOG);

fn tracing_enabled<S>(metadata: &tracing::Metadata<'_>, _: &Context<'_, S>) -> bool {
    if !TRACING.load(Ordering::Relaxed) || !trace_records::is_traced() {
        return false;
    }
    let entries = if metadata.is_span() { 2 } else { 1 };
    let backlog = ADMITTED.load(Ordering::Relaxed).saturating_sub(WRITTEN.load(Ordering::Relaxed));
    if backlog + entries > BACKLOG_LIMIT.load(Ordering::Relaxed) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    ADMITTED.fetch_add(entries, Ordering::Relaxed);
    true
}

/// Spans and events left out of traces so far because the writer fell behind.
pub(crate) fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// State shared by tracing-chrome's writer thread, counters, and the session.
struct Shared {
    state: Mutex<WriterState>,
    flushed: Condvar,
}

#[derive(Default)]
struct WriterState {
    /// Bytes of an entry not yet ended by a newline.
    pending: Vec<u8>,
    /// Every thread-name metadata entry seen, to repeat at the top of each file.
    thread_names: Vec<Vec<u8>>,
    file: Option<BufWriter<File>>,
    path: PathBuf,
    error: Option<io::Error>,
    flushes: u64,
}

impl WriterState {
    fn write_line(&mut self, entry: &[u8]) {
        if let Some(file) = &mut self.file {
            let result = file.write_all(b",\n").and_then(|()| file.write_all(entry));
            if let Err(error) = result {
                self.error.get_or_insert(error);
                // Keep the bytes already written; stop writing. The buffer is the profiler's.
                let _bookkeeping = crate::alloc::bookkeeping();
                self.file = None;
            }
        }
    }

    /// Takes one of tracing-chrome's lines: strips its framing (`[`, `]`, commas) and keeps it.
    /// Returns whether it was a trace entry (not framing, not a thread name).
    fn take_line(&mut self, line: &[u8]) -> bool {
        let entry = trim(line);
        if entry.is_empty() || entry == b"[" || entry == b"]" {
            return false;
        }
        let shifted = shift_thread_id(entry);
        let entry = shifted.as_deref().unwrap_or(entry);
        let thread_name = is_thread_name(entry);
        if thread_name && !self.thread_names.iter().any(|known| known == entry) {
            self.thread_names.push(entry.to_vec());
        }
        self.write_line(entry);
        !thread_name
    }

    fn take(&mut self, bytes: &[u8]) {
        let mut entries = 0;
        let mut rest = bytes;
        while let Some(newline) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(newline + 1);
            let entry = if self.pending.is_empty() {
                self.take_line(line)
            } else {
                let mut whole = std::mem::take(&mut self.pending);
                whole.extend_from_slice(line);
                let entry = self.take_line(&whole);
                whole.clear();
                self.pending = whole; // keep the allocation for the next split entry
                entry
            };
            entries += u64::from(entry);
            rest = after;
        }
        self.pending.extend_from_slice(rest);
        // One atomic add per chunk, not per entry: the writer thread is on the hot side of a
        // full trace (it competes with the traced program for the cores).
        WRITTEN.fetch_add(entries, Ordering::Relaxed);
    }
}

fn trim(line: &[u8]) -> &[u8] {
    let mut line = line.trim_ascii();
    while let Some(rest) = line.strip_prefix(b",") {
        line = rest.trim_ascii_start();
    }
    while let Some(rest) = line.strip_suffix(b",") {
        line = rest.trim_ascii_end();
    }
    line
}

/// tracing-chrome numbers threads from 0, and Perfetto's importer replaces a thread id of 0 with
/// the process id (1), merging the first thread's track with the second's. Every id moves up by
/// one, so no thread is 0 (`None`: the entry has no thread id to move).
fn shift_thread_id(entry: &[u8]) -> Option<Vec<u8>> {
    const KEY: &[u8] = br#""tid":"#;
    let at = memchr::memmem::find(entry, KEY)? + KEY.len();
    let digits = entry[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    let id: u64 = std::str::from_utf8(&entry[at..at + digits]).ok()?.parse().ok()?;
    let mut shifted = Vec::with_capacity(entry.len() + 1);
    shifted.extend_from_slice(&entry[..at]);
    shifted.extend_from_slice(itoa::Buffer::new().format(id + 1).as_bytes());
    shifted.extend_from_slice(&entry[at + digits..]);
    Some(shifted)
}

fn is_thread_name(entry: &[u8]) -> bool {
    // tracing-chrome's entries are serde_json maps, keys in order: `{"args":{"name":..},"name":
    // "thread_name","ph":"M",...}`. Only metadata entries start with `{"args":{"name":`; most
    // entries have no arguments and start with `{"cat":`, rejected at the third byte.
    entry.get(2) == Some(&b'a')
        && entry.starts_with(br#"{"args":{"name":"#)
        && memchr::memmem::find(entry, br#""name":"thread_name""#).is_some()
}

/// The `Write` handed to tracing-chrome: forwards whole entries to the current session's file.
struct SessionWriter(Arc<Shared>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Write for SessionWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        // Never fail: tracing-chrome unwraps write results on its thread. Errors are kept and
        // reported by `finish`.
        self.0.lock().take(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut state = self.0.lock();
        // tracing-chrome flushes between entries, so what is pending is a whole entry.
        let pending = std::mem::take(&mut state.pending);
        if state.take_line(&pending) {
            WRITTEN.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(file) = &mut state.file {
            if let Err(error) = file.flush() {
                state.error.get_or_insert(error);
            }
        }
        state.flushes += 1;
        // This thread frees what the traced threads allocated for each entry; its live-bytes
        // change is batched per thread, and `finish` reads the heap right after this flush.
        crate::alloc::flush_thread();
        self.0.flushed.notify_all();
        Ok(())
    }
}

/// Names spans by their name and events by their `marker` field when they have one, so instant
/// events read "panic in FraudStage" rather than "event src/workers.rs:120".
fn slice_name<S>(data: &EventOrSpan<'_, '_, S>) -> String
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    match data {
        EventOrSpan::Span(span) => span.name().to_owned(),
        EventOrSpan::Event(event) => {
            struct Marker(Option<String>);
            impl Visit for Marker {
                fn record_str(&mut self, field: &Field, value: &str) {
                    if field.name() == "marker" {
                        self.0 = Some(value.to_owned());
                    }
                }
                fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                    if field.name() == "marker" {
                        self.0 = Some(format!("{value:?}"));
                    }
                }
            }
            let mut marker = Marker(None);
            event.record(&mut marker);
            marker.0.unwrap_or_else(|| event.metadata().name().to_owned())
        }
    }
}

/// tracing-chrome's layer behind the session filter, for a subscriber the program builds.
pub(crate) fn filtered_layer<S>() -> Result<PipelineChromeLayer<S>, Error>
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let enabled: for<'a, 'b, 'c, 'd> fn(&'a tracing::Metadata<'b>, &'c Context<'d, S>) -> bool =
        tracing_enabled::<S>;
    Ok(chrome_layer()?.with_filter(dynamic_filter_fn(enabled)))
}

/// Makes the process's one tracing-chrome layer and its writer (the caller made sure it is the
/// first: see `super::claim_layer`).
pub(crate) fn chrome_layer<S>() -> Result<ChromeLayer<S>, Error>
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let shared =
        Arc::new(Shared { state: Mutex::new(WriterState::default()), flushed: Condvar::new() });
    let epoch = Instant::now();
    let (chrome, guard) = ChromeLayerBuilder::new()
        .writer(SessionWriter(Arc::clone(&shared)))
        .include_args(true)
        .include_locations(false)
        .name_fn(Box::new(|data| slice_name(data)))
        .build();
    let tracer = Tracer { writer: shared, guard: Mutex::new(guard), epoch };
    TRACER.set(tracer).map_err(|_| Error::TraceLayerExists)?;
    trace_records::set_counter_sink(counter);
    Ok(chrome)
}

/// The process's tracing-chrome writer, once its layer exists (the program's subscriber has
/// `trace::layer()`, or the profiler installed its own).
fn tracer() -> Result<&'static Tracer, Error> {
    if let Some(tracer) = TRACER.get() {
        return Ok(tracer);
    }
    super::install_subscriber()?;
    TRACER.get().ok_or(Error::SubscriberTaken)
}

/// A tracing-chrome trace file being written by the running session.
#[derive(Debug)]
pub(crate) struct ChromeTrace {
    path: PathBuf,
}

impl ChromeTrace {
    /// Where the trace goes.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the file's head into `file` and turns recording on.
    pub(crate) fn start(
        file: File,
        path: &Path,
        process_name: &str,
        trace_one_in: u64,
        backlog_limit: u64,
    ) -> Result<Self, Error> {
        let tracer = tracer()?;
        let mut state = tracer.writer.lock();
        // The file's buffer is the profiler's memory, not the program's: it is made and freed
        // (in `finish`) as bookkeeping, so it shows neither as the run's growth nor in its peak.
        let mut file = {
            let _bookkeeping = crate::alloc::bookkeeping();
            BufWriter::with_capacity(64 * 1024, file)
        };
        let header = serde_json::json!({
            "ph": "M", "pid": 1, "name": "process_name", "args": { "name": process_name }
        });
        let mut result = file
            .write_all(b"[\n")
            .and_then(|()| serde_json::to_writer(&mut file, &header).map_err(io::Error::from));
        for name in &state.thread_names {
            result =
                result.and_then(|()| file.write_all(b",\n")).and_then(|()| file.write_all(name));
        }
        result.map_err(|source| Error::Write { what: "trace", path: path.to_owned(), source })?;
        state.file = Some(file);
        state.path = path.to_owned();
        state.error = None;
        drop(state);
        trace_records::set_trace_one_in(trace_one_in.max(1));
        BACKLOG_LIMIT.store(backlog_limit.max(2), Ordering::Relaxed);
        crate::mode::set_spans_for_trace(true);
        TRACING.store(true, Ordering::Release);
        Ok(ChromeTrace { path: path.to_owned() })
    }

    /// Stops recording, waits until tracing-chrome has written what it received, and closes the
    /// file with `]`.
    pub(crate) fn finish(&self, stage_names: &[&str], left_out: u64) -> Result<(), Error> {
        TRACING.store(false, Ordering::Release);
        trace_records::set_trace_one_in(0);
        crate::mode::set_spans_for_trace(false);
        let Some(tracer) = TRACER.get() else { return Ok(()) };
        let mut state = tracer.writer.lock();
        let target = state.flushes + 1;
        drop(state);
        tracer.guard.lock().unwrap_or_else(PoisonError::into_inner).flush();
        state = tracer.writer.lock();
        let deadline = Instant::now() + Duration::from_secs(10);
        while state.flushes < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break; // the writer thread is stuck; close with what arrived
            }
            state = tracer
                .writer
                .flushed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let file = state.file.take();
        let error = state.error.take();
        drop(state);
        let closed = match file {
            Some(mut file) => {
                let closed = write_trailer(&mut file, stage_names, left_out)
                    .and_then(|()| file.write_all(b"\n]\n"))
                    .and_then(|()| file.flush());
                let _bookkeeping = crate::alloc::bookkeeping();
                drop(file);
                closed
            }
            None => Ok(()),
        };
        match error.map_or(closed, Err) {
            Ok(()) => Ok(()),
            Err(source) => Err(Error::Write { what: "trace", path: self.path.clone(), source }),
        }
    }
}

fn write_trailer(file: &mut impl Write, stages: &[&str], left_out: u64) -> io::Result<()> {
    let entry = serde_json::json!({
        "ph": "M", "pid": 1, "name": super::PROFILE_METADATA,
        "args": {
            "stages": stages,
            "allocations_measured": crate::mode::allocations_measured(),
            "records_left_out": left_out,
            "writer": "tracing-chrome",
        }
    });
    file.write_all(b",\n")?;
    serde_json::to_writer(&mut *file, &entry).map_err(io::Error::from)
}

/// Whether this backend is recording now.
#[inline]
pub(crate) fn is_tracing() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// Appends a counter sample (a `"ph":"C"` event) to the trace. Perfetto names the track
/// `"{name} {series}"`: the queue's is "queue depth".
pub(crate) fn counter(track: CounterTrack, value: f64) {
    if !is_tracing() || !value.is_finite() {
        return;
    }
    let (name, series) = track.name_and_series();
    let Some(tracer) = TRACER.get() else { return };
    let ts = tracer.epoch.elapsed().as_nanos() as f64 / 1000.0;
    let entry = serde_json::json!({ "ph": "C", "pid": 1, "name": name, "ts": ts, "args": { series: value } });
    let entry = entry.to_string();
    tracer.writer.lock().write_line(entry.as_bytes());
}
