//! Each thread's record buffer (its current chunk) and its slot: what the writer reads.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use super::pool::{self, Chunk, Request};
use super::{active, count_left_out, Record, Records, Token};

/// Who a slot's records come from.
#[derive(Clone, Debug)]
pub(crate) struct SlotInfo {
    /// Unique over the process's life.
    pub(crate) id: u64,
    /// The OS thread id (Linux `gettid`), as Perfetto shows it.
    pub(crate) tid: u64,
    /// The thread's name, or `thread-{tid}`.
    pub(crate) name: String,
}

/// A thread's records on their way to the writer.
struct Slot {
    info: SlotInfo,
    state: Mutex<SlotState>,
}

struct SlotState {
    /// Chunks the thread filled, oldest first.
    full: VecDeque<NonNull<Chunk>>,
    /// The chunk the thread is filling (the writer reads its published part).
    current: Option<NonNull<Chunk>>,
    /// Texts of the thread's records (instant arguments, failure outcomes), in record order.
    texts: VecDeque<Box<str>>,
    /// The thread ended: once drained, the slot goes.
    ended: bool,
}

// SAFETY: the chunks are shared only as `&Chunk` (which is `Sync`); the slot owns those in `full`.
unsafe impl Send for SlotState {}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

static SLOTS: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

/// Bytes of texts (instant arguments, failure outcomes, each at most ~1 KiB) waiting for the
/// writer, and the most that may: the trace's memory is bounded in bytes, texts included.
static TEXT_BYTES: AtomicUsize = AtomicUsize::new(0);
const TEXT_BUDGET: usize = 8 << 20;

/// The writer took `bytes` of texts off a slot (or a kept window let them go): they no longer
/// count against [`TEXT_BUDGET`].
pub(crate) fn texts_taken(texts: &VecDeque<Box<str>>) {
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    TEXT_BYTES.fetch_sub(bytes.min(TEXT_BYTES.load(Ordering::Relaxed)), Ordering::Relaxed);
}
static NEXT_SLOT: AtomicU64 = AtomicU64::new(1);

/// Wakes the writer when a chunk fills.
static WAKE: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());

fn wake_writer() {
    let (count, condvar) = &WAKE;
    *count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    condvar.notify_one();
}

/// The trace writer's work, done on the calling thread if the writer is not at it (set by the
/// writer when it starts).
static HELP_WRITER: OnceLock<fn()> = OnceLock::new();

/// Lets threads that wait for chunks do `help` (drain and write what waits) themselves: the
/// writer thread gets no CPU while hundreds of busy threads take it all.
pub(crate) fn set_writer_help(help: fn()) {
    let _ = HELP_WRITER.set(help);
}

/// Wakes the writer and, if it is not at work, does its work on this thread.
fn help_writer() {
    wake_writer();
    if let Some(help) = HELP_WRITER.get() {
        help();
    }
}

/// Blocks the writer until a chunk fills or `timeout` passes.
pub(crate) fn wait_for_chunks(timeout: Duration) {
    let (count, condvar) = &WAKE;
    let mut guard = count.lock().unwrap_or_else(PoisonError::into_inner);
    if *guard == 0 {
        guard = condvar.wait_timeout(guard, timeout).unwrap_or_else(PoisonError::into_inner).0;
    }
    *guard = 0;
}

/// The calling thread's writing state.
pub(super) struct ThreadBuffer {
    slot: Option<Arc<Slot>>,
    chunk: Option<NonNull<Chunk>>,
    /// Units in `chunk` (the owner's copy of its published length).
    len: usize,
    /// Units `chunk` holds (0 without one).
    capacity: usize,
    /// Units the biggest chunk the thread held in this trace (0: none yet): the next is asked
    /// twice as big.
    grown_to: usize,
    /// Begins written in this generation whose ends (one unit each) are still to come: room is
    /// kept for them.
    open: usize,
    generation: u32,
    /// Whether this thread's current work is traced (per-event sampling).
    traced: bool,
    /// Nanoseconds spent waiting for the writer since the last begin took them.
    waited_ns: u64,
    /// The time of the last record written (checked in debug builds: records are written in
    /// time order).
    #[cfg(debug_assertions)]
    last_ts: u64,
}

thread_local! {
    // No destructor (ManuallyDrop): every access is a plain thread-local address. `ThreadExit`
    // hands the chunk over when the thread ends.
    static BUFFER: RefCell<ManuallyDrop<ThreadBuffer>> = const {
        RefCell::new(ManuallyDrop::new(ThreadBuffer {
            slot: None,
            chunk: None,
            len: 0,
            capacity: 0,
            grown_to: 0,
            open: 0,
            generation: 0,
            traced: true,
            waited_ns: 0,
            #[cfg(debug_assertions)]
            last_ts: 0,
        }))
    };
    static EXIT: ThreadExit = const { ThreadExit };
}

/// Hands a thread's last chunk to the writer when the thread ends.
struct ThreadExit;

impl Drop for ThreadExit {
    fn drop(&mut self) {
        let _ = BUFFER.try_with(|buffer| {
            let Ok(mut buffer) = buffer.try_borrow_mut() else { return };
            let chunk = buffer.chunk.take();
            if let Some(slot) = buffer.slot.take() {
                // The queue's memory is the profiler's (the writer frees it as such).
                let _bookkeeping = crate::alloc::bookkeeping();
                let mut state = slot.lock();
                state.current = None;
                if let Some(chunk) = chunk {
                    state.full.push_back(chunk);
                    pool::sent();
                }
                state.ended = true;
                pool::thread_ended();
            }
        });
        wake_writer();
        // A thread that only wrote records (the queue sampler) still hands over its batched
        // live-bytes change, so the heap reading after it ends is exact.
        crate::alloc::flush_thread();
    }
}

/// Runs `f` on the calling thread's buffer (the default when the thread is being torn down or
/// the buffer is already borrowed: nothing is written then).
#[inline]
pub(super) fn with<T: Default>(f: impl FnOnce(&mut ThreadBuffer) -> T) -> T {
    try_with(f).unwrap_or_default()
}

/// Runs `f` on the calling thread's buffer; `None` when it cannot be had.
#[inline]
pub(super) fn try_with<T>(f: impl FnOnce(&mut ThreadBuffer) -> T) -> Option<T> {
    BUFFER
        .try_with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buffer) => Some(f(&mut buffer)),
            Err(_) => None,
        })
        .ok()
        .flatten()
}

pub(super) fn set_traced(traced: bool) -> bool {
    BUFFER
        .try_with(|buffer| {
            buffer.try_borrow_mut().map(|mut b| std::mem::replace(&mut b.traced, traced))
        })
        .ok()
        .and_then(Result::ok)
        .unwrap_or(true)
}

pub(super) fn is_traced() -> bool {
    BUFFER.try_with(|buffer| buffer.try_borrow().map(|b| b.traced).unwrap_or(true)).unwrap_or(true)
}

impl ThreadBuffer {
    /// Writes a begin, with room kept for its end. `Token::NONE` when it was left out.
    #[inline]
    pub(super) fn begin(&mut self, record: Record) -> Token {
        if !self.traced || !self.room_or_count(record.units() + 1) {
            return Token::NONE;
        }
        self.push(record);
        self.open += 1;
        Token(self.generation)
    }

    /// Makes room for a begin (waiting for the writer if it must), then calls `stamp` for the
    /// begin's time, so waiting is never part of the call; returns the token and how long it
    /// waited (for the enclosing calls to leave out).
    #[inline]
    pub(super) fn begin_stamped(
        &mut self,
        name: &'static str,
        kind: super::SliceKind,
        stamp: impl FnOnce() -> u64,
    ) -> (Token, u64) {
        let room = self.traced && self.room_or_count(2); // the begin and its end: a unit each
        let waited = std::mem::take(&mut self.waited_ns);
        let ts = stamp();
        if !room {
            return (Token::NONE, waited);
        }
        self.push(Record::Begin { ts, name, kind });
        self.open += 1;
        (Token(self.generation), waited)
    }

    /// [`Self::room_for`], counting what is left out while a trace runs.
    #[inline]
    fn room_or_count(&mut self, records: usize) -> bool {
        if self.room_for(records) {
            return true;
        }
        if active() != 0 {
            count_left_out();
        }
        false
    }

    /// Writes the end that `token`'s begin reserved room for.
    #[inline]
    pub(super) fn end(
        &mut self,
        token: Token,
        ts: u64,
        allocations: u64,
        bytes: u64,
        outcome: Option<&dyn Fn() -> String>,
    ) {
        if token.0 != self.generation || self.open == 0 || active() != self.generation {
            return; // begun in a trace that is over; its writer closed the slice
        }
        self.open -= 1;
        let outcome = match outcome {
            Some(render) => {
                let text = {
                    let _bookkeeping = crate::alloc::bookkeeping();
                    super::guarded_text(render).into_boxed_str()
                };
                // Past the text budget the slice still ends, without its outcome.
                self.push_text(text)
            }
            None => false,
        };
        self.push(Record::End { ts, allocations, bytes, outcome });
    }

    /// Writes a record that needs no end; returns whether it was written.
    pub(super) fn single(&mut self, record: Record, text: Option<Box<str>>) -> bool {
        if !self.room_or_count(record.units()) {
            return false;
        }
        if let Some(text) = text {
            if !self.push_text(text) {
                count_left_out(); // the writer is that far behind: the instant is left out
                return false;
            }
        }
        self.push(record);
        true
    }

    /// Makes sure the current chunk has room for `units` more besides the ends kept for open
    /// begins, taking a new chunk if needed. False when the trace is off or no chunk is free.
    #[inline]
    fn room_for(&mut self, units: usize) -> bool {
        let generation = active();
        if generation == 0 {
            return false;
        }
        if generation != self.generation {
            self.start_generation(generation);
        }
        if self.len + units + self.open <= self.capacity {
            return true;
        }
        self.next_chunk(units)
    }

    #[inline(always)] // as `Chunk::push`
    fn push(&mut self, record: Record) {
        #[cfg(debug_assertions)]
        {
            // The flight recorder takes a chunk's last record's time as its newest.
            debug_assert!(
                record.ts() >= self.last_ts,
                "{record:?} written after a record of {} ns",
                self.last_ts
            );
            self.last_ts = record.ts();
        }
        let chunk = self.chunk.expect("room_for made sure of a chunk");
        // SAFETY: this thread took `chunk` from the pool and owns it until it hands it to the
        // slot's `full` queue; `room_for` made sure the record's units fit below its capacity, and
        // `len` is its published length.
        self.len += unsafe { chunk.as_ref().push(self.len, record) };
    }

    /// Queues a text for the writer, within the budget of [`TEXT_BUDGET`] bytes waiting;
    /// returns false (and queues nothing) past it.
    fn push_text(&mut self, text: Box<str>) -> bool {
        let Some(slot) = &self.slot else { return false };
        let size = text.len();
        if TEXT_BYTES.fetch_add(size, Ordering::Relaxed) + size > TEXT_BUDGET {
            TEXT_BYTES.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        let _bookkeeping = crate::alloc::bookkeeping();
        slot.lock().texts.push_back(text);
        true
    }

    /// A new trace began: what this thread holds belongs to the last one.
    #[cold]
    fn start_generation(&mut self, generation: u32) {
        self.generation = generation;
        self.open = 0;
        self.grown_to = 0;
        self.retire_chunk();
    }

    /// Hands the current chunk to the writer.
    fn retire_chunk(&mut self) {
        let Some(chunk) = self.chunk.take() else { return };
        self.len = 0;
        self.capacity = 0;
        if let Some(slot) = &self.slot {
            let _bookkeeping = crate::alloc::bookkeeping();
            let mut state = slot.lock();
            state.current = None;
            state.full.push_back(chunk);
            pool::sent();
        }
        wake_writer();
    }

    #[cold]
    #[inline(never)]
    fn next_chunk(&mut self, units: usize) -> bool {
        let Some(mut request) = Request::after(self.grown_to, self.open + units) else {
            return false; // nested deeper than a chunk holds
        };
        // Counted among the running threads before its first chunk, so the reserve covers it.
        self.slot.get_or_insert_with(register);
        if self.open == 0 {
            // No end is owed room in the current chunk: it goes to the writer now, so a wait
            // below is for chunks on their way back (this one at least). Kept instead, threads
            // that all hold full chunks would wait for each other.
            self.retire_chunk();
        }
        // A chunk kept until another is had goes to the writer then: the pool counts it as on
        // its way back from the moment the new one is taken.
        request.replaces_held = self.chunk.is_some();
        if self.chunk.is_some() && self.open + units <= self.capacity {
            // Ends are owed room in the current chunk, so it stays until another is had. If none
            // can be had at once, this thread does the writer's work, and a chunk the writer has
            // read to its end is written again from its start.
            let started = std::time::Instant::now();
            // Stalled means no chunk came back for `STALL_TIMEOUT`, as in `take_waiting`: chunks
            // that come back and go to other threads first only make this one wait longer.
            let mut deadline = started + pool::STALL_TIMEOUT;
            let mut returned = pool::returned();
            let done = loop {
                if let Some(chunk) = pool::take(self.generation, request) {
                    self.install(chunk);
                    break true;
                }
                help_writer();
                if self.recycle_in_place() {
                    break true;
                }
                if pool::returned() != returned {
                    returned = pool::returned();
                    deadline = std::time::Instant::now() + pool::STALL_TIMEOUT;
                }
                if pool::stalled() || std::time::Instant::now() > deadline {
                    pool::mark_stalled();
                    break false;
                }
                // The writer is reading (its lock is taken): this chunk is read soon.
                std::thread::yield_now();
            };
            self.waited_ns += started.elapsed().as_nanos() as u64;
            return done;
        }
        let (chunk, waited_ns) = pool::take_waiting(self.generation, request, help_writer);
        self.waited_ns += waited_ns;
        let Some(chunk) = chunk else { return false };
        self.install(chunk);
        true
    }

    /// Makes `chunk` (just taken from the pool) the current one; the previous one, if any, goes
    /// to the writer.
    fn install(&mut self, chunk: NonNull<Chunk>) {
        let slot = self.slot.get_or_insert_with(register).clone();
        let previous = self.chunk.replace(chunk);
        self.len = 0;
        // SAFETY: just taken from the pool: this thread owns it.
        self.capacity = unsafe { chunk.as_ref() }.capacity();
        // A smaller chunk (the budget was short) does not start the growth over.
        self.grown_to = self.grown_to.max(self.capacity);
        {
            let _bookkeeping = crate::alloc::bookkeeping();
            let mut state = slot.lock();
            if let Some(previous) = previous {
                // Counted on its way to the writer when `chunk` was taken (`replaces_held`).
                state.full.push_back(previous);
            }
            state.current = Some(chunk);
        }
        if previous.is_some() {
            wake_writer();
        }
    }

    /// Empties the current chunk in place if the writer has read every record in it: the
    /// writer reads a thread's current chunk only under its slot's lock, held here, and from
    /// `drained` on, which starts again at 0 with the chunk. False when records are unread.
    fn recycle_in_place(&mut self) -> bool {
        let (Some(chunk), Some(slot)) = (self.chunk, &self.slot) else { return false };
        let _state = slot.lock();
        // SAFETY: the thread's current chunk, which it owns.
        let chunk_ref = unsafe { chunk.as_ref() };
        if chunk_ref.drained.load(Ordering::Relaxed) != self.len {
            return false;
        }
        chunk_ref.drained.store(0, Ordering::Relaxed);
        chunk_ref.texts.store(0, Ordering::Relaxed);
        chunk_ref.texts_drained.store(0, Ordering::Relaxed);
        chunk_ref.len.store(0, Ordering::Release);
        self.len = 0;
        true
    }
}

#[cold]
fn register() -> Arc<Slot> {
    let _bookkeeping = crate::alloc::bookkeeping();
    let _ = EXIT.try_with(|_| ());
    let tid = os_thread_id();
    let name = std::thread::current().name().map_or_else(|| format!("thread-{tid}"), str::to_owned);
    let slot = Arc::new(Slot {
        info: SlotInfo { id: NEXT_SLOT.fetch_add(1, Ordering::Relaxed), tid, name },
        state: Mutex::new(SlotState {
            full: VecDeque::new(),
            current: None,
            texts: VecDeque::new(),
            ended: false,
        }),
    });
    SLOTS.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&slot));
    pool::thread_started();
    slot
}

/// The calling thread's id as the OS (and so Perfetto, and `top -H`) knows it.
fn os_thread_id() -> u64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        if tid > 0 {
            return tid as u64;
        }
    }
    // Elsewhere: distinct numbers above the process id (never 0, which Perfetto replaces).
    static NEXT: AtomicU64 = AtomicU64::new(1);
    u64::from(std::process::id()) + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What the writer does with the records it drains.
pub(crate) trait Reader {
    /// Texts of `slot`'s records, in record order (they may arrive before their records).
    fn texts(&mut self, slot: &SlotInfo, texts: VecDeque<Box<str>>);
    /// `slot`'s records, in the order the thread wrote them, all of trace `generation`.
    fn records(&mut self, slot: &SlotInfo, generation: u32, records: Records<'_>);
    /// `slot`'s thread has ended and every record and text of it was handed over: nothing more
    /// comes from it, so what the reader keeps for it can go.
    fn ended(&mut self, slot: &SlotInfo);
}

/// Hands every record published so far to `reader`, thread by thread, each thread's in order;
/// read chunks go back to the pool and slots of ended threads are removed once empty.
/// Callers serialise drains (the writer holds its own lock).
pub(crate) fn drain(reader: &mut dyn Reader) {
    let ended = visit_slots(|slot, state| {
        // One lock for texts and records alike. A thread pushes a record's text (under this
        // lock) before it publishes the record, so every record read here has its text among
        // those taken here: taking the texts under one lock and reading the records under
        // another let a record published in between be read without its text, and shifted
        // every later text of that thread by one.
        let full = std::mem::take(&mut state.full);
        let texts = std::mem::take(&mut state.texts);
        if !texts.is_empty() {
            texts_taken(&texts);
            reader.texts(&slot.info, texts);
        }
        for &chunk in &full {
            // SAFETY: chunks in `full` are the slot's alone, and were taken out of it.
            let chunk_ref = unsafe { chunk.as_ref() };
            let from = chunk_ref.drained.load(Ordering::Relaxed);
            let generation = chunk_ref.generation.load(Ordering::Relaxed);
            reader.records(&slot.info, generation, chunk_ref.published(from));
        }
        read_current_chunk(slot, state, &mut |info, generation, records| {
            reader.records(info, generation, records);
        });
        full
    });
    for info in ended {
        reader.ended(&info);
    }
}

/// Hands every full chunk and every text to `keeper` without reading them (the flight
/// recorder keeps them as they are, and gives a chunk back by dropping it). The chunks threads
/// are filling stay with them; with `and_current` (a dump) the part of each not read before is
/// read too, in the same pass under the slot's lock, so every record read has its text among
/// those handed over. Slots of ended threads are removed once empty. Callers serialise this with
/// [`drain`].
pub(crate) fn keep_full(keeper: &mut dyn Keeper, and_current: bool) {
    let ended = visit_slots(|slot, state| {
        let texts = std::mem::take(&mut state.texts);
        if !texts.is_empty() {
            keeper.texts(&slot.info, texts);
        }
        for chunk in std::mem::take(&mut state.full) {
            keeper.keep(&slot.info, KeptChunk { chunk });
        }
        if and_current {
            read_current_chunk(slot, state, &mut |info, generation, records| {
                keeper.current(info, generation, records);
            });
        }
        VecDeque::new()
    });
    for info in ended {
        keeper.ended(&info);
    }
}

/// Reads the published, unread part of `slot`'s current chunk (under its lock, `state`).
fn read_current_chunk(
    slot: &Slot,
    state: &SlotState,
    read: &mut dyn FnMut(&SlotInfo, u32, Records<'_>),
) {
    if let Some(chunk) = state.current {
        // SAFETY: the thread's current chunk, alive while we hold the lock (the thread only
        // retires it into `full`, under this lock).
        let chunk_ref = unsafe { chunk.as_ref() };
        let from = chunk_ref.drained.load(Ordering::Relaxed);
        let records = chunk_ref.published(from);
        chunk_ref.drained.store(from + records.units(), Ordering::Relaxed);
        let texts = records.iter().filter(Record::has_text).count();
        chunk_ref.texts_drained.fetch_add(texts, Ordering::Relaxed);
        let generation = chunk_ref.generation.load(Ordering::Relaxed);
        read(&slot.info, generation, records);
    }
}

/// Calls `visit` on every slot under its lock; the chunks it returns go back to the pool. Slots
/// of ended threads are removed once empty; returns who they were.
fn visit_slots(
    mut visit: impl FnMut(&Slot, &mut SlotState) -> VecDeque<NonNull<Chunk>>,
) -> Vec<SlotInfo> {
    let slots: Vec<Arc<Slot>> = SLOTS.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut finished = Vec::new();
    for slot in &slots {
        let mut state = slot.lock();
        let read = visit(slot, &mut state);
        let ended = state.ended;
        drop(state);
        pool::give_back(read);
        if ended {
            finished.push(slot.info.id);
        }
    }
    if finished.is_empty() {
        return Vec::new();
    }
    let mut removed = Vec::new();
    SLOTS.lock().unwrap_or_else(PoisonError::into_inner).retain(|slot| {
        let state = slot.lock();
        let gone =
            finished.contains(&slot.info.id) && state.full.is_empty() && state.texts.is_empty();
        if gone {
            removed.push(slot.info.clone());
        }
        !gone
    });
    removed
}

/// What the flight recorder does with the chunks and texts handed over by [`keep_full`].
pub(crate) trait Keeper {
    /// Texts of `slot`'s records, in record order (they may arrive before their records); the
    /// keeper calls [`texts_taken`] when it lets them go.
    fn texts(&mut self, slot: &SlotInfo, texts: VecDeque<Box<str>>);
    /// A full chunk of `slot`'s, after those handed over before.
    fn keep(&mut self, slot: &SlotInfo, chunk: KeptChunk);
    /// The records of `slot`'s current chunk not read before (after its full chunks), for a
    /// dump: they are in no kept chunk, and are read only once.
    fn current(&mut self, slot: &SlotInfo, generation: u32, records: Records<'_>);
    /// `slot`'s thread has ended and everything of it was handed over.
    fn ended(&mut self, slot: &SlotInfo);
}

/// A full chunk the flight recorder keeps: it goes back to the pool when dropped.
pub(crate) struct KeptChunk {
    chunk: NonNull<Chunk>,
}

// SAFETY: a kept chunk is no thread's any more (its owner retired it); only `&Chunk`, which is
// `Sync`, is reached through it, and dropping it hands it back to the pool under the pool's lock.
unsafe impl Send for KeptChunk {}

impl KeptChunk {
    /// Its records not read before.
    pub(crate) fn records(&self) -> Records<'_> {
        // SAFETY: kept, so alive until dropped, and nobody writes it any more.
        let chunk = unsafe { self.chunk.as_ref() };
        chunk.published(chunk.drained.load(Ordering::Relaxed))
    }

    /// How many of [`Self::records`] a text of the thread's goes with, counted as they were
    /// written: the records themselves are not read.
    pub(crate) fn texts(&self) -> usize {
        // SAFETY: as in `records`.
        let chunk = unsafe { self.chunk.as_ref() };
        let texts = chunk.texts.load(Ordering::Relaxed);
        texts.saturating_sub(chunk.texts_drained.load(Ordering::Relaxed))
    }

    /// The trace its records belong to.
    pub(crate) fn generation(&self) -> u32 {
        // SAFETY: as in `records`.
        unsafe { self.chunk.as_ref() }.generation.load(Ordering::Relaxed)
    }

    /// The memory it holds, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        // SAFETY: as in `records`.
        unsafe { self.chunk.as_ref() }.bytes()
    }
}

impl Drop for KeptChunk {
    fn drop(&mut self) {
        pool::give_back([self.chunk]);
    }
}
