//! What running code (the worker pool, the heap sampler) marks in a trace: an event's slice, its
//! submission, the instants where events stop, counter samples. Written as records for the native
//! writer, or as `tracing` spans and events for the tracing-chrome backend (and for a program
//! that asked for spans), so the pool does not need to know which writer runs.

use std::sync::OnceLock;

use super::CounterTrack;
use super::{active, begin_event, end_slice, is_traced, set_traced, traces_event, Token};
#[cfg(feature = "tokio")]
use super::{begin_event_async, begin_poll, end_event_async, next_flow_id, set_event_track};
use crate::clock::now_ns;

/// The slice of one event a worker processes; its stages nest inside. Ends when dropped.
pub(crate) struct EventSlice {
    token: Token,
    span: Option<tracing::span::EnteredSpan>,
    was_traced: bool,
}

impl EventSlice {
    /// Begins the slice of event `id` (picked off the queue now, after `wait_ns` in it; `flow`
    /// is its submission's arrow, 0 for none; `parent` the span it was submitted in). Per-event
    /// sampling decides whether anything the event does is traced.
    pub(crate) fn begin(
        id: u64,
        wait_ns: u64,
        flow: u64,
        picked_ns: u64,
        parent: Option<&tracing::Span>,
    ) -> Self {
        let native = active() != 0;
        let traced = traces_event(id);
        let was_traced = set_traced(traced);
        let token =
            if native && traced { begin_event(picked_ns, id, wait_ns, flow) } else { Token::NONE };
        let span = (!native && traced && crate::mode::wants_spans())
            .then(|| event_span(id, wait_ns, parent).entered());
        EventSlice { token, span, was_traced }
    }
}

impl Drop for EventSlice {
    fn drop(&mut self) {
        end_slice(self.token, now_ns(), 0, 0, None);
        drop(self.span.take());
        set_traced(self.was_traced);
    }
}

/// The slice of one event an async worker processes: an async slice (the event's future moves
/// between threads and waits between polls) on a track of its own where its stages nest, ended
/// when dropped. Each poll of the event's future runs under [`AsyncEventSlice::poll`], which
/// draws the poll on the polling thread's track and makes the event's sampling decision hold for
/// whatever that poll does.
#[cfg(feature = "tokio")]
pub(crate) struct AsyncEventSlice {
    id: u64,
    /// Its track in the trace (0: not traced).
    track: u64,
    generation: u32,
    /// Per-event sampling's decision for this event.
    traced: bool,
    /// Its `tracing` span, when the program asked for spans (tracing-chrome, `emit_spans`).
    span: Option<tracing::Span>,
}

#[cfg(feature = "tokio")]
impl AsyncEventSlice {
    /// Begins the slice of event `id` (picked off the queue at `picked_ns`, after `wait_ns` in
    /// it; `flow` is its submission's arrow, 0 for none, and becomes the track's id; `parent`
    /// is the span it was submitted in).
    pub(crate) fn begin(
        id: u64,
        wait_ns: u64,
        flow: u64,
        picked_ns: u64,
        parent: Option<&tracing::Span>,
    ) -> Self {
        let generation = active();
        let traced = traces_event(id);
        let mut track = 0;
        if generation != 0 && traced {
            let candidate = if flow != 0 { flow } else { next_flow_id() };
            if begin_event_async(picked_ns, id, wait_ns, candidate, flow != 0) {
                track = candidate;
            }
        }
        let span = (generation == 0 && traced && crate::mode::wants_spans())
            .then(|| event_span(id, wait_ns, parent));
        AsyncEventSlice { id, track, generation, traced, span }
    }

    /// Runs one poll of the event's future (`poll`) on this thread: drawn as a `poll` slice on
    /// the thread's track, with the event's stages nesting on its own track.
    pub(crate) fn poll<T>(&self, poll: impl FnOnce() -> T) -> T {
        let _polling = self.enter(true);
        poll()
    }

    /// Makes what this thread does next belong to the event (traced or not, its stages on its
    /// track) until the guard drops; `draw` also draws it as a poll on the thread's track.
    pub(crate) fn enter(&self, draw: bool) -> EnteredEvent<'_> {
        let was_traced = set_traced(self.traced);
        let was_track = set_event_track(self.track);
        let token =
            if draw && self.track != 0 { begin_poll(now_ns(), self.id) } else { Token::NONE };
        let span = self.span.as_ref().map(tracing::Span::enter);
        EnteredEvent { token, was_traced, was_track, _span: span }
    }
}

#[cfg(feature = "tokio")]
impl Drop for AsyncEventSlice {
    fn drop(&mut self) {
        if self.track != 0 && active() == self.generation {
            end_event_async(now_ns(), self.track);
        }
    }
}

/// What [`AsyncEventSlice::enter`] changed on this thread, put back when dropped.
#[cfg(feature = "tokio")]
pub(crate) struct EnteredEvent<'a> {
    token: Token,
    was_traced: bool,
    was_track: u64,
    _span: Option<tracing::span::Entered<'a>>,
}

#[cfg(feature = "tokio")]
impl Drop for EnteredEvent<'_> {
    fn drop(&mut self) {
        end_slice(self.token, now_ns(), 0, 0, None);
        set_event_track(self.was_track);
        set_traced(self.was_traced);
    }
}

/// An event's `tracing` span: a child of the span it was submitted in (so a request and the
/// events it submitted are one trace in an OpenTelemetry backend), a root without one.
fn event_span(id: u64, wait_ns: u64, parent: Option<&tracing::Span>) -> tracing::Span {
    let parent = parent.and_then(tracing::Span::id);
    // Numbers as `i64`: tracing-opentelemetry records a `u64` as text.
    let (id, queue_wait_us) = (super::span_number(id), super::span_number(wait_ns / 1000));
    tracing::info_span!(target: "pipeline", parent: parent, "event", id, queue_wait_us)
}

/// A producer handing event `id` to the queue: the start of its flow arrow.
pub(crate) struct Submission {
    start_ns: u64,
    id: u64,
    /// The arrow's id (0: not traced).
    pub(crate) flow: u64,
}

impl Submission {
    /// Starts timing the submission of event `id`.
    pub(crate) fn begin(id: u64) -> Self {
        let flow = if active() != 0 && traces_event(id) { super::next_flow_id() } else { 0 };
        Submission { start_ns: if flow != 0 { now_ns() } else { 0 }, id, flow }
    }

    /// The event is in the queue: writes the submission's slice.
    pub(crate) fn end(self) {
        if self.flow != 0 {
            super::submit(self.start_ns, now_ns(), self.id, self.flow);
        }
    }
}

/// Why an event stopped, for its instant.
pub(crate) enum StopMark<'a> {
    /// A filter dropped it (`process` returned `None`).
    Filtered,
    Rejected {
        reason: &'a str,
    },
    Panicked {
        message: &'a str,
    },
    Failed {
        error: &'a dyn std::fmt::Display,
    },
}

/// Marks where event `id` was stopped by `stage`.
pub(crate) fn stop(id: u64, stage: &str, stop: &StopMark<'_>) {
    if active() != 0 {
        let (marker, key, text) = match stop {
            StopMark::Filtered => {
                super::instant(now_ns(), "filtered", || {
                    let args =
                        serde_json::json!({ "event": id, "stage": super::bounded_text(stage) });
                    args.to_string()
                });
                return;
            }
            StopMark::Rejected { reason } => ("rejected", "reason", (*reason).to_owned()),
            StopMark::Panicked { message } => ("panic", "message", (*message).to_owned()),
            StopMark::Failed { error } => {
                ("failed", "error", super::guarded_text(|| error.to_string()))
            }
        };
        super::instant(now_ns(), marker, || {
            let args = serde_json::json!({
                "event": id,
                "stage": super::bounded_text(stage),
                key: super::bounded_text(&text),
            });
            args.to_string()
        });
        return;
    }
    if !crate::mode::wants_spans() || !is_traced() {
        return;
    }
    // tracing-chrome: events, with user text bounded like the native writer's.
    let stage = super::bounded_text(stage);
    match stop {
        StopMark::Filtered => {
            tracing::info!(target: "pipeline", marker = "filtered", event = id, stage = %stage, "event filtered");
        }
        StopMark::Rejected { reason } => {
            let reason = super::bounded_text(reason);
            tracing::info!(target: "pipeline", marker = "rejected", event = id, stage = %stage, %reason, "event rejected");
        }
        StopMark::Panicked { message } => {
            let message = super::bounded_text(message);
            tracing::error!(target: "pipeline", marker = "panic", event = id, stage = %stage, %message, "stage panicked");
        }
        StopMark::Failed { error } => {
            let error = super::guarded_text(|| error.to_string());
            tracing::warn!(target: "pipeline", marker = "failed", event = id, stage = %stage, %error, "stage failed");
        }
    }
}

/// Marks the first moment a queue of `capacity` was full.
pub(crate) fn queue_full(capacity: usize) {
    if active() != 0 {
        super::instant(now_ns(), "queue full", || format!("{{\"capacity\":{capacity}}}"));
    } else if crate::mode::wants_spans() {
        tracing::warn!(
            target: "pipeline",
            marker = "queue full",
            capacity,
            "the queue reached its capacity: submitters now wait"
        );
    }
}

/// Where counter samples go while the tracing-chrome backend writes (set by that backend).
static COUNTER_SINK: OnceLock<fn(CounterTrack, f64)> = OnceLock::new();

/// Registers the tracing-chrome backend's counter writer.
#[cfg(feature = "tracing-chrome")]
pub(crate) fn set_counter_sink(sink: fn(CounterTrack, f64)) {
    let _ = COUNTER_SINK.set(sink);
}

/// Appends a counter sample to the trace being written, whichever writer writes it.
pub(crate) fn counter(track: CounterTrack, value: f64) {
    if active() != 0 {
        super::counter(now_ns(), track, value);
    } else if let Some(sink) = COUNTER_SINK.get() {
        sink(track, value);
    }
}
