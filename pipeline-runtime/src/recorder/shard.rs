//! Per-thread storage of call statistics.
//!
//! Each thread owns one [`Shard`]. Only that thread writes to it, so its mutex is uncontended on the
//! hot path (one atomic swap in, one out, on a cache line no other thread touches); a report takes
//! each shard's lock briefly to copy its rows. No lock is shared between recording threads.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hdrhistogram::Histogram;

use super::callsite::CallsiteId;
use crate::alloc::Counters;

/// What one completed call measured.
#[derive(Clone, Copy)]
pub(crate) struct Measured {
    pub total_ns: u64,
    pub self_ns: u64,
    /// Allocations during the call, nested calls included.
    pub mem_total: Counters,
    /// Allocations during the call, less those of nested instrumented calls.
    pub mem_self: Counters,
}

/// Statistics of one (enclosing stage, call site) pair on one thread, or merged over threads.
#[derive(Clone, Debug)]
pub(crate) struct CallStats {
    pub calls: u64,
    pub total_ns: u64,
    pub self_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    /// Distribution of each call's total time, in nanoseconds.
    pub histogram: Histogram<u64>,
    pub mem_total: Counters,
    pub mem_self: Counters,
}

impl CallStats {
    fn new() -> Self {
        CallStats {
            calls: 0,
            total_ns: 0,
            self_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            // Three significant digits, resizing as larger values arrive.
            histogram: Histogram::new(3).expect("3 significant digits is a valid precision"),
            mem_total: Counters::default(),
            mem_self: Counters::default(),
        }
    }

    #[inline]
    fn record(&mut self, measured: &Measured) {
        let Measured { total_ns, self_ns, mem_total, mem_self } = *measured;
        self.mem_total.add(mem_total);
        self.mem_self.add(mem_self);
        self.calls += 1;
        self.total_ns += total_ns;
        self.self_ns += self_ns;
        self.min_ns = self.min_ns.min(total_ns);
        self.max_ns = self.max_ns.max(total_ns);
        if self.histogram.record(total_ns).is_err() {
            // Only beyond u64::MAX / 2 ns (292 years): keep the count, clamp the value.
            self.histogram.saturating_record(total_ns);
        }
    }

    pub(crate) fn merge(&mut self, other: &CallStats) {
        self.calls += other.calls;
        self.total_ns += other.total_ns;
        self.self_ns += other.self_ns;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.mem_total.add(other.mem_total);
        self.mem_self.add(other.mem_self);
        // Both histograms auto-resize, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }
}

/// One recorded row: the enclosing stage (0 when none), the call site, its statistics.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub parent_stage: CallsiteId,
    pub callsite: CallsiteId,
    pub stats: CallStats,
}

/// A thread's statistics, indexed `[enclosing stage][call site]`: two array look-ups per record.
#[derive(Default)]
pub(crate) struct ShardData {
    session: u64,
    table: Vec<Vec<Option<CallStats>>>,
}

impl ShardData {
    #[inline]
    pub(crate) fn record(
        &mut self,
        session: u64,
        parent_stage: CallsiteId,
        callsite: CallsiteId,
        measured: &Measured,
    ) {
        if self.session != session {
            // The first record of a new profiling session: forget the previous one's figures.
            self.table.clear();
            self.session = session;
        }
        let (parent, site) = (parent_stage as usize, callsite as usize);
        if self.table.len() <= parent {
            self.table.resize_with(parent + 1, Vec::new);
        }
        let by_site = &mut self.table[parent];
        if by_site.len() <= site {
            by_site.resize_with(site + 1, || None);
        }
        by_site[site].get_or_insert_with(CallStats::new).record(measured);
    }

    /// Copies this thread's rows of `session` into `out`.
    pub(crate) fn rows(&self, session: u64, out: &mut Vec<Row>) {
        if self.session != session {
            return;
        }
        for (parent, by_site) in self.table.iter().enumerate() {
            for (site, stats) in by_site.iter().enumerate() {
                if let Some(stats) = stats {
                    out.push(Row {
                        parent_stage: parent as CallsiteId,
                        callsite: site as CallsiteId,
                        stats: stats.clone(),
                    });
                }
            }
        }
    }
}

/// One thread's shard, shared with the registry of all shards so a report can read it.
pub(crate) struct Shard(Mutex<ShardData>);

impl Shard {
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, ShardData> {
        // Recording never panics while holding the lock, so poisoning carries no broken state.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

static SHARDS: Mutex<Vec<Arc<Shard>>> = Mutex::new(Vec::new());

/// Creates and registers the calling thread's shard.
pub(crate) fn register_current_thread() -> Arc<Shard> {
    let shard = Arc::new(Shard(Mutex::new(ShardData::default())));
    SHARDS.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&shard));
    shard
}

/// Every shard registered so far, including those of threads that have ended.
pub(crate) fn all_shards() -> Vec<Arc<Shard>> {
    SHARDS.lock().unwrap_or_else(PoisonError::into_inner).clone()
}
