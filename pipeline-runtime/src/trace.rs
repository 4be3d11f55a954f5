//! Chrome trace JSON (opens in ui.perfetto.dev), built on `tracing-chrome`.
//!
//! One `tracing_chrome::ChromeLayer` serves the whole process: tracing-chrome keeps per-thread
//! state (thread ids, a cached channel sender) in process-wide thread-locals, so a second layer
//! would silently lose the events of threads the first one saw. The layer sits behind a per-layer
//! filter that is on only while a profiling session traces, and writes into a `SessionWriter`
//! that re-frames tracing-chrome's stream (one compact JSON entry per line) into the current
//! session's file:
//!
//! - each file starts with `[`, the process name and the name of every thread seen so far, so it
//!   is complete on its own and every worker track is named;
//! - counter events (queue depth, live heap) are appended to the same file as whole lines, so
//!   they interleave safely with the slices and are streamed to disk like them;
//! - tracing-chrome's `Flush` is acknowledged, so `finish()` knows everything recorded before it
//!   is in the file, and ends the file with a `pipeline_profile` metadata entry (which slices are
//!   stages, whether allocations were measured: stage slices carry arguments only when they say
//!   something) and `]`.
//!
//! Stage and function spans exist only while a trace records (or always after
//! [`crate::emit_spans`]): statistics never need them.

use std::cell::Cell;
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
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::error::Error;

/// The filter in front of the layer: asked for every span and event (a `DynFilterFn`, because
/// a plain `FilterFn` caches its first answer per call site, which would freeze the on/off
/// switch and the sampling decision).
pub type SessionFilter<S> =
    DynFilterFn<S, for<'a, 'b, 'c, 'd> fn(&'a tracing::Metadata<'b>, &'c Context<'d, S>) -> bool>;

/// The tracing layer [`layer`] returns: tracing-chrome's, on only while a session traces.
pub type PipelineChromeLayer<S> = Filtered<ChromeLayer<S>, SessionFilter<S>, S>;

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

/// How far (in entries) tracing-chrome's writer may fall behind before new spans are left out,
/// unless `Profiler::trace_backlog_limit` says otherwise.
///
/// tracing-chrome queues every entry on an unbounded channel to its writer thread; when the
/// program makes spans faster than the writer serialises them, that queue is the only thing
/// that grows. Capping the backlog keeps memory flat (about 250 bytes an entry, so ~25 MB at
/// most); whole spans are left out, never half of one, and the report counts them.
pub const MAX_BACKLOG: u64 = 100_000;

/// The backlog limit of the running session (`Profiler::trace_backlog_limit`).
static BACKLOG_LIMIT: AtomicU64 = AtomicU64::new(MAX_BACKLOG);

thread_local! {
    /// Whether the event this thread is processing is sampled into the trace.
    static SAMPLED: Cell<bool> = const { Cell::new(true) };
}

/// Marks whether what this thread does next belongs in the trace (the workers' per-event
/// sampling decision). Returns the previous value.
pub(crate) fn set_sampled(sampled: bool) -> bool {
    SAMPLED.with(|s| s.replace(sampled))
}

fn tracing_enabled<S>(metadata: &tracing::Metadata<'_>, _: &Context<'_, S>) -> bool {
    if !TRACING.load(Ordering::Relaxed) || !SAMPLED.with(Cell::get) {
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

/// Trace one event in this many (1: every event), as set by `Profiler::sample`.
static SAMPLE_EVERY: AtomicU64 = AtomicU64::new(1);

/// Whether the worker's event number `id` goes into the trace.
#[inline]
pub(crate) fn samples_event(id: u64) -> bool {
    id % SAMPLE_EVERY.load(Ordering::Relaxed).max(1) == 0
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

/// The Chrome trace layer, to add to a subscriber you build yourself:
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
/// tracing_subscriber::registry().with(pipeline_runtime::trace::layer().expect("first call")).init();
/// // Profiler::new().chrome_trace("trace.json").start() then writes through it.
/// ```
///
/// It records only while a profiling session with `chrome_trace` runs.
///
/// # Errors
///
/// [`Error::TraceLayerExists`] if the layer was already made in this process (tracing-chrome
/// supports one layer per process).
pub fn layer<S>() -> Result<PipelineChromeLayer<S>, Error>
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let enabled: for<'a, 'b, 'c, 'd> fn(&'a tracing::Metadata<'b>, &'c Context<'d, S>) -> bool =
        tracing_enabled::<S>;
    Ok(chrome_layer()?.with_filter(dynamic_filter_fn(enabled)))
}

/// Makes the process's one tracing-chrome layer and its writer.
fn chrome_layer<S>() -> Result<ChromeLayer<S>, Error>
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    // Refuse before building anything: tracing-chrome's constructor points the calling thread's
    // cached channel at the new layer, so even a layer built and then discarded would send this
    // thread's events nowhere.
    static MADE: AtomicBool = AtomicBool::new(false);
    if MADE.swap(true, Ordering::AcqRel) {
        return Err(Error::TraceLayerExists);
    }
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
    Ok(chrome)
}

/// The on/off switch of [`layer`]'s filter, as a layer of its own: in the subscriber this module
/// installs (where the Chrome layer is the only one), it decides once, when a span is made,
/// instead of a per-layer filter being consulted again on every enter, exit, record and close
/// (a registry look-up each).
struct SessionSwitch;

impl<S> Layer<S> for SessionSwitch
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes() // the answer changes: ask `enabled` every time
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>, ctx: Context<'_, S>) -> bool {
        tracing_enabled(metadata, &ctx)
    }
}

/// Makes sure the layer exists: installs `Registry + layer` as the global subscriber unless the
/// user already added [`layer`] to theirs.
fn ensure_installed() -> Result<&'static Tracer, Error> {
    if let Some(tracer) = TRACER.get() {
        return Ok(tracer);
    }
    let subscriber = tracing_subscriber::registry().with(chrome_layer()?).with(SessionSwitch);
    tracing::subscriber::set_global_default(subscriber).map_err(|_| Error::SubscriberTaken)?;
    Ok(TRACER.get().expect("just set"))
}

/// A trace file being written by the running session.
#[derive(Debug)]
pub(crate) struct TraceSession {
    path: PathBuf,
    finished: bool,
    dropped_at_start: u64,
    sample_every: u64,
}

impl TraceSession {
    /// Creates the file (an unwritable path is an error now, not a missing file later) and turns
    /// recording on.
    pub(crate) fn start(
        path: &Path,
        process_name: &str,
        sample_every: u64,
        backlog_limit: u64,
    ) -> Result<Self, Error> {
        let file = File::create(path).map_err(|source| Error::Write {
            what: "trace",
            path: path.to_owned(),
            source,
        })?;
        let tracer = ensure_installed()?;
        let mut state = tracer.writer.lock();
        // The file's buffer is the profiler's memory, not the program's: it is made and freed
        // (in `finish`) as bookkeeping, so it shows neither as the run's growth nor in its peak.
        let mut file = {
            let _bookkeeping = crate::alloc::bookkeeping();
            BufWriter::with_capacity(64 * 1024, file)
        };
        let header = serde_json::json!({
            "ph": "M", "pid": 1, "tid": 0, "name": "process_name", "args": { "name": process_name }
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
        SAMPLE_EVERY.store(sample_every.max(1), Ordering::Relaxed);
        BACKLOG_LIMIT.store(backlog_limit.max(2), Ordering::Relaxed);
        crate::recorder::set_spans_for_trace(true);
        TRACING.store(true, Ordering::Release);
        Ok(TraceSession {
            path: path.to_owned(),
            finished: false,
            dropped_at_start: dropped(),
            sample_every,
        })
    }

    /// Stops recording, waits until tracing-chrome has written what it received, and closes the
    /// file with `]`.
    pub(crate) fn finish(&mut self) -> Result<(), Error> {
        if std::mem::replace(&mut self.finished, true) {
            return Ok(());
        }
        TRACING.store(false, Ordering::Release);
        crate::recorder::set_spans_for_trace(false);
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
                let closed = write_trailer(&mut file)
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

/// The name of the metadata entry that closes each trace: which slices are `#[stage]` calls, and
/// whether allocations were measured. Stage slices carry arguments only when they say something
/// (a failure, allocations), so a reader needs this to tell a stage from a function and "no
/// allocations" from "not measured". Perfetto ignores metadata it does not know.
pub(crate) const PROFILE_METADATA: &str = "pipeline_profile";

fn write_trailer(file: &mut impl Write) -> io::Result<()> {
    let entry = serde_json::json!({
        "ph": "M", "pid": 1, "tid": 0, "name": PROFILE_METADATA,
        "args": {
            "stages": crate::recorder::stage_names(),
            "allocations_measured": crate::recorder::allocations_measured(),
        }
    });
    file.write_all(b",\n")?;
    serde_json::to_writer(&mut *file, &entry).map_err(io::Error::from)
}

impl TraceSession {
    /// What the report says about this trace.
    pub(crate) fn summary(&self) -> TraceSummary {
        TraceSummary {
            path: self.path.clone(),
            sampled_one_in: self.sample_every,
            spans_left_out: dropped().saturating_sub(self.dropped_at_start),
        }
    }
}

/// The Chrome trace a session wrote.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TraceSummary {
    /// Where it is.
    pub path: PathBuf,
    /// One event in this many is traced (1: all); statistics cover every event regardless.
    pub sampled_one_in: u64,
    /// Spans and events left out because the trace writer fell more than [`MAX_BACKLOG`]
    /// entries behind (memory stays bounded instead).
    pub spans_left_out: u64,
}

impl Drop for TraceSession {
    fn drop(&mut self) {
        // Also while a panic unwinds: the trace ends up complete with what was recorded.
        let _ = self.finish();
    }
}

/// Whether a trace is being recorded now.
#[inline]
pub(crate) fn is_tracing() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// Appends a counter sample (a `"ph":"C"` event) to the trace. Perfetto names the track
/// `"{name} {series}"`: `counter("queue", "depth", ..)` draws the track "queue depth".
pub(crate) fn counter(name: &str, series: &str, value: f64) {
    if !is_tracing() {
        return;
    }
    let Some(tracer) = TRACER.get() else { return };
    let ts = tracer.epoch.elapsed().as_nanos() as f64 / 1000.0;
    let entry = serde_json::json!({ "ph": "C", "pid": 1, "name": name, "ts": ts, "args": { series: value } });
    let entry = entry.to_string();
    tracer.writer.lock().write_line(entry.as_bytes());
}
