//! What instrumented calls do: the switches every call reads once (one relaxed load of one
//! atomic), and the session they record for. A leaf of the recording layer: the recorder, the
//! trace records and the sampler read these switches; the profiler and the trace writers set them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use crate::alloc::AllocatorKind;

/// What instrumented calls do, as bits: [`RECORDING`], [`SPANS_ALWAYS`], [`SPANS_FOR_TRACE`],
/// [`TRACE_RECORDS`].
/// One atomic, so that an idle call (no bit set) costs one relaxed load.
static MODE: AtomicU8 = AtomicU8::new(0);
/// A profiling session is recording statistics.
const RECORDING: u8 = 1;
/// The program asked for stage and function spans at all times ([`crate::trace::emit_spans`]).
const SPANS_ALWAYS: u8 = 2;
/// A Chrome trace is being written by tracing-chrome: it is made of the spans.
const SPANS_FOR_TRACE: u8 = 4;
/// A Chrome trace is being written by the native writer: calls write trace records.
const TRACE_RECORDS: u8 = 8;
/// The CPU sampler runs: calls keep its marker of the thread's stage and function.
#[cfg(feature = "cpu-sampling")]
const CPU_SAMPLING: u8 = 16;
/// Whether the running session's allocation figures are real (the counting allocator is in).
static COUNTING_ALLOCATOR: AtomicBool = AtomicBool::new(false);

/// Whether per-call allocation figures are measured in the running session.
#[inline]
pub(crate) fn allocations_measured() -> bool {
    COUNTING_ALLOCATOR.load(Ordering::Relaxed)
}
static SESSION: AtomicU64 = AtomicU64::new(0);

#[inline]
pub(crate) fn is_enabled() -> bool {
    MODE.load(Ordering::Relaxed) & RECORDING != 0
}

/// What instrumented calls do, read once per call: whether they record, and whether they make
/// their `tracing` spans.
#[derive(Clone, Copy)]
pub(crate) struct Mode(u8);

impl Mode {
    /// The switches now (one relaxed load).
    #[inline]
    pub(crate) fn now() -> Mode {
        Mode(MODE.load(Ordering::Relaxed))
    }

    /// Nothing records and no span is wanted.
    #[inline]
    pub(crate) fn is_idle(self) -> bool {
        self.0 == 0
    }

    /// Calls make their `tracing` spans (a trace is written, or [`crate::trace::emit_spans`]).
    #[inline]
    pub(crate) fn wants_spans(self) -> bool {
        self.0 & (SPANS_ALWAYS | SPANS_FOR_TRACE) != 0
    }

    /// Spans are made for the program's own subscribers ([`crate::trace::emit_spans`]), not
    /// only for a Chrome trace being written.
    #[inline]
    pub(crate) fn emits_spans(self) -> bool {
        self.0 & SPANS_ALWAYS != 0
    }

    /// Calls write trace records (the native trace writer is on).
    #[inline]
    pub(crate) fn writes_records(self) -> bool {
        self.0 & TRACE_RECORDS != 0
    }

    /// The same switches, trace records off.
    #[inline]
    pub(crate) fn without_trace_records(self) -> Mode {
        Mode(self.0 & !TRACE_RECORDS)
    }

    /// The CPU sampler runs: calls keep its marker.
    #[cfg(feature = "cpu-sampling")]
    #[inline]
    pub(crate) fn samples_cpu(self) -> bool {
        self.0 & CPU_SAMPLING != 0
    }

    /// A session records statistics: calls open a frame.
    #[inline]
    pub(crate) fn records(self) -> bool {
        self.0 & RECORDING != 0
    }
}

fn set_mode_bit(bit: u8, on: bool) {
    if on {
        MODE.fetch_or(bit, Ordering::AcqRel);
    } else {
        MODE.fetch_and(!bit, Ordering::AcqRel);
    }
}

/// Whether stage and function spans are made at all times ([`crate::trace::emit_spans`]).
pub(crate) fn set_spans_always(on: bool) {
    set_mode_bit(SPANS_ALWAYS, on);
}

/// Whether stage and function spans are made for the Chrome trace being written.
#[cfg(feature = "tracing-chrome")]
pub(crate) fn set_spans_for_trace(on: bool) {
    set_mode_bit(SPANS_FOR_TRACE, on);
}

/// Whether stage and function calls write trace records (the native writer is on).
pub(crate) fn set_trace_records(on: bool) {
    set_mode_bit(TRACE_RECORDS, on);
}

/// Whether calls keep the CPU sampler's marker (the sampler runs).
#[cfg(feature = "cpu-sampling")]
pub(crate) fn set_cpu_sampling(on: bool) {
    set_mode_bit(CPU_SAMPLING, on);
}

/// Whether a program asked for spans at all times, or the tracing-chrome backend wants them.
pub(crate) fn wants_spans() -> bool {
    Mode::now().wants_spans()
}

#[inline]
pub(crate) fn current_session() -> u64 {
    SESSION.load(Ordering::Relaxed)
}

/// Records which allocator the session about to start measures with (per-call allocation
/// figures are real only with the counting allocator).
pub(crate) fn note_allocator(allocator: AllocatorKind) {
    COUNTING_ALLOCATOR.store(allocator == AllocatorKind::Counting, Ordering::Relaxed);
}

/// Starts a new session: figures recorded before it are ignored from now on.
pub(crate) fn begin_session(allocator: AllocatorKind) -> u64 {
    note_allocator(allocator);
    let session = SESSION.fetch_add(1, Ordering::AcqRel) + 1;
    set_mode_bit(RECORDING, true);
    session
}

/// Stops recording. Calls still open are not recorded.
pub(crate) fn end_session() {
    set_mode_bit(RECORDING, false);
}
