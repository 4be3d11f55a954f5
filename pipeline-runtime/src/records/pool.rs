//! The bounded pool of record chunks: threads take an empty chunk when theirs is full, the writer
//! gives chunks back once it has read them. At most `limit` chunks exist at once.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Record, CHUNK_RECORDS};

/// A block of records. Its owning thread writes records above `len` and then publishes them with
/// a release store of `len`; readers only read below `len`, where records never change again.
pub(crate) struct Chunk {
    records: Box<[UnsafeCell<MaybeUninit<Record>>]>,
    /// Records published by the owner.
    pub(crate) len: AtomicUsize,
    /// Records the writer has read (changed only under the owning slot's lock).
    pub(crate) drained: AtomicUsize,
    /// The trace these records belong to.
    pub(crate) generation: AtomicU32,
}

// SAFETY: the owner writes only the slot at `len` before publishing it; everything below `len` is
// read-only and readable from any thread once published (acquire load of `len`).
unsafe impl Sync for Chunk {}
unsafe impl Send for Chunk {}

impl Chunk {
    fn new() -> Self {
        let records = (0..CHUNK_RECORDS).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
        Chunk {
            records,
            len: AtomicUsize::new(0),
            drained: AtomicUsize::new(0),
            generation: AtomicU32::new(0),
        }
    }

    /// Writes `record` at `index` and publishes it. Only the owning thread calls this, with
    /// `index` equal to the published length.
    #[inline]
    pub(crate) fn push(&self, index: usize, record: Record) {
        debug_assert_eq!(index, self.len.load(Ordering::Relaxed));
        // SAFETY: `index < CHUNK_RECORDS` (callers check room), the slot is above `len` so no
        // reader looks at it, and only the owner writes.
        unsafe { (*self.records[index].get()).write(record) };
        self.len.store(index + 1, Ordering::Release);
    }

    /// The published records from `from` on.
    pub(crate) fn published(&self, from: usize) -> &[Record] {
        let len = self.len.load(Ordering::Acquire);
        let from = from.min(len);
        let slots = &self.records[from..len];
        // SAFETY: records below `len` were written before the release store that published
        // them and never change again; `UnsafeCell<MaybeUninit<Record>>` has `Record`'s layout.
        unsafe { std::slice::from_raw_parts(slots.as_ptr().cast::<Record>(), slots.len()) }
    }
}

struct Pool {
    free: Vec<NonNull<Chunk>>,
    allocated: usize,
    limit: usize,
    /// Chunks handed to the writer (in slots' queues or being read): they will come back.
    in_flight: usize,
    /// Threads waiting for chunks to come back.
    waiters: usize,
}

impl Pool {
    /// Whether a waiting thread should go on: enough chunks are free that it will not be back
    /// waiting at once (a quarter of the pool: one wait per many chunks, not one per chunk), or
    /// no more will come back.
    fn can_resume(&self) -> bool {
        let enough = (self.limit / 4).max(1);
        self.allocated < self.limit || self.free.len() >= enough || self.in_flight == 0
    }
}

// SAFETY: the pool owns the chunks in `free` (nobody else points at them).
unsafe impl Send for Pool {}

static POOL: Mutex<Pool> =
    Mutex::new(Pool { free: Vec::new(), allocated: 0, limit: 1, in_flight: 0, waiters: 0 });
/// Signalled when a chunk comes back.
static RETURNED: Condvar = Condvar::new();
/// A thread waited [`STALL_TIMEOUT`] and no chunk came back: the writer is stuck (a stalled
/// disk), so threads leave spans out instead of waiting, until a chunk comes back.
static STALLED: AtomicBool = AtomicBool::new(false);

/// How long a thread waits for the writer to give a chunk back before it leaves spans out.
pub(super) const STALL_TIMEOUT: Duration = Duration::from_secs(1);

fn pool() -> MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets how many chunks may exist at once (chunks beyond it are freed as they come back).
pub(super) fn set_limit(limit: usize) {
    let mut pool = pool();
    pool.limit = limit;
    while pool.allocated > pool.limit {
        let Some(chunk) = pool.free.pop() else { break };
        pool.allocated -= 1;
        free(chunk);
    }
}

/// An empty chunk for `generation`, or `None` when the pool is at its limit and none is free.
pub(super) fn take(generation: u32) -> Option<NonNull<Chunk>> {
    let mut pool = pool();
    let chunk = match pool.free.pop() {
        Some(chunk) => chunk,
        None if pool.allocated < pool.limit => {
            pool.allocated += 1;
            drop(pool);
            // The profiler's memory: neither the call's allocation nor the program's heap.
            let _bookkeeping = crate::alloc::bookkeeping();
            NonNull::from(Box::leak(Box::new(Chunk::new())))
        }
        None => return None,
    };
    // SAFETY: the chunk came from the pool or was just made: nobody else points at it.
    let chunk_ref = unsafe { chunk.as_ref() };
    chunk_ref.len.store(0, Ordering::Relaxed);
    chunk_ref.drained.store(0, Ordering::Relaxed);
    chunk_ref.generation.store(generation, Ordering::Relaxed);
    Some(chunk)
}

/// An empty chunk for `generation`, waiting (up to [`STALL_TIMEOUT`]) for the writer to give one
/// back when the pool is at its limit: a thread that makes spans faster than they can be written
/// is slowed to the writer's pace rather than losing them. Waits only while chunks are on their
/// way back, and not at all once the writer is known to be stalled. Also returns how long it
/// waited, in nanoseconds.
pub(super) fn take_waiting(generation: u32, wake: impl Fn()) -> (Option<NonNull<Chunk>>, u64) {
    if let Some(chunk) = take(generation) {
        return (Some(chunk), 0);
    }
    if STALLED.load(Ordering::Relaxed) {
        return (None, 0);
    }
    let started = Instant::now();
    let chunk = wait_for_chunk(generation, wake, started + STALL_TIMEOUT);
    (chunk, started.elapsed().as_nanos() as u64)
}

fn wait_for_chunk(generation: u32, wake: impl Fn(), deadline: Instant) -> Option<NonNull<Chunk>> {
    let mut pool = pool();
    loop {
        if pool.free.is_empty() && pool.allocated >= pool.limit && pool.in_flight == 0 {
            return None; // every chunk is some thread's current one: none will come back
        }
        if pool.can_resume() {
            drop(pool);
            if let Some(chunk) = take(generation) {
                return Some(chunk);
            }
            pool = self::pool();
            if pool.free.is_empty() && pool.allocated >= pool.limit && pool.in_flight == 0 {
                return None;
            }
        }
        wake();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            STALLED.store(true, Ordering::Relaxed);
            return None;
        }
        pool.waiters += 1;
        pool = RETURNED.wait_timeout(pool, left).unwrap_or_else(PoisonError::into_inner).0;
        pool.waiters -= 1;
    }
}

/// A chunk was handed to the writer: it will come back.
pub(super) fn sent() {
    pool().in_flight += 1;
}

/// Gives back a chunk nobody points at any more.
pub(super) fn give_back(chunk: NonNull<Chunk>) {
    STALLED.store(false, Ordering::Relaxed);
    let mut pool = pool();
    pool.in_flight = pool.in_flight.saturating_sub(1);
    if pool.allocated > pool.limit {
        pool.allocated -= 1;
        drop(pool);
        free(chunk);
        return;
    }
    pool.free.push(chunk);
    if pool.waiters > 0 && pool.can_resume() {
        RETURNED.notify_all();
    }
}

fn free(chunk: NonNull<Chunk>) {
    let _bookkeeping = crate::alloc::bookkeeping();
    // SAFETY: made by `Box::leak` in `take`, and its last pointer is given up here.
    drop(unsafe { Box::from_raw(chunk.as_ptr()) });
}

/// Chunks that exist now (free or in use), for tests and figures.
#[cfg(test)]
pub(super) fn allocated() -> usize {
    pool().allocated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_never_holds_more_than_its_limit_and_reuses_what_comes_back() {
        set_limit(2);
        let taken: Vec<_> = std::iter::from_fn(|| take(7)).take(10).collect();
        assert_eq!(taken.len(), 2, "no chunk past the limit");
        assert_eq!(allocated(), 2);
        assert!(take(7).is_none());
        for chunk in taken {
            give_back(chunk);
        }
        let again = take(8).expect("a chunk came back");
        // SAFETY: just taken; nobody else points at it.
        let chunk = unsafe { again.as_ref() };
        assert_eq!(chunk.len.load(Ordering::Relaxed), 0, "handed out empty");
        assert_eq!(chunk.generation.load(Ordering::Relaxed), 8);
        give_back(again);
        set_limit(1);
        assert!(allocated() <= 1, "a lower limit frees what is spare");
    }
}
