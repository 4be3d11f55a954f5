//! Recording: cheap, per-thread, on the hot path. Reading and interpreting the figures is the
//! job of [`report`](crate::report).
//!
//! The macros emit a `static` [`Callsite`] per annotated stage or function; on each call the
//! runtime reads the [`Mode`] once and, when a session records, opens a frame with [`enter`].
//! Figures go into the calling thread's own shard; [`collect`] merges all shards.

mod shard;
mod stack;

pub(crate) use shard::{CallStats, Row};
pub(crate) use stack::leave_out_of_open_calls;
pub use stack::{AsyncCall, CallGuard, PollGuard};

use crate::callsite::{lookup, Callsite, CallsiteId, CallsiteKind};
use crate::mode::Mode;

/// Starts measuring a call of `callsite` when `mode` records; an idle guard otherwise.
#[inline]
pub(crate) fn enter(mode: Mode, callsite: &'static Callsite) -> CallGuard {
    if !mode.records() {
        return CallGuard::idle();
    }
    stack::enter_recording(callsite, mode)
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
