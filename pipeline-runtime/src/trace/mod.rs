//! Chrome trace JSON (opens in ui.perfetto.dev), written while a profiling session runs.
//!
//! Two backends write it ([`TraceBackend`]):
//!
//! - **native** (the default): instrumented calls append fixed-size records to their own thread's
//!   buffer, and one writer thread formats them as JSON and streams them to the file. Every span
//!   is kept at a small multiple of the statistics' cost; memory is bounded by a pool of record
//!   chunks, and if the writer ever falls that far behind, whole spans are left out and counted.
//! - **tracing-chrome** (feature `tracing-chrome`): the stage and function spans are real
//!   `tracing` spans, written by the `tracing-chrome` crate. Kept as the reference the native
//!   writer is checked against.
//!
//! Both write one track per thread (named), a slice per stage call with its `#[profiled]`
//! functions nested inside, the worker's per-event slices, counters (queue depth, live heap),
//! instants (rejected, panic, failed, queue full), and close the file with a `pipeline_profile`
//! metadata entry: which slices are stages, whether allocations were measured, how many records
//! were left out. The native writer adds flow arrows from each event's submission to its slice,
//! async calls as one async slice each, and the program's own spans (see [`layer`]).

#[cfg(feature = "tracing-chrome")]
mod chrome;
mod flight;
mod native;
mod spans;
mod switch;
mod user_spans;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

#[cfg(feature = "prometheus")]
pub(crate) use flight::dumps_written;
pub(crate) use flight::FlightSession;
pub use flight::{DumpTrigger, FlightDump, FlightRecorder, FlightSummary, DEFAULT_MAX_BYTES};
use user_spans::UserSpans;

pub use spans::{emit_spans, emit_spans_one_in};

use crate::error::Error;
use crate::trace_records;

/// Which writer produces the Chrome trace (`Profiler::trace_backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum TraceBackend {
    /// The toolkit's own writer: per-thread binary records, JSON formatted on one writer thread.
    #[default]
    Native,
    /// `tracing-chrome` writing the stage and function `tracing` spans (feature
    /// `tracing-chrome`).
    #[cfg(feature = "tracing-chrome")]
    TracingChrome,
}

/// The default bound of the tracing-chrome backend's queue, in entries (~250 bytes each, so
/// ~25 MB): past it, new spans are left out whole and counted.
pub const MAX_BACKLOG: u64 = 100_000;

/// The default bound of the native writer's buffers, in records (24 bytes each: 3 MiB). It
/// absorbs bursts; a thread that makes spans faster than the writer formats them for longer
/// waits for it (its waits are left out of the calls' figures), and only a writer stalled for
/// a second (a stuck disk) makes spans be left out.
pub const NATIVE_BUFFER_RECORDS: u64 = 1 << 17;

/// The name of the metadata entry that closes each trace: which slices are `#[stage]` calls, and
/// whether allocations were measured. Stage slices carry arguments only when they say something
/// (a failure, allocations), so a reader needs this to tell a stage from a function and "no
/// allocations" from "not measured". Perfetto ignores metadata it does not know.
pub(crate) const PROFILE_METADATA: &str = "pipeline_profile";

/// The trace layers, for a program that installs its own subscriber:
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
/// tracing_subscriber::registry().with(pipeline_runtime::trace::layer().expect("first call")).init();
/// // Profiler::new().chrome_trace("trace.json").start() then also traces the program's spans.
/// ```
///
/// They record only while a profiling session writes a Chrome trace: the program's own spans go
/// into the native trace, and with the `tracing-chrome` feature, every span into that backend's
/// trace. Without them (and without a subscriber of the program's), the profiler installs its
/// own when a trace starts. The layer is a `tracing_subscriber` 0.3 `Layer`: nothing else of its
/// make-up is part of this crate's API.
///
/// # Errors
///
/// [`Error::TraceLayerExists`] if the layer was already made in this process (one per process:
/// a second would record every span twice, and tracing-chrome supports one layer per process).
pub fn layer<S>() -> Result<impl Layer<S> + Send + Sync, Error>
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    claim_layer()?;
    #[cfg(feature = "tracing-chrome")]
    let layer = UserSpans.and_then(chrome::filtered_layer()?);
    #[cfg(not(feature = "tracing-chrome"))]
    let layer = UserSpans;
    Ok(layer)
}

/// Whether the trace layer was made (in the program's subscriber or the profiler's).
static LAYER_MADE: AtomicBool = AtomicBool::new(false);

/// Refuses a second layer before building anything: tracing-chrome's constructor points the
/// calling thread's cached channel at the new layer, so even a layer built and then discarded
/// would send this thread's events nowhere.
fn claim_layer() -> Result<(), Error> {
    if LAYER_MADE.swap(true, Ordering::AcqRel) {
        return Err(Error::TraceLayerExists);
    }
    Ok(())
}

/// Installs `Registry + layers` as the global subscriber, unless the program's subscriber has
/// [`layer`] already.
///
/// # Errors
///
/// [`Error::SubscriberTaken`] if the program set a subscriber without [`layer`].
fn install_subscriber() -> Result<(), Error> {
    static INSTALLED: std::sync::Mutex<Option<bool>> = std::sync::Mutex::new(None);
    let mut installed = INSTALLED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(done) = *installed {
        return if done { Ok(()) } else { Err(Error::SubscriberTaken) };
    }
    if tracing::dispatcher::has_been_set() {
        // Either the program added `layer()` to its subscriber, or the user spans and the
        // tracing-chrome backend are out of reach.
        let ours = LAYER_MADE.load(Ordering::Acquire);
        *installed = Some(ours);
        return if ours { Ok(()) } else { Err(Error::SubscriberTaken) };
    }
    claim_layer()?;
    let subscriber = tracing_subscriber::registry().with(UserSpans);
    #[cfg(feature = "tracing-chrome")]
    let subscriber = subscriber.with(chrome::filtered_layer()?);
    let subscriber = subscriber.with(switch::SessionSwitch);
    let set = tracing::subscriber::set_global_default(subscriber).is_ok();
    *installed = Some(set);
    if set {
        Ok(())
    } else {
        Err(Error::SubscriberTaken)
    }
}

enum Writer {
    Native(native::NativeTrace),
    #[cfg(feature = "tracing-chrome")]
    Chrome(chrome::ChromeTrace),
}

/// A trace file being written by the running session.
pub(crate) struct TraceSession {
    writer: Writer,
    backend: TraceBackend,
    finished: bool,
    left_out_at_start: u64,
    trace_one_in: u64,
}

impl std::fmt::Debug for TraceSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSession").field("path", &self.path()).finish_non_exhaustive()
    }
}

/// How a session's trace is to be written.
pub(crate) struct TraceOptions<'a> {
    pub path: &'a Path,
    pub process_name: &'a str,
    pub backend: TraceBackend,
    pub trace_one_in: u64,
    /// Records (native) or entries (tracing-chrome) that may wait for the writer.
    pub backlog_limit: Option<u64>,
}

impl TraceSession {
    /// Creates the file (an unwritable path is an error now, not a missing file later) and turns
    /// recording on.
    pub(crate) fn start(options: &TraceOptions<'_>) -> Result<Self, Error> {
        let path = options.path;
        let write_error = |source| Error::Write { what: "trace", path: path.to_owned(), source };
        let file = File::create(path).map_err(write_error)?;
        let trace_one_in = options.trace_one_in.max(1);
        let left_out_at_start = left_out();
        let writer = match options.backend {
            TraceBackend::Native => {
                // The program's own spans join the trace through the layer when it can be had.
                let _ = install_subscriber();
                let records = options.backlog_limit.unwrap_or(NATIVE_BUFFER_RECORDS);
                let records = usize::try_from(records).unwrap_or(usize::MAX);
                let trace = native::NativeTrace::start(
                    file,
                    path,
                    options.process_name,
                    records,
                    trace_one_in,
                )
                .map_err(write_error)?;
                Writer::Native(trace)
            }
            #[cfg(feature = "tracing-chrome")]
            TraceBackend::TracingChrome => Writer::Chrome(chrome::ChromeTrace::start(
                file,
                path,
                options.process_name,
                trace_one_in,
                options.backlog_limit.unwrap_or(MAX_BACKLOG),
            )?),
        };
        Ok(TraceSession {
            writer,
            backend: options.backend,
            finished: false,
            left_out_at_start,
            trace_one_in,
        })
    }

    fn path(&self) -> &Path {
        match &self.writer {
            Writer::Native(trace) => trace.path(),
            #[cfg(feature = "tracing-chrome")]
            Writer::Chrome(trace) => trace.path(),
        }
    }

    /// Stops recording, writes what was recorded, and closes the file.
    pub(crate) fn finish(&mut self) -> Result<(), Error> {
        if std::mem::replace(&mut self.finished, true) {
            return Ok(());
        }
        let stages = crate::callsite::stage_names();
        let left_out = left_out().saturating_sub(self.left_out_at_start);
        match &self.writer {
            Writer::Native(trace) => trace.finish(&stages, left_out).map(drop).map_err(|source| {
                Error::Write { what: "trace", path: trace.path().to_owned(), source }
            }),
            #[cfg(feature = "tracing-chrome")]
            Writer::Chrome(trace) => trace.finish(&stages, left_out),
        }
    }

    /// What the report says about this trace.
    pub(crate) fn summary(&self) -> TraceSummary {
        TraceSummary {
            path: self.path().to_owned(),
            backend: self.backend,
            traced_one_in: self.trace_one_in,
            spans_left_out: left_out().saturating_sub(self.left_out_at_start),
        }
    }
}

impl Drop for TraceSession {
    fn drop(&mut self) {
        // Also while a panic unwinds: the trace ends up complete with what was recorded.
        let _ = self.finish();
    }
}

/// Records left out of traces so far, by either backend.
fn left_out() -> u64 {
    #[cfg(feature = "tracing-chrome")]
    let chrome = chrome::dropped();
    #[cfg(not(feature = "tracing-chrome"))]
    let chrome = 0;
    trace_records::left_out() + chrome
}

/// The Chrome trace a session wrote.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TraceSummary {
    /// Where it is.
    pub path: PathBuf,
    /// Which writer wrote it.
    pub backend: TraceBackend,
    /// One event in this many is traced (1: all); statistics cover every event regardless.
    pub traced_one_in: u64,
    /// Spans (and instants, counter samples) left out because the trace writer fell too far
    /// behind: memory stays bounded instead. 0 unless the writer stalled or its buffer limit
    /// (`Profiler::trace_backlog_limit`) is tiny.
    pub spans_left_out: u64,
}
