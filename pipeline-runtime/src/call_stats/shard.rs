//! Per-thread storage of call statistics.
//!
//! Each recording thread holds one [`Shard`] through an [`OwnedShard`] (a `!Send` claim, so only
//! that thread writes to it). A completed call is appended to the shard's small buffer of
//! [`PendingCalls`] with plain stores and one release store of its length: no lock, no
//! read-modify-write. Every [`PENDING_CAPACITY`] calls the owner takes the shard's (uncontended)
//! lock and folds the buffer into its statistics table. A report takes the same lock and reads
//! the table *and* the published part of the buffer, so it misses no call.
//!
//! When a thread ends it folds its buffer into the table and gives the shard back
//! ([`OwnedShard::release`]); the next thread to record takes it over and adds its calls to the
//! same table. Figures of ended threads stay readable, and the number of shards is the most
//! threads that ever recorded *at once*, not the number that ever recorded: a service that
//! retires a million threads keeps as many shards as it ran threads side by side.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::alloc::Counters;
use crate::callsite::CallsiteId;
use crate::durations::Durations;

/// What one completed call measured.
#[derive(Clone, Copy, Default)]
pub(crate) struct Measured {
    pub total_ns: u64,
    pub self_ns: u64,
    /// Of `total_ns`, the time an `async` call waited between polls (0 for synchronous calls).
    pub waiting_ns: u64,
    /// `None` when the call allocated nothing (the common case for hot functions, which then
    /// skip all allocation arithmetic).
    pub memory: Option<MeasuredMemory>,
    /// How the call ended.
    pub end: crate::durations::CallEnd,
}

/// What one completed call allocated.
#[derive(Clone, Copy)]
pub(crate) struct MeasuredMemory {
    /// Allocations during the call, nested calls included.
    pub total: Counters,
    /// Allocations during the call, less those of nested instrumented calls.
    pub self_only: Counters,
}

impl MeasuredMemory {
    /// `total` and the part of it made by nested instrumented calls; `None` when `total` is zero.
    #[inline]
    pub(crate) fn new(total: Counters, nested: Counters) -> Option<Self> {
        (total != Counters::default())
            .then(|| MeasuredMemory { total, self_only: total.since(nested) })
    }
}

/// Statistics of one (enclosing stage, call site) pair on one thread, or merged over threads.
#[derive(Clone, Debug)]
pub(crate) struct CallStats {
    pub durations: Durations,
    pub mem_total: Counters,
    pub mem_self: Counters,
}

impl CallStats {
    fn new() -> Self {
        CallStats {
            durations: Durations::new(),
            mem_total: Counters::default(),
            mem_self: Counters::default(),
        }
    }

    /// Always inlined into the fold's loop: left to the optimiser, whether it is inlined
    /// changed with unrelated code elsewhere, and the fold's cost per call with it (~40
    /// instructions).
    #[inline(always)]
    pub(crate) fn record(&mut self, measured: &Measured) {
        let Measured { total_ns, self_ns, waiting_ns, memory, end } = *measured;
        if let Some(memory) = memory {
            self.mem_total.add(memory.total);
            self.mem_self.add(memory.self_only);
        }
        self.durations.record(total_ns, self_ns);
        self.durations.waiting_ns += waiting_ns;
        self.durations.ended(end);
    }

    pub(crate) fn merge(&mut self, other: &CallStats) {
        self.durations.merge(&other.durations);
        self.mem_total.add(other.mem_total);
        self.mem_self.add(other.mem_self);
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
    /// The statistics of (`parent_stage`, `callsite`) in `session`, created when new.
    fn stats_mut(
        &mut self,
        session: u64,
        parent_stage: CallsiteId,
        callsite: CallsiteId,
    ) -> &mut CallStats {
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
        by_site[site].get_or_insert_with(CallStats::new)
    }

    /// Copies this thread's rows of `session` into `out`.
    fn rows(&self, session: u64, out: &mut Vec<Row>) {
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

/// A completed call waiting in a shard's buffer.
#[derive(Clone, Copy)]
struct PendingCall {
    parent_stage: CallsiteId,
    callsite: CallsiteId,
    measured: Measured,
}

/// Completed calls appended since the owner last folded them into the table.
pub(crate) const PENDING_CAPACITY: usize = 64;

/// The owner thread's append-only buffer of completed calls.
///
/// Protocol (what makes the `unsafe` below sound):
/// - only the owner thread writes `entries`, `len` and `session`;
/// - the owner writes `entries[len]` and then publishes `len + 1` with a release store, so a
///   reader that acquires `len` sees every entry below it, and the owner never touches those again
///   until it resets `len` to 0;
/// - the owner resets `len` and changes `session` only while holding the shard's lock, and a
///   reader reads `len`, `session` and the entries only while holding it: the entries a reader
///   reads cannot be overwritten while it reads them.
struct PendingCalls {
    entries: Box<[UnsafeCell<PendingCall>]>,
    len: AtomicUsize,
    /// The profiling session the entries belong to.
    session: AtomicU64,
}

// SAFETY: shared between the owner and readers under the protocol above: no entry is written
// while another thread can read it.
unsafe impl Sync for PendingCalls {}

impl PendingCalls {
    fn new() -> Self {
        let empty = PendingCall { parent_stage: 0, callsite: 0, measured: Measured::default() };
        PendingCalls {
            entries: (0..PENDING_CAPACITY).map(|_| UnsafeCell::new(empty)).collect(),
            len: AtomicUsize::new(0),
            session: AtomicU64::new(0),
        }
    }

    /// The published entries. Caller: the owner thread, or any thread holding the shard's lock.
    fn published(&self) -> impl Iterator<Item = PendingCall> + '_ {
        let len = self.len.load(Ordering::Acquire);
        // SAFETY: entries below the published length are not written again before the owner
        // resets `len`, which it does only under the lock (see the protocol).
        self.entries[..len].iter().map(|entry| unsafe { *entry.get() })
    }
}

/// One thread's shard, shared with the registry of all shards so a report can read it.
pub(crate) struct Shard {
    table: Mutex<ShardData>,
    pending: PendingCalls,
}

impl Shard {
    #[inline]
    fn lock(&self) -> MutexGuard<'_, ShardData> {
        // Recording never panics while holding the lock, so poisoning carries no broken state.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one completed call of the owner thread: an append to the buffer, or every
    /// [`PENDING_CAPACITY`] calls (and when the session changes) a fold of the buffer into the
    /// table.
    ///
    /// # Safety
    ///
    /// Only the thread that owns the shard may call this, and never while another call of it
    /// runs: the buffer's entries are written without a lock. [`OwnedShard`] is how the owner
    /// proves it.
    #[inline]
    unsafe fn record(
        &self,
        session: u64,
        parent_stage: CallsiteId,
        callsite: CallsiteId,
        measured: &Measured,
    ) {
        let pending = &self.pending;
        let len = pending.len.load(Ordering::Relaxed);
        if len == PENDING_CAPACITY || pending.session.load(Ordering::Relaxed) != session {
            return self.fold_and_record(session, parent_stage, callsite, measured);
        }
        // SAFETY: the owner alone writes entries, and `entries[len]` is not published yet, so no
        // reader looks at it.
        unsafe {
            *pending.entries[len].get() =
                PendingCall { parent_stage, callsite, measured: *measured };
        }
        pending.len.store(len + 1, Ordering::Release);
    }

    #[cold]
    #[inline(never)]
    fn fold_and_record(
        &self,
        session: u64,
        parent_stage: CallsiteId,
        callsite: CallsiteId,
        measured: &Measured,
    ) {
        // The table's rows and histograms are the profiler's own memory, not the program's.
        let _bookkeeping = crate::alloc::bookkeeping();
        let mut table = self.fold_pending();
        self.pending.session.store(session, Ordering::Relaxed);
        table.stats_mut(session, parent_stage, callsite).record(measured);
    }

    /// Folds the buffered calls into the table and empties the buffer; returns the table, still
    /// locked. Only the owner calls this (it resets the buffer's length).
    fn fold_pending(&self) -> MutexGuard<'_, ShardData> {
        let mut table = self.lock();
        let pending_session = self.pending.session.load(Ordering::Relaxed);
        let mut calls = self.pending.published().peekable();
        while let Some(first) = calls.next() {
            // Consecutive calls of one call site (a hot loop) share one table look-up.
            let stats = table.stats_mut(pending_session, first.parent_stage, first.callsite);
            stats.record(&first.measured);
            while let Some(next) = calls.next_if(|next| {
                (next.parent_stage, next.callsite) == (first.parent_stage, first.callsite)
            }) {
                stats.record(&next.measured);
            }
        }
        self.pending.len.store(0, Ordering::Relaxed);
        table
    }

    /// Calls `visit` with this shard's rows of `session` without copying them (the table is
    /// locked meanwhile); calls still waiting in the buffer come as rows of one call each.
    pub(crate) fn visit(
        &self,
        session: u64,
        visit: &mut dyn FnMut(CallsiteId, CallsiteId, &CallStats),
    ) {
        let table = self.lock();
        if table.session == session {
            for (parent, by_site) in table.table.iter().enumerate() {
                for (site, stats) in by_site.iter().enumerate() {
                    if let Some(stats) = stats {
                        visit(parent as CallsiteId, site as CallsiteId, stats);
                    }
                }
            }
        }
        if self.pending.session.load(Ordering::Relaxed) != session {
            return;
        }
        for call in self.pending.published() {
            let mut one = CallStats::new();
            one.record(&call.measured);
            visit(call.parent_stage, call.callsite, &one);
        }
    }

    /// Copies the shard's rows of `session` into `out`: the table's, plus the calls still waiting
    /// in the buffer.
    pub(crate) fn rows(&self, session: u64, out: &mut Vec<Row>) {
        let table = self.lock();
        let first = out.len();
        table.rows(session, out);
        if self.pending.session.load(Ordering::Relaxed) != session {
            return;
        }
        for call in self.pending.published() {
            let rows = &mut out[first..];
            match rows
                .iter_mut()
                .find(|row| row.parent_stage == call.parent_stage && row.callsite == call.callsite)
            {
                Some(row) => row.stats.record(&call.measured),
                None => {
                    let mut stats = CallStats::new();
                    stats.record(&call.measured);
                    out.push(Row {
                        parent_stage: call.parent_stage,
                        callsite: call.callsite,
                        stats,
                    });
                }
            }
        }
    }
}

/// A thread's claim on a shard: while it exists, only the thread holding it records into the
/// shard. It is `!Send` (and `!Sync`), so it cannot reach another thread; [`OwnedShard::claim`]
/// hands out each shard to one claim at a time.
pub(crate) struct OwnedShard {
    shard: &'static Shard,
    /// Ties the claim to the thread that made it.
    _owner_thread: PhantomData<*const ()>,
}

impl OwnedShard {
    /// A shard for the calling thread: one given back by a thread that ended, or a new one.
    pub(crate) fn claim() -> OwnedShard {
        let mut registry = registry();
        let shard = match registry.released.pop() {
            Some(shard) => shard,
            None => {
                let shard: &'static Shard = Box::leak(Box::new(Shard {
                    table: Mutex::new(ShardData::default()),
                    pending: PendingCalls::new(),
                }));
                registry.all.push(shard);
                shard
            }
        };
        // The registry's lock orders this claim after the release that gave the shard back, so
        // the previous owner's writes to the buffer are visible here.
        OwnedShard { shard, _owner_thread: PhantomData }
    }

    /// Records one completed call of this thread (see [`Shard::record`]).
    #[inline]
    pub(crate) fn record(
        &self,
        session: u64,
        parent_stage: CallsiteId,
        callsite: CallsiteId,
        measured: &Measured,
    ) {
        // SAFETY: this claim is the shard's only one and never leaves the thread that made it
        // (`!Send`, `!Sync`), so the caller is the owner; `record` does not call back into
        // recording, so no other call of it runs meanwhile on this thread.
        unsafe { self.shard.record(session, parent_stage, callsite, measured) }
    }

    /// Folds the calls still buffered into the shard's table and gives the shard back for
    /// another thread to take over: for a thread that is ending. Its figures stay in the table,
    /// readable by reports as before.
    pub(crate) fn release(self) {
        let _bookkeeping = crate::alloc::bookkeeping();
        drop(self.shard.fold_pending());
        registry().released.push(self.shard);
    }
}

/// Every shard, and those no thread holds now.
struct Registry {
    /// Every shard made. Never shrinks: shards given back hold the figures of threads that
    /// ended, which reports still read.
    all: Vec<&'static Shard>,
    /// Shards given back by threads that ended, for the next thread that records.
    released: Vec<&'static Shard>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { all: Vec::new(), released: Vec::new() });

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every shard made so far: those of running threads and those given back.
pub(crate) fn all_shards() -> Vec<&'static Shard> {
    registry().all.clone()
}

/// How many shards exist (for tests and figures).
#[cfg(test)]
pub(crate) fn shard_count() -> usize {
    registry().all.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(total_ns: u64) -> Measured {
        Measured { total_ns, self_ns: total_ns, ..Default::default() }
    }

    /// A shard of the test's own, outside the registry, with its owner's claim.
    fn new_shard() -> (&'static Shard, OwnedShard) {
        let shard: &'static Shard = Box::leak(Box::new(Shard {
            table: Mutex::new(ShardData::default()),
            pending: PendingCalls::new(),
        }));
        (shard, OwnedShard { shard, _owner_thread: PhantomData })
    }

    fn calls_of(shard: &Shard, session: u64) -> (u64, u64) {
        let mut rows = Vec::new();
        shard.rows(session, &mut rows);
        rows.iter().fold((0, 0), |(calls, ns), row| {
            (calls + row.stats.durations.calls, ns + row.stats.durations.total_ns)
        })
    }

    #[test]
    fn a_report_sees_folded_and_still_buffered_calls() {
        let (shard, owner) = new_shard();
        // 150 calls: two folds of the buffer and 20 calls still waiting in it.
        for n in 1..=150 {
            owner.record(1, 0, 1, &call(n));
        }
        assert_eq!(calls_of(shard, 1), (150, 150 * 151 / 2));
        let mut rows = Vec::new();
        shard.rows(1, &mut rows);
        assert_eq!(rows.len(), 1, "one (stage, call site) row, however the calls were stored");
        assert_eq!((rows[0].stats.durations.min_ns, rows[0].stats.durations.max_ns), (1, 150));
        assert_eq!(rows[0].stats.durations.distribution.len(), 150);
    }

    #[test]
    fn interleaved_call_sites_keep_their_own_figures_across_folds() {
        let (shard, owner) = new_shard();
        // Runs of one site and switches between sites, across several folds of the buffer.
        for _ in 0..50 {
            owner.record(1, 0, 1, &call(1));
            owner.record(1, 0, 1, &call(1));
            owner.record(1, 1, 2, &call(10));
            owner.record(1, 0, 1, &call(1));
        }
        let mut rows = Vec::new();
        shard.rows(1, &mut rows);
        rows.sort_by_key(|row| row.callsite);
        let figures: Vec<_> = rows
            .iter()
            .map(|r| {
                (r.parent_stage, r.callsite, r.stats.durations.calls, r.stats.durations.total_ns)
            })
            .collect();
        assert_eq!(figures, [(0, 1, 150, 150), (1, 2, 50, 500)]);
    }

    #[test]
    fn a_new_session_forgets_the_previous_ones_calls() {
        let (shard, owner) = new_shard();
        for _ in 0..10 {
            owner.record(1, 0, 1, &call(5));
        }
        owner.record(2, 0, 1, &call(7));
        assert_eq!(calls_of(shard, 1), (0, 0));
        assert_eq!(calls_of(shard, 2), (1, 7));
    }

    #[test]
    fn a_reader_on_another_thread_never_sees_a_call_twice_or_a_torn_one() {
        const CALLS: u64 = 200_000;
        let (shard, _) = new_shard();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                // The claim is made on the recording thread: it cannot be sent there.
                let owner = OwnedShard { shard, _owner_thread: PhantomData };
                for _ in 0..CALLS {
                    owner.record(1, 0, 1, &call(3));
                }
                done.store(true, Ordering::Release);
            });
            let mut last = 0;
            while !done.load(Ordering::Acquire) {
                let (calls, ns) = calls_of(shard, 1);
                assert!(calls >= last && calls <= CALLS, "{last} then {calls}");
                assert_eq!(ns, 3 * calls, "every call read whole");
                last = calls;
            }
        });
        assert_eq!(calls_of(shard, 1), (CALLS, 3 * CALLS));
    }

    #[test]
    fn a_shard_given_back_keeps_its_figures_and_serves_the_next_thread() {
        let session = 9_000;
        let before = shard_count();
        // Threads one after another: each records, ends, and gives its shard back.
        for _ in 0..20 {
            std::thread::spawn(move || {
                let owner = OwnedShard::claim();
                for _ in 0..10 {
                    owner.record(session, 0, 1, &call(2));
                }
                owner.release();
            })
            .join()
            .unwrap();
        }
        let calls: u64 = all_shards().iter().map(|shard| calls_of(shard, session).0).sum();
        assert_eq!(calls, 200, "every ended thread's calls are still read");
        // Other tests of this binary claim shards at the same time (at most one each).
        assert!(shard_count() - before <= 8, "20 threads, one at a time, reuse shards");
    }
}
