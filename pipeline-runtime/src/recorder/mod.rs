//! Recording: cheap, per-thread, on the hot path. Reading and interpreting the figures is the
//! job of [`report`](crate::report).
//!
//! The macros emit a `static` [`Callsite`] per annotated stage or function; on each call the
//! runtime reads the [`Mode`] once and, when a session records, opens a frame with
//! [`Mode::enter`]. Figures go into the calling thread's own shard; [`collect`] merges all
//! shards.

mod callsite;
mod shard;
mod stack;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

#[cfg(feature = "cpu-sampling")]
pub(crate) use callsite::callsites;
pub(crate) use callsite::CallsiteId;
pub(crate) use callsite::{interned_short_type_name, lookup, stage_names};
pub use callsite::{Callsite, CallsiteKind};
pub(crate) use shard::{CallStats, Row};
pub(crate) use stack::leave_out_of_open_calls;
pub use stack::{AsyncCall, CallGuard, PollGuard};

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

    /// Starts measuring a call of `callsite` when a session records; an idle guard otherwise.
    #[inline]
    pub(crate) fn enter(self, callsite: &'static Callsite) -> CallGuard {
        if self.0 & RECORDING == 0 {
            return CallGuard::idle();
        }
        stack::enter_recording(callsite, self)
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

/// Calls `visit` with every thread's rows of `session`, one thread at a time and without copying
/// them: a thread's table is locked only while its rows are visited (its owner takes that lock
/// once per 64 calls, never per call). A row appears once per thread that recorded it.
pub(crate) fn visit_rows(session: u64, mut visit: impl FnMut(CallsiteId, CallsiteId, &CallStats)) {
    for shard in shard::all_shards() {
        shard.visit(session, &mut visit);
    }
}

/// The call times of `#[stage]` `name` in `session` so far (every thread's calls, under any
/// enclosing stage), as one histogram: what the flight recorder's latency triggers judge.
pub(crate) fn stage_distribution(session: u64, name: &str) -> hdrhistogram::Histogram<u64> {
    let mut merged = crate::durations::histogram();
    visit_rows(session, |_, site, stats| {
        let site = lookup(site);
        if site.kind() == CallsiteKind::Stage && site.name() == name {
            stats.durations.distribution.add_into(&mut merged);
        }
    });
    merged
}

/// Each `#[stage]`'s total time in `session` (every thread's calls), by name: what the report's
/// table shares out.
pub(crate) fn stage_totals(session: u64) -> Vec<(&'static str, u64)> {
    let mut totals: Vec<(&'static str, u64)> = Vec::new();
    for row in collect(session) {
        let site = lookup(row.callsite);
        if site.kind() != CallsiteKind::Stage {
            continue;
        }
        match totals.iter_mut().find(|(name, _)| *name == site.name()) {
            Some((_, total)) => *total += row.stats.durations.total_ns,
            None => totals.push((site.name(), row.stats.durations.total_ns)),
        }
    }
    totals
}

/// Each `#[stage]`'s busy time in `session` (its calls' time less what async calls awaited), by
/// name: what the report's `busy` column shares out.
pub(crate) fn stage_busy_totals(session: u64) -> Vec<(&'static str, u64)> {
    let mut totals: Vec<(&'static str, u64)> = Vec::new();
    for row in collect(session) {
        let site = lookup(row.callsite);
        if site.kind() != CallsiteKind::Stage {
            continue;
        }
        let durations = &row.stats.durations;
        let busy = durations.total_ns.saturating_sub(durations.waiting_ns);
        match totals.iter_mut().find(|(name, _)| *name == site.name()) {
            Some((_, total)) => *total += busy,
            None => totals.push((site.name(), busy)),
        }
    }
    totals
}

/// All threads' rows of `session`, merged per (enclosing stage, call site).
pub(crate) fn collect(session: u64) -> Vec<Row> {
    let mut per_thread = Vec::new();
    for shard in shard::all_shards() {
        shard.rows(session, &mut per_thread);
    }
    let mut merged: Vec<Row> = Vec::new();
    for row in per_thread {
        match merged
            .iter_mut()
            .find(|m| m.parent_stage == row.parent_stage && m.callsite == row.callsite)
        {
            Some(existing) => existing.stats.merge(&row.stats),
            None => merged.push(row),
        }
    }
    merged
}
