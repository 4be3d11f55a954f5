//! Trace records: what instrumented code writes, once, into its own thread's buffer, for the
//! native trace writer to read (ARCHITECTURE.md, "Recorded once, read twice").
//!
//! A thread appends [`Record`]s to its current chunk, packed into 24-byte units (`packed`: a
//! span's begin and end take one each), with plain stores and one release store of the chunk's
//! length: no lock shared between threads, no allocation, no formatting.
//! A full chunk is handed to the thread's slot (one uncontended lock per chunk) and the writer is
//! woken; the writer also reads the published part of a chunk still being filled, so a quiet
//! thread's records reach the file too.
//!
//! Memory is bounded: chunks come from a pool that holds at most [`start`]'s limit of units in
//! all. A thread's first chunk is small and each next one twice as big (see [`pool`]), so
//! hundreds of threads that write a little each share the budget with the few that write a lot.
//! When a thread needs a new chunk and none can be had, the spans it begins are left out whole and counted
//! ([`left_out`]); an end is never left out once its begin was written, because every written
//! begin reserves room for its end in the chunk that holds it.
//!
//! Each trace has a generation: a record belongs to the trace that was running when its thread
//! wrote it, so records written late by a racing thread never leak into the next trace's file.

mod buffer;
mod marks;
mod packed;
mod pool;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub(crate) use buffer::{drain, set_writer_help, wait_for_chunks, Reader, SlotInfo};
pub(crate) use buffer::{keep_full, texts_taken, Keeper, KeptChunk};
#[cfg(feature = "tracing-chrome")]
pub(crate) use marks::set_counter_sink;
#[cfg(feature = "tokio")]
pub(crate) use marks::AsyncEventSlice;
pub(crate) use marks::{counter as mark_counter, queue_full, stop as mark_stop};
pub(crate) use marks::{EventSlice, StopMark, Submission};
pub(crate) use packed::{Packed, Records};

/// What kind of slice a [`Record::Begin`] opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SliceKind {
    /// A `#[stage]` call.
    Stage,
    /// A `#[profiled]` call.
    Function,
    /// A `tracing` span of the program's own, entered inside the trace.
    User,
}

/// The counter tracks the toolkit draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CounterTrack {
    /// The worker queue's depth, sampled.
    QueueDepth,
    /// The live heap (counting allocator), sampled.
    LiveHeap,
}

impl CounterTrack {
    /// The counter's name and its series (Perfetto names the track "{name} {series}").
    pub(crate) fn name_and_series(self) -> (&'static str, &'static str) {
        match self {
            CounterTrack::QueueDepth => ("queue", "depth"),
            CounterTrack::LiveHeap => ("heap", "live bytes"),
        }
    }
}

/// How an async call's slice ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AsyncOutcome {
    /// The future completed (a stage handed its event on).
    Completed,
    /// A stage completed and dropped its event (a filter).
    Filtered,
    /// A stage completed and rejected its event.
    Rejected,
    /// A stage completed with an error.
    Failed,
    /// A poll panicked.
    Panicked,
    /// The future was dropped before it completed.
    Cancelled,
}

impl AsyncOutcome {
    /// The word the trace shows for an outcome other than completing (none for that).
    pub(crate) fn note(self) -> Option<&'static str> {
        match self {
            AsyncOutcome::Completed => None,
            AsyncOutcome::Filtered => Some("filtered"),
            AsyncOutcome::Rejected => Some("rejected"),
            AsyncOutcome::Failed => Some("failed"),
            AsyncOutcome::Panicked => Some("panicked"),
            AsyncOutcome::Cancelled => Some("cancelled"),
        }
    }
}

/// One trace record, as writers make it and readers see it (chunks hold it packed: `packed`).
/// Timestamps are [`crate::clock::now_ns`] readings.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Record {
    /// A stage, function or user span began on this thread.
    Begin { ts: u64, name: &'static str, kind: SliceKind },
    /// A worker took an event off the queue: the event's slice began.
    EventBegin { ts: u64, id: u64, wait_ns: u64, flow: u64 },
    /// The innermost open slice of this thread ended, having allocated this much (nested calls
    /// included). With `outcome`, the next of the thread's texts is its outcome.
    End { ts: u64, allocations: u64, bytes: u64, outcome: bool },
    /// A producer queued an event: a complete slice where the event's flow arrow starts.
    Submit { start: u64, end: u64, id: u64, flow: u64 },
    /// An instant event; the next of the thread's texts holds its arguments (a JSON object).
    Instant { ts: u64, marker: &'static str },
    /// A counter sample.
    Counter { ts: u64, track: CounterTrack, value: f64 },
    /// An async call's first poll: its slice begins (it may end on another thread). On its
    /// own track (`id`), or `in_event` on the track of the event it is a stage of.
    AsyncBegin { ts: u64, name: &'static str, id: u64, in_event: bool },
    /// An async call ended.
    AsyncEnd { ts: u64, name: &'static str, id: u64, outcome: AsyncOutcome, in_event: bool },
    /// An async worker took an event off the queue: the event's async slice (on track `track`,
    /// where its stages nest) began; `flow` says whether its submission's arrow (also `track`)
    /// ends there.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // made by the async runner
    EventAsyncBegin { ts: u64, id: u64, wait_ns: u64, track: u64, flow: bool },
    /// An async event's slice ended.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // made by the async runner
    EventAsyncEnd { ts: u64, track: u64 },
    /// A worker thread began polling the future of async event `id` (a thread slice that ends
    /// with an [`Record::End`] when the poll returns).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // made by the async runner
    PollBegin { ts: u64, id: u64 },
}

impl Record {
    /// When it happened (a submission: when it ended).
    pub(crate) fn ts(&self) -> u64 {
        match *self {
            Record::Submit { end, .. } => end,
            Record::Begin { ts, .. }
            | Record::EventBegin { ts, .. }
            | Record::End { ts, .. }
            | Record::Instant { ts, .. }
            | Record::Counter { ts, .. }
            | Record::AsyncBegin { ts, .. }
            | Record::AsyncEnd { ts, .. }
            | Record::EventAsyncBegin { ts, .. }
            | Record::EventAsyncEnd { ts, .. }
            | Record::PollBegin { ts, .. } => ts,
        }
    }

    /// Whether a text of the thread's goes with this record.
    pub(crate) fn has_text(&self) -> bool {
        matches!(self, Record::Instant { .. } | Record::End { outcome: true, .. })
    }
}

/// The generation of the trace being recorded; 0 while none is.
static ACTIVE: AtomicU32 = AtomicU32::new(0);
/// The last generation handed out.
static LAST_GENERATION: AtomicU32 = AtomicU32::new(0);
/// Spans, instants and counters left out because no chunk was free, over the process's life.
static LEFT_OUT: AtomicU64 = AtomicU64::new(0);
/// While a session writes a trace: trace one event in this many (`Profiler::trace_one_in`); 0 when
/// no trace is being written.
static SAMPLE_EVERY: AtomicU64 = AtomicU64::new(0);
/// Without a trace: emit spans for one event in this many (`trace::emit_spans_one_in`).
static SPAN_SAMPLE_EVERY: AtomicU64 = AtomicU64::new(1);
static NEXT_FLOW: AtomicU64 = AtomicU64::new(1);
static NEXT_ASYNC: AtomicU64 = AtomicU64::new(1);

/// The generation being recorded, 0 when records are off.
#[inline]
pub(crate) fn active() -> u32 {
    ACTIVE.load(Ordering::Relaxed)
}

/// Starts recording a new trace whose chunks together hold at most `unit_limit` units
/// ([`Packed`], 24 bytes: a span's begin or end takes one). Returns its generation.
pub(crate) fn start(unit_limit: usize, trace_one_in: u64) -> u32 {
    pool::set_limit(unit_limit);
    SAMPLE_EVERY.store(trace_one_in.max(1), Ordering::Relaxed);
    let generation = LAST_GENERATION.fetch_add(1, Ordering::AcqRel).wrapping_add(1).max(1);
    ACTIVE.store(generation, Ordering::Release);
    generation
}

/// Stops recording: calls open now write no end (the writer closes their slices).
pub(crate) fn stop() {
    ACTIVE.store(0, Ordering::Release);
    SAMPLE_EVERY.store(0, Ordering::Relaxed);
}

/// Records left out since the process started (spans whole, instants, counters).
pub(crate) fn left_out() -> u64 {
    LEFT_OUT.load(Ordering::Relaxed)
}

fn count_left_out() {
    LEFT_OUT.fetch_add(1, Ordering::Relaxed);
}

/// Whether event number `id` goes into the trace (`Profiler::trace_one_in`) or, without a trace,
/// gets spans (`trace::emit_spans_one_in`): decided once per event, so its slices or spans
/// are all there or all absent.
#[inline]
pub(crate) fn traces_event(id: u64) -> bool {
    let every = match SAMPLE_EVERY.load(Ordering::Relaxed) {
        0 => SPAN_SAMPLE_EVERY.load(Ordering::Relaxed),
        every => every,
    };
    id % every.max(1) == 0
}

/// Sets the trace's per-event sampling without starting native records (the tracing-chrome
/// backend); 0 when its trace ends.
#[cfg(feature = "tracing-chrome")]
pub(crate) fn set_trace_one_in(n: u64) {
    SAMPLE_EVERY.store(n, Ordering::Relaxed);
}

/// Sets the per-event sampling of spans emitted without a trace (`trace::emit_spans_one_in`).
pub(crate) fn set_span_trace_one_in(n: u64) {
    SPAN_SAMPLE_EVERY.store(n.max(1), Ordering::Relaxed);
}

/// Marks whether what this thread does next belongs in the trace (a worker's per-event sampling
/// decision). Returns the previous value.
pub(crate) fn set_traced(traced: bool) -> bool {
    buffer::set_traced(traced)
}

/// Whether this thread's current work is traced (see [`set_traced`]).
pub(crate) fn is_traced() -> bool {
    buffer::is_traced()
}

/// A fresh id for an event's flow arrow (never 0).
pub(crate) fn next_flow_id() -> u64 {
    NEXT_FLOW.fetch_add(1, Ordering::Relaxed)
}

/// A written begin, to hand back to [`end_slice`]; [`Token::NONE`] when nothing was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Token(u32);

impl Token {
    /// Nothing was written: the end writes nothing either.
    pub(crate) const NONE: Token = Token(0);
}

/// Writes the begin of a stage, function or user slice; the end must follow on this thread.
#[inline]
pub(crate) fn begin_slice(ts: u64, name: &'static str, kind: SliceKind) -> Token {
    buffer::with(|buffer| buffer.begin(Record::Begin { ts, name, kind }))
}

/// Writes the begin of a stage or function slice stamped by `stamp` (the call's own clock
/// reading, taken after any wait for the writer). Returns the token for [`end_slice`] and how
/// long this thread waited for the writer (to leave out of the calls enclosing this one).
/// `stamp` is called exactly once, whatever happens.
#[inline]
pub(crate) fn begin_slice_at(
    name: &'static str,
    kind: SliceKind,
    stamp: impl FnOnce() -> u64,
) -> (Token, u64) {
    let mut stamp = Some(stamp);
    let written = buffer::try_with(|buffer| {
        buffer.begin_stamped(name, kind, || (stamp.take().expect("once"))())
    });
    match written {
        Some(result) => result,
        None => {
            if let Some(stamp) = stamp {
                stamp();
            }
            (Token::NONE, 0)
        }
    }
}

/// Writes the begin of a worker's event slice.
pub(crate) fn begin_event(ts: u64, id: u64, wait_ns: u64, flow: u64) -> Token {
    buffer::with(|buffer| buffer.begin(Record::EventBegin { ts, id, wait_ns, flow }))
}

/// Writes the end of the slice `token` began (nothing for [`Token::NONE`] or a begin of an
/// earlier trace). `outcome` says how a stage call failed; it is called only when written.
#[inline]
pub(crate) fn end_slice(
    token: Token,
    ts: u64,
    allocations: u64,
    bytes: u64,
    outcome: Option<&dyn Fn() -> String>,
) {
    if token == Token::NONE {
        return;
    }
    buffer::with(|buffer| buffer.end(token, ts, allocations, bytes, outcome));
}

/// Writes a producer's submission of an event (a complete slice the flow arrow starts from).
pub(crate) fn submit(start: u64, end: u64, id: u64, flow: u64) {
    buffer::with(|buffer| buffer.single(Record::Submit { start, end, id, flow }, None));
}

/// Writes an instant event; `args` renders its arguments as a JSON object (user text in it is
/// bounded by [`bounded_text`]).
pub(crate) fn instant(ts: u64, marker: &'static str, args: impl FnOnce() -> String) {
    if active() == 0 || !is_traced() {
        return;
    }
    let text = {
        let _bookkeeping = crate::alloc::bookkeeping();
        args().into_boxed_str()
    };
    buffer::with(|buffer| buffer.single(Record::Instant { ts, marker }, Some(text)));
}

/// Writes a counter sample.
pub(crate) fn counter(ts: u64, track: CounterTrack, value: f64) {
    if active() == 0 {
        return;
    }
    buffer::with(|buffer| buffer.single(Record::Counter { ts, track, value }, None));
}

/// An async call's slice, begun on its first poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AsyncSlice {
    generation: u32,
    id: u64,
    in_event: bool,
}

/// Writes the begin of an async call's slice, on a track of its own.
pub(crate) fn begin_async(ts: u64, name: &'static str) -> Option<AsyncSlice> {
    let id = NEXT_ASYNC.fetch_add(1, Ordering::Relaxed);
    begin_async_on(ts, name, id, false)
}

/// Writes the begin of a stage's slice on the track of the async event being polled (see
/// [`event_track`]); nothing outside a traced event.
pub(crate) fn begin_stage_in_event(ts: u64, name: &'static str) -> Option<AsyncSlice> {
    match event_track() {
        0 => None,
        track => begin_async_on(ts, name, track, true),
    }
}

fn begin_async_on(ts: u64, name: &'static str, id: u64, in_event: bool) -> Option<AsyncSlice> {
    let generation = active();
    if generation == 0 || !is_traced() {
        return None;
    }
    let record = Record::AsyncBegin { ts, name, id, in_event };
    let written = buffer::with(|buffer| buffer.single(record, None));
    written.then_some(AsyncSlice { generation, id, in_event })
}

/// Writes the end of an async call's slice (on whichever thread it ended).
pub(crate) fn end_async(slice: AsyncSlice, ts: u64, name: &'static str, outcome: AsyncOutcome) {
    if active() != slice.generation {
        return; // that trace is over; its writer closed the slice
    }
    let record = Record::AsyncEnd { ts, name, id: slice.id, outcome, in_event: slice.in_event };
    buffer::with(|buffer| buffer.single(record, None));
}

thread_local! {
    /// The track of the async event whose future this thread is polling (0: none).
    static EVENT_TRACK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The track of the traced async event this thread is polling now, 0 when none: its stages'
/// slices go there, nested in the event's.
#[inline]
pub(crate) fn event_track() -> u64 {
    EVENT_TRACK.try_with(std::cell::Cell::get).unwrap_or(0)
}

/// Sets [`event_track`] for what this thread does next; returns the previous value.
#[cfg(feature = "tokio")]
pub(crate) fn set_event_track(track: u64) -> u64 {
    EVENT_TRACK.try_with(|cell| cell.replace(track)).unwrap_or(0)
}

/// Writes the begin of an async event's slice on `track` (`flow`: its submission's arrow ends
/// there, under the same id).
#[cfg(feature = "tokio")]
pub(crate) fn begin_event_async(ts: u64, id: u64, wait_ns: u64, track: u64, flow: bool) -> bool {
    let record = Record::EventAsyncBegin { ts, id, wait_ns, track, flow };
    buffer::with(|buffer| buffer.single(record, None))
}

/// Writes the end of an async event's slice.
#[cfg(feature = "tokio")]
pub(crate) fn end_event_async(ts: u64, track: u64) {
    buffer::with(|buffer| buffer.single(Record::EventAsyncEnd { ts, track }, None));
}

/// Writes the begin of a poll of async event `id`'s future on this thread; [`end_slice`] ends it.
#[cfg(feature = "tokio")]
pub(crate) fn begin_poll(ts: u64, id: u64) -> Token {
    buffer::with(|buffer| buffer.begin(Record::PollBegin { ts, id }))
}

thread_local! {
    /// Set while the toolkit makes, enters or leaves its own `tracing` spans.
    static INTERNAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` as the toolkit's own span handling: the user-span layer ignores what happens in it
/// (stage and function calls are written as records already).
#[inline]
pub(crate) fn as_internal<T>(f: impl FnOnce() -> T) -> T {
    let was = INTERNAL.try_with(|flag| flag.replace(true)).unwrap_or(true);
    let result = f();
    let _ = INTERNAL.try_with(|flag| flag.set(was));
    result
}

/// Whether the calling thread is inside [`as_internal`].
pub(crate) fn is_internal() -> bool {
    INTERNAL.try_with(std::cell::Cell::get).unwrap_or(true)
}

/// A count as a `tracing` span field: `i64`, which every subscriber records as a number
/// (tracing-opentelemetry records a `u64` as text). Saturated; no count comes near `i64::MAX`.
pub(crate) fn span_number(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// At most this many bytes of any user text go into a trace or a report.
pub(crate) const TEXT_LIMIT: usize = 1024;

/// `text` cut to [`TEXT_LIMIT`] bytes (at a character boundary), marked when cut.
pub(crate) fn bounded_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= TEXT_LIMIT {
        return text.into();
    }
    let mut cut = TEXT_LIMIT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… [cut: {} bytes in all]", &text[..cut], text.len()).into()
}

/// Renders `render`'s text, bounded; a `Display` that panics gives a note instead of unwinding
/// through the recorder.
pub(crate) fn guarded_text(render: impl FnOnce() -> String) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(render)) {
        Ok(text) => bounded_text(&text).into_owned(),
        Err(_) => "(the error's `Display` panicked while formatting this message)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_at_a_character_boundary_and_marked() {
        let long = "é".repeat(2000);
        let cut = bounded_text(&long);
        assert!(cut.len() < TEXT_LIMIT + 64);
        assert!(cut.contains("[cut: 4000 bytes in all]"), "{cut}");
        assert_eq!(bounded_text("short"), "short");
    }

    #[test]
    fn a_panicking_display_gives_a_note() {
        let text = guarded_text(|| panic!("boom"));
        assert!(text.contains("panicked"), "{text}");
    }
}
