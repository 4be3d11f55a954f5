//! The bounded pool of record chunks: threads take an empty chunk when theirs is full, the writer
//! gives chunks back once it has read them. At most `limit` chunks exist at once.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::packed::{Packed, Records};
use super::Record;

/// Units ([`Packed`], 24 bytes; a record takes one or two) the smallest chunk holds: what a
/// thread takes first. The pool counts in units throughout. A thread that fills its chunk takes
/// one twice as big next, up to [`MAX_CHUNK_UNITS`]; so 512 threads that each write a few
/// records hold 512 small chunks (0.8 MB), not 512 of the largest (25 MB), and the pool's budget
/// goes to the threads that write the most.
pub(crate) const MIN_CHUNK_UNITS: usize = 64;
/// Units the largest chunk holds.
pub(crate) const MAX_CHUNK_UNITS: usize = 2048;
/// Chunk sizes: `MIN_CHUNK_UNITS << class` for class `0..CLASSES`.
const CLASSES: usize = (MAX_CHUNK_UNITS / MIN_CHUNK_UNITS).trailing_zeros() as usize + 1;

/// The size class of chunks of `units` units (`units` is one of the sizes).
fn class_of(units: usize) -> usize {
    (units / MIN_CHUNK_UNITS).trailing_zeros() as usize
}

/// Records a chunk of `class` holds.
fn class_units(class: usize) -> usize {
    MIN_CHUNK_UNITS << class
}

/// The smallest class whose chunks hold `units` units; `None` past the largest.
pub(crate) fn class_for(units: usize) -> Option<usize> {
    (0..CLASSES).find(|&class| class_units(class) >= units)
}

/// A block of records, packed. Its owning thread writes records above `len` and then publishes
/// them with a release store of `len`; readers only read below `len`, where units never change
/// again. `len` and `drained` count units and always fall on a record's first unit.
pub(crate) struct Chunk {
    units: Box<[UnsafeCell<MaybeUninit<Packed>>]>,
    /// Units published by the owner.
    pub(crate) len: AtomicUsize,
    /// Units the writer has read (changed only under the owning slot's lock).
    pub(crate) drained: AtomicUsize,
    /// Published records that a text of the thread's goes with (counted by the owner as it
    /// writes them, so the flight recorder need not read the records to know).
    pub(crate) texts: AtomicUsize,
    /// Of those, the ones the writer has read (with `drained`).
    pub(crate) texts_drained: AtomicUsize,
    /// The trace these records belong to.
    pub(crate) generation: AtomicU32,
}

// SAFETY: the owner writes only the units at `len` and on before publishing them; everything
// below `len` is read-only and readable from any thread once published (acquire load of `len`).
unsafe impl Sync for Chunk {}
// SAFETY: a chunk holds plain `Copy` units and atomics; whichever thread owns it may write it
// (`push`'s contract), and ownership moves between threads only through the pool's and slots'
// locks.
unsafe impl Send for Chunk {}

impl Chunk {
    fn new(units: usize) -> Self {
        let units = (0..units).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
        Chunk {
            units,
            len: AtomicUsize::new(0),
            drained: AtomicUsize::new(0),
            texts: AtomicUsize::new(0),
            texts_drained: AtomicUsize::new(0),
            generation: AtomicU32::new(0),
        }
    }

    /// Units it holds.
    pub(crate) fn capacity(&self) -> usize {
        self.units.len()
    }

    /// The memory its units take, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.capacity() * std::mem::size_of::<Packed>()
    }

    /// Writes `record` at unit `index` and publishes it; returns the units it took.
    ///
    /// # Safety
    ///
    /// Only the chunk's owning thread (the one that took it from the pool, until it hands it to
    /// its slot) may call this, with `index` equal to the published length and
    /// `index + record.units()` at most [`Chunk::capacity`]: the units are written without a
    /// lock, and readers rely on nothing below the published length changing.
    #[inline(always)] // so the record's packing folds to constants (see packed.rs)
    pub(crate) unsafe fn push(&self, index: usize, record: Record) -> usize {
        debug_assert_eq!(index, self.len.load(Ordering::Relaxed));
        debug_assert!(index + record.units() <= self.capacity());
        let (first, second) = record.pack();
        // SAFETY: the caller guarantees the units are in bounds, above the published length (no
        // reader looks at them) and that it alone writes.
        unsafe {
            (*self.units.get_unchecked(index).get()).write(first);
            if let Some(second) = second {
                (*self.units.get_unchecked(index + 1).get()).write(second);
            }
        }
        if record.has_text() {
            // Only the owner writes it.
            self.texts.store(self.texts.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        let taken = 1 + usize::from(second.is_some());
        self.len.store(index + taken, Ordering::Release);
        taken
    }

    /// The published records from unit `from` (a record's first unit) on.
    pub(crate) fn published(&self, from: usize) -> Records<'_> {
        let len = self.len.load(Ordering::Acquire);
        let from = from.min(len);
        let units = &self.units[from..len];
        // SAFETY: units below `len` were written by `push` before the release store that
        // published them and never change again; `UnsafeCell<MaybeUninit<Packed>>` has
        // `Packed`'s layout; `from` is 0 or where a reader stopped, after a whole record.
        unsafe {
            Records::new(std::slice::from_raw_parts(units.as_ptr().cast::<Packed>(), units.len()))
        }
    }
}

struct Pool {
    /// Free chunks by size class.
    free: [Vec<NonNull<Chunk>>; CLASSES],
    /// Records in all chunks that exist (free, in threads' hands, or on their way back).
    allocated: usize,
    /// The most units all chunks together may hold, besides the threads' reserve.
    limit: usize,
    /// Threads that write records now (they have a slot and have not ended).
    threads: usize,
    /// Chunks handed to the writer (in slots' queues or being read): they will come back.
    in_flight: usize,
    /// Threads waiting for chunks to come back.
    waiters: usize,
    /// Chunks given back so far: a waiting thread that sees it move knows the writer works.
    returned: u64,
}

impl Pool {
    /// Every running thread's right to one smallest chunk beyond the shared budget: chunks of
    /// threads that went quiet come back only when those threads fill them, which may be never,
    /// so a budget shared by need alone could leave a thread with nowhere to write. With the
    /// reserve, a thread that holds no chunk finds one; the reserve is 1.5 KiB per running
    /// thread, and a thread that outruns the writer still waits for it (chunks on their way to
    /// the writer count against the reserve too).
    fn reserve(&self) -> usize {
        self.threads.saturating_mul(MIN_CHUNK_UNITS)
    }

    /// Records in free chunks.
    fn free_units(&self) -> usize {
        self.free.iter().enumerate().map(|(class, free)| free.len() * class_units(class)).sum()
    }

    /// Whether a waiting thread should try again: a quarter of the budget is free (one wait per
    /// many chunks, not one per chunk: a thread and the writer taking turns chunk by chunk cost
    /// ~500 context switches and twice the CPU per run), or nothing more will come back.
    fn can_resume(&self) -> bool {
        self.free_units() >= self.limit / 4
            || self.allocated + MIN_CHUNK_UNITS <= self.limit
            || self.in_flight == 0
    }

    /// Frees spare chunks (largest first) until `units` more fit within `ceiling`; false if
    /// they cannot be made to fit.
    fn room_within(&mut self, units: usize, ceiling: usize) -> bool {
        while self.allocated + units > ceiling {
            let Some(spare) = self.free.iter_mut().rev().find_map(Vec::pop) else { return false };
            // SAFETY: a free chunk: nobody else points at it.
            self.allocated -= unsafe { spare.as_ref() }.capacity();
            free(spare);
        }
        true
    }

    /// A new chunk of `class`.
    fn make(&mut self, class: usize) -> NonNull<Chunk> {
        let units = class_units(class);
        self.allocated += units;
        // The profiler's memory: neither the call's allocation nor the program's heap.
        let _bookkeeping = crate::alloc::bookkeeping();
        NonNull::from(Box::leak(Box::new(Chunk::new(units))))
    }

    /// A chunk for `request` (see [`Pool::choose`]). When the thread replaces a chunk it
    /// holds, that one counts as on its way to the writer from now on, under the same lock: a
    /// thread that waits meanwhile knows it will come back.
    fn take(&mut self, request: Request) -> Option<NonNull<Chunk>> {
        let chunk = self.choose(request)?;
        if request.replaces_held {
            self.in_flight += 1;
        }
        Some(chunk)
    }

    /// A chunk for `request`, in this order: a free one of the class it wants, or of a bigger
    /// class; a new one of the class it wants, within the budget (spare chunks of other sizes
    /// freed to make room); a free one of a smaller class it can use; a new one of a smaller
    /// class, down to the smallest it can use, within the budget; the smallest, from the
    /// threads' reserve. `None` when all of these fail.
    fn choose(&mut self, request: Request) -> Option<NonNull<Chunk>> {
        let Request { wanted, min_class, .. } = request;
        if let Some(chunk) = (wanted..CLASSES).find_map(|class| self.free[class].pop()) {
            return Some(chunk);
        }
        let limit = self.limit;
        if self.room_within(class_units(wanted), limit) {
            return Some(self.make(wanted));
        }
        if let Some(chunk) = (min_class..wanted).rev().find_map(|class| self.free[class].pop()) {
            return Some(chunk);
        }
        if let Some(class) =
            (min_class..wanted).rev().find(|&class| self.room_within(class_units(class), limit))
        {
            return Some(self.make(class));
        }
        let ceiling = limit.saturating_add(self.reserve());
        (min_class == 0 && self.room_within(MIN_CHUNK_UNITS, ceiling)).then(|| self.make(0))
    }
}

// SAFETY: the pool owns the chunks in `free` (nobody else points at them).
unsafe impl Send for Pool {}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: [const { Vec::new() }; CLASSES],
    allocated: 0,
    limit: MIN_CHUNK_UNITS,
    threads: 0,
    in_flight: 0,
    waiters: 0,
    returned: 0,
});
/// Signalled when a chunk comes back.
static RETURNED: Condvar = Condvar::new();
/// A thread waited [`STALL_TIMEOUT`] and no chunk came back: the writer is stuck (a stalled
/// disk), so threads leave spans out instead of waiting, until a chunk comes back.
static STALLED: AtomicBool = AtomicBool::new(false);

/// How long a thread waits for the writer to give a chunk back before it leaves spans out.
pub(super) const STALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the writer is known to be stuck: threads leave spans out rather than wait.
pub(super) fn stalled() -> bool {
    STALLED.load(Ordering::Relaxed)
}

/// The writer made no progress for [`STALL_TIMEOUT`] while a thread waited on it.
pub(super) fn mark_stalled() {
    STALLED.store(true, Ordering::Relaxed);
}

/// How many chunks have come back so far: a thread waiting on the writer that sees this move
/// knows the writer is not stalled.
pub(super) fn returned() -> u64 {
    pool().returned
}

fn pool() -> MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets how many units all chunks together may hold (at least one smallest chunk); spare
/// chunks beyond it are freed now, chunks in use as they come back.
pub(super) fn set_limit(units: usize) {
    let mut pool = pool();
    pool.limit = units.max(MIN_CHUNK_UNITS);
    while pool.allocated > pool.limit {
        let Some(chunk) = pool.free.iter_mut().rev().find_map(Vec::pop) else { break };
        // SAFETY: a free chunk: nobody else points at it.
        pool.allocated -= unsafe { chunk.as_ref() }.capacity();
        free(chunk);
    }
}

/// What size of chunk a thread asks for: `wanted` (a size class) if the budget allows, or a
/// smaller one down to `min_class` (the smallest that holds what the thread must write next).
#[derive(Clone, Copy, Debug)]
pub(super) struct Request {
    pub(super) wanted: usize,
    pub(super) min_class: usize,
    /// The thread still holds a chunk it hands to the writer once it has the new one (its
    /// open slices' ends were owed room in it): see [`Pool::take`].
    pub(super) replaces_held: bool,
}

impl Request {
    /// The request of a thread whose last chunk held `last` units (0: it had none yet), and
    /// that needs room for `needed` units in the next.
    pub(super) fn after(last: usize, needed: usize) -> Option<Request> {
        let min_class = class_for(needed)?;
        let grown = if last == 0 { 0 } else { (class_of(last) + 1).min(CLASSES - 1) };
        Some(Request { wanted: grown.max(min_class), min_class, replaces_held: false })
    }
}

/// A thread began writing records (it has a slot): it may draw on the reserve.
pub(super) fn thread_started() {
    pool().threads += 1;
}

/// A thread that wrote records ended.
pub(super) fn thread_ended() {
    let mut pool = pool();
    pool.threads = pool.threads.saturating_sub(1);
}

/// An empty chunk for `generation` as `request` asks, or `None` when the pool's budget is spent
/// and no chunk big enough is free.
pub(super) fn take(generation: u32, request: Request) -> Option<NonNull<Chunk>> {
    let chunk = pool().take(request)?;
    Some(prepared(chunk, generation))
}

/// `chunk`, emptied, for `generation`.
fn prepared(chunk: NonNull<Chunk>, generation: u32) -> NonNull<Chunk> {
    // SAFETY: the chunk came from the pool or was just made: nobody else points at it.
    let chunk_ref = unsafe { chunk.as_ref() };
    chunk_ref.len.store(0, Ordering::Relaxed);
    chunk_ref.drained.store(0, Ordering::Relaxed);
    chunk_ref.texts.store(0, Ordering::Relaxed);
    chunk_ref.texts_drained.store(0, Ordering::Relaxed);
    chunk_ref.generation.store(generation, Ordering::Relaxed);
    chunk
}

/// An empty chunk for `generation`, waiting for the writer to give one back when the pool is at
/// its limit (until no chunk at all came back for [`STALL_TIMEOUT`]), and calling `help` meanwhile (the writer's work, done on
/// this thread when the writer is not at it): a thread that makes spans faster than they can be
/// written is slowed to the writer's pace rather than losing them. Waits only while chunks are
/// on their way back, and not at all once the writer is known to be stalled. Also returns how
/// long it waited, in nanoseconds.
pub(super) fn take_waiting(
    generation: u32,
    request: Request,
    help: impl Fn(),
) -> (Option<NonNull<Chunk>>, u64) {
    if let Some(chunk) = take(generation, request) {
        return (Some(chunk), 0);
    }
    if STALLED.load(Ordering::Relaxed) {
        return (None, 0);
    }
    let started = Instant::now();
    let chunk = wait_for_chunk(generation, request, help);
    (chunk, started.elapsed().as_nanos() as u64)
}

fn wait_for_chunk(generation: u32, request: Request, help: impl Fn()) -> Option<NonNull<Chunk>> {
    // The writer is stalled when no chunk at all comes back for `STALL_TIMEOUT`; chunks that
    // come back and go to other threads first only make this one wait longer.
    let mut deadline = Instant::now() + STALL_TIMEOUT;
    let mut returned = pool().returned;
    loop {
        let mut pool = pool();
        if pool.can_resume() {
            if let Some(chunk) = pool.take(request) {
                drop(pool);
                return Some(prepared(chunk, generation));
            }
        }
        if pool.in_flight == 0 {
            return None; // every chunk is some thread's current one: none will come back
        }
        drop(pool);
        // The writer may be starved of CPU by the very threads waiting for it: a waiting thread
        // drains and writes itself when the writer is not at it.
        help();
        let mut pool = self::pool();
        if pool.can_resume() {
            if let Some(chunk) = pool.take(request) {
                drop(pool);
                return Some(prepared(chunk, generation));
            }
        }
        if pool.returned != returned {
            returned = pool.returned;
            deadline = Instant::now() + STALL_TIMEOUT;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            STALLED.store(true, Ordering::Relaxed);
            return None;
        }
        // Woken when chunks come back; back to helping soon if they do not.
        pool.waiters += 1;
        let nap = left.min(HELP_AGAIN);
        pool = RETURNED.wait_timeout(pool, nap).unwrap_or_else(PoisonError::into_inner).0;
        pool.waiters -= 1;
    }
}

/// How long a waiting thread sleeps before it tries to help the writer again (when the writer
/// is at work, it wakes the thread as soon as enough chunks came back).
const HELP_AGAIN: Duration = Duration::from_millis(5);

/// A chunk was handed to the writer: it will come back. (A chunk replaced by a new one was
/// counted when the new one was taken.)
pub(super) fn sent() {
    pool().in_flight += 1;
}

/// Gives back chunks nobody points at any more (the writer read them), and wakes the threads
/// waiting for one.
pub(super) fn give_back(chunks: impl IntoIterator<Item = NonNull<Chunk>>) {
    let mut pool = pool();
    let mut returned = false;
    for chunk in chunks {
        returned = true;
        pool.in_flight = pool.in_flight.saturating_sub(1);
        pool.returned += 1;
        // SAFETY: given back: nobody else points at it.
        let units = unsafe { chunk.as_ref() }.capacity();
        if pool.allocated > pool.limit {
            pool.allocated -= units;
            free(chunk);
        } else {
            pool.free[class_of(units)].push(chunk);
        }
    }
    if returned {
        STALLED.store(false, Ordering::Relaxed);
        if pool.waiters > 0 && pool.can_resume() {
            RETURNED.notify_all();
        }
    }
}

fn free(chunk: NonNull<Chunk>) {
    let _bookkeeping = crate::alloc::bookkeeping();
    // SAFETY: made by `Box::leak` in `take`, and its last pointer is given up here.
    drop(unsafe { Box::from_raw(chunk.as_ptr()) });
}

/// Records in the chunks that exist now (free or in use), for tests and figures.
#[cfg(test)]
pub(super) fn allocated() -> usize {
    pool().allocated
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool is process-wide: its tests take turns.
    static TURN: Mutex<()> = Mutex::new(());

    fn units_of(chunk: NonNull<Chunk>) -> usize {
        // SAFETY: a chunk the test holds.
        unsafe { chunk.as_ref() }.capacity()
    }

    /// Frees every spare chunk; the earlier tests gave back all theirs.
    fn start_empty() {
        set_limit(0);
        let mut pool = pool();
        while let Some(chunk) = pool.free.iter_mut().find_map(Vec::pop) {
            // SAFETY: a free chunk.
            pool.allocated -= unsafe { chunk.as_ref() }.capacity();
            free(chunk);
        }
        assert_eq!(pool.allocated, 0, "an earlier test kept a chunk");
    }

    fn smallest_first(needed: usize) -> Request {
        Request::after(0, needed).expect("fits a chunk")
    }

    #[test]
    fn the_pool_never_holds_more_than_its_limit_and_reuses_what_comes_back() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        start_empty();
        set_limit(2 * MIN_CHUNK_UNITS);
        let taken: Vec<_> = std::iter::from_fn(|| take(7, smallest_first(1))).take(10).collect();
        assert_eq!(taken.len(), 2, "no chunk past the limit");
        assert_eq!(allocated(), 2 * MIN_CHUNK_UNITS);
        assert!(take(7, smallest_first(1)).is_none());
        give_back(taken);
        let again = take(8, smallest_first(1)).expect("a chunk came back");
        // SAFETY: just taken; nobody else points at it.
        let chunk = unsafe { again.as_ref() };
        assert_eq!(chunk.len.load(Ordering::Relaxed), 0, "handed out empty");
        assert_eq!(chunk.generation.load(Ordering::Relaxed), 8);
        give_back([again]);
        set_limit(MIN_CHUNK_UNITS);
        assert!(allocated() <= MIN_CHUNK_UNITS, "a lower limit frees what is spare");
    }

    #[test]
    fn a_thread_starts_small_and_grows_while_the_budget_lasts() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        start_empty();
        set_limit(MAX_CHUNK_UNITS + MIN_CHUNK_UNITS);
        let first = take(1, smallest_first(2)).unwrap();
        assert_eq!(units_of(first), MIN_CHUNK_UNITS, "a thread's first chunk is the smallest");
        let mut last = units_of(first);
        let mut held = vec![first];
        while last < MAX_CHUNK_UNITS {
            let request = Request::after(last, 2).unwrap();
            give_back([held.pop().unwrap()]);
            let next = take(1, request).unwrap();
            assert_eq!(units_of(next), 2 * last, "each next chunk is twice as big");
            last = units_of(next);
            held.push(next);
        }
        assert_eq!(Request::after(last, 2).unwrap().wanted, CLASSES - 1, "up to the largest");
        // The largest chunk in use: what is left of the budget still gives another thread a
        // small chunk rather than none.
        let other = take(1, smallest_first(2)).expect("a small chunk within what is left");
        assert_eq!(units_of(other), MIN_CHUNK_UNITS);
        assert!(allocated() <= MAX_CHUNK_UNITS + MIN_CHUNK_UNITS);
        give_back([other]);
        give_back([held.pop().unwrap()]);
    }

    #[test]
    fn a_thread_nested_deep_gets_a_chunk_with_room_for_its_ends_or_none() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        start_empty();
        set_limit(4 * MAX_CHUNK_UNITS);
        let request = Request::after(0, 300).unwrap();
        let chunk = take(1, request).unwrap();
        assert!(units_of(chunk) >= 300, "room for the open slices' ends");
        give_back([chunk]);
        assert!(Request::after(0, MAX_CHUNK_UNITS + 1).is_none(), "deeper than any chunk");
    }

    #[test]
    fn spare_chunks_of_another_size_make_room_for_the_size_asked() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        start_empty();
        set_limit(MAX_CHUNK_UNITS);
        let small: Vec<_> = std::iter::from_fn(|| take(1, smallest_first(1)))
            .take(MAX_CHUNK_UNITS / MIN_CHUNK_UNITS)
            .collect();
        assert_eq!(allocated(), MAX_CHUNK_UNITS, "the budget is spent on small chunks");
        give_back(small);
        let big =
            take(1, Request { wanted: CLASSES - 1, min_class: CLASSES - 1, replaces_held: false })
                .expect("the spare small chunks are freed for a big one");
        assert_eq!(units_of(big), MAX_CHUNK_UNITS);
        assert_eq!(allocated(), MAX_CHUNK_UNITS);
        give_back([big]);
    }

    /// A thread whose open slices' ends are owed room keeps its chunk until it has the next;
    /// from that moment the kept chunk is on its way to the writer. A thread that finds the
    /// budget spent then waits for it instead of concluding that nothing will come back (it
    /// left a span out of a loaded run in 1 of ~20).
    #[test]
    fn a_chunk_kept_until_its_replacement_is_taken_counts_as_coming_back() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        start_empty();
        set_limit(2 * MIN_CHUNK_UNITS);
        let kept = take(1, smallest_first(1)).unwrap();
        let replacing = Request { replaces_held: true, ..smallest_first(1) };
        let replacement = take(1, replacing).expect("within the budget");
        assert_eq!(pool().in_flight, 1, "the kept chunk will come back");
        let waiter = std::thread::spawn(|| {
            let (chunk, _) = take_waiting(1, smallest_first(1), || {});
            chunk.map(|chunk| chunk.as_ptr() as usize)
        });
        while pool().waiters == 0 && !waiter.is_finished() {
            std::thread::yield_now();
        }
        give_back([kept]); // the writer read it
        let got = waiter.join().unwrap().expect("waited for the kept chunk, not gave up");
        give_back([NonNull::new(got as *mut Chunk).unwrap(), replacement]);
        assert_eq!(pool().in_flight, 0);
    }

    #[test]
    fn a_thread_holding_no_chunk_finds_one_in_the_reserve_and_the_reserve_is_bounded() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        start_empty();
        set_limit(MAX_CHUNK_UNITS);
        for _ in 0..3 {
            thread_started();
        }
        // Quiet threads hold the whole budget in big chunks.
        let hogs =
            take(1, Request { wanted: CLASSES - 1, min_class: CLASSES - 1, replaces_held: false })
                .unwrap();
        // A thread with none still gets the smallest chunk, one per running thread at most.
        let reserved: Vec<_> = std::iter::from_fn(|| take(1, smallest_first(1))).take(10).collect();
        assert_eq!(reserved.len(), 3, "one smallest chunk per running thread beyond the budget");
        assert_eq!(allocated(), MAX_CHUNK_UNITS + 3 * MIN_CHUNK_UNITS);
        let bigger = Request { wanted: 1, min_class: 1, replaces_held: false };
        assert!(take(1, bigger).is_none(), "the reserve holds smallest chunks");
        give_back(reserved);
        assert!(allocated() <= MAX_CHUNK_UNITS, "chunks past the budget are freed as they return");
        give_back([hogs]);
        for _ in 0..3 {
            thread_ended();
        }
    }
}
