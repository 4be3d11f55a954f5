//! The per-thread stack of open calls: it measures each call (time and allocations), attributes
//! what nested instrumented calls did to them (self figures), and knows which stage a function
//! was called from.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;

use super::shard::{Measured, MeasuredMemory, OwnedShard};
use crate::alloc::{self, Counters};
use crate::callsite::{Callsite, CallsiteId, CallsiteKind};
use crate::clock::now_ns;
use crate::durations::CallEnd;
use crate::mode::{current_session, is_enabled, Mode};
use crate::trace_records::{self, AsyncOutcome, AsyncSlice, SliceKind, Token};

/// An open call on this thread.
struct Frame {
    callsite: CallsiteId,
    /// The innermost stage this call runs in (itself for a stage); 0 when none.
    stage: CallsiteId,
    /// Which stage encloses this call in the report (its parent stage; 0 when none).
    parent_stage: CallsiteId,
    session: u64,
    start_ns: u64,
    child_ns: u64,
    /// This thread's allocation counters when the call began.
    mem_start: Counters,
    /// Allocations made inside nested instrumented calls.
    child_mem: Counters,
    /// The trace record of its begin, when one was written.
    trace: Token,
    /// The thread's time spent waiting for the trace writer when the call began: waits inside
    /// the call are left out of its time.
    waited_at_start: u64,
}

/// What a closed frame measured.
struct Closed {
    frame: Frame,
    end_ns: u64,
    /// Its time, waits for the trace writer left out.
    elapsed_ns: u64,
    mem: Counters,
}

/// The recorder's per-thread state.
///
/// The thread-local holding it has no destructor, so each access is a plain thread-local
/// address with no "registered yet?" check; [`ThreadExit`] does the clean-up instead.
struct ThreadState {
    /// Freed by [`ThreadExit`] when the thread ends.
    stack: ManuallyDrop<Vec<Frame>>,
    /// Claimed on the thread's first recorded call, given back when the thread ends.
    shard: Option<OwnedShard>,
    /// Nanoseconds of this thread's time left out of the calls open during them: waits for
    /// the trace writer (a full trace buffer), and subscribers' work on the toolkit's spans.
    waited_ns: u64,
    /// [`ThreadExit`] ran: the thread is ending and its shard was given back.
    exited: bool,
}

thread_local! {
    static STATE: RefCell<ThreadState> =
        const {
            RefCell::new(ThreadState {
                stack: ManuallyDrop::new(Vec::new()),
                shard: None,
                waited_ns: 0,
                exited: false,
            })
        };
    /// Touched once per thread (when its stack first grows), so that its destructor runs when
    /// the thread ends.
    static EXIT: ThreadExit = const { ThreadExit };
}

/// Leaves `ns` of this thread's time out of every call open on it: time spent on the toolkit's
/// own work in the middle of them (a subscriber handling the span of a nested call), which is
/// not the program's.
pub(crate) fn leave_out_of_open_calls(ns: u64) {
    let _ = STATE.try_with(|state| {
        if let Ok(mut state) = state.try_borrow_mut() {
            state.waited_ns += ns;
        }
    });
}

/// Clean-up when a thread that recorded calls ends.
struct ThreadExit;

impl Drop for ThreadExit {
    fn drop(&mut self) {
        let _ = STATE.try_with(|state| {
            let Ok(mut state) = state.try_borrow_mut() else { return };
            state.exited = true;
            let stack = std::mem::take(&mut *state.stack);
            let shard = state.shard.take();
            drop(state);
            let _bookkeeping = alloc::bookkeeping();
            drop(stack);
            // Its calls are folded into the shard's table, which the next thread takes over.
            if let Some(shard) = shard {
                shard.release();
            }
        });
        // Last, so that freeing the stack is in it: the thread's pending live-bytes change must
        // not be lost.
        alloc::flush_thread();
    }
}

/// Makes room for more frames: the stack is the profiler's memory, not the calling code's.
#[cold]
#[inline(never)]
fn grow(stack: &mut Vec<Frame>) {
    let _bookkeeping = alloc::bookkeeping();
    let _ = EXIT.try_with(|_| ());
    stack.reserve(stack.capacity().max(8));
}

#[cold]
#[inline(never)]
fn claim_shard() -> OwnedShard {
    let _bookkeeping = alloc::bookkeeping();
    // Registered here too (not only when the stack grows), so the shard is given back.
    let _ = EXIT.try_with(|_| ());
    OwnedShard::claim()
}

impl ThreadState {
    fn enclosing_stage(&self) -> CallsiteId {
        self.stack.last().map_or(0, |frame| frame.stage)
    }

    /// Opens a frame for a call of `callsite`; when `mode` writes trace records, also writes the
    /// begin of its trace slice, stamped with the frame's own start time.
    #[inline]
    fn push(&mut self, callsite: &'static Callsite, session: u64, mode: Mode) -> usize {
        let traced = mode.writes_records();
        let id = callsite.id();
        let parent_stage = self.enclosing_stage();
        let stage = match callsite.kind() {
            CallsiteKind::Stage => id,
            CallsiteKind::Function => parent_stage,
        };
        if self.stack.len() == self.stack.capacity() {
            grow(&mut self.stack);
        }
        let depth = self.stack.len();
        self.stack.push(Frame {
            callsite: id,
            stage,
            parent_stage,
            session,
            start_ns: 0,
            child_ns: 0,
            mem_start: Counters::default(),
            child_mem: Counters::default(),
            trace: Token::NONE,
            waited_at_start: self.waited_ns,
        });
        // The CPU sampler charges samples to the innermost call's stage and function.
        #[cfg(feature = "cpu-sampling")]
        if mode.samples_cpu() {
            crate::sampler::marker::set(stage, id);
        }
        // Last, so the call's figures exclude the bookkeeping above.
        let frame = &mut self.stack[depth];
        if traced {
            let kind = match callsite.kind() {
                CallsiteKind::Stage => SliceKind::Stage,
                CallsiteKind::Function => SliceKind::Function,
            };
            // Any wait for the trace writer happens before the call's clock starts.
            let (token, waited) = trace_records::begin_slice_at(callsite.name(), kind, || {
                frame.mem_start = alloc::thread_counters();
                frame.start_ns = now_ns();
                frame.start_ns
            });
            frame.trace = token;
            // That wait came before the call began: not part of it.
            frame.waited_at_start += waited;
            self.waited_ns += waited;
        } else {
            frame.mem_start = alloc::thread_counters();
            frame.start_ns = now_ns();
        }
        depth
    }

    /// Closes the frame at `depth` (and any left open above it) and credits its parent.
    ///
    /// Always inlined, so that what it returns is never copied through memory.
    #[inline(always)]
    fn pop(&mut self, depth: usize) -> Option<Closed> {
        // First, so the call's figures exclude the bookkeeping below.
        let end_ns = now_ns();
        let mem_end = alloc::thread_counters();
        if self.stack.len() <= depth {
            return None;
        }
        self.stack.truncate(depth + 1);
        let frame = self.stack.pop()?;
        // While the sampler runs, the marker goes back to the caller's stage and function.
        #[cfg(feature = "cpu-sampling")]
        if Mode::now().samples_cpu() {
            match self.stack.last() {
                Some(parent) => crate::sampler::marker::set(parent.stage, parent.callsite),
                None => crate::sampler::marker::set(0, 0),
            }
        }
        let waited = self.waited_ns - frame.waited_at_start;
        let elapsed = end_ns.saturating_sub(frame.start_ns).saturating_sub(waited);
        let mem = mem_end.since(frame.mem_start);
        if let Some(parent) = self.stack.last_mut() {
            parent.child_ns += elapsed;
            if mem != Counters::default() {
                parent.child_mem.add(mem);
            }
        }
        Some(Closed { frame, end_ns, elapsed_ns: elapsed, mem })
    }

    #[inline]
    fn record(&mut self, session: u64, parent: CallsiteId, site: CallsiteId, measured: &Measured) {
        if session != current_session() {
            return; // the call began in an earlier profiling session
        }
        match &self.shard {
            Some(shard) => shard.record(session, parent, site, measured),
            None => self.record_unclaimed(session, parent, site, measured),
        }
    }

    /// The thread's first recorded call claims a shard. A call recorded while the thread is
    /// being torn down (after [`ThreadExit`] gave its shard back, from another thread-local's
    /// destructor) takes a shard just for that call.
    #[cold]
    #[inline(never)]
    fn record_unclaimed(
        &mut self,
        session: u64,
        parent: CallsiteId,
        site: CallsiteId,
        measured: &Measured,
    ) {
        let shard = claim_shard();
        shard.record(session, parent, site, measured);
        if self.exited {
            shard.release();
        } else {
            self.shard = Some(shard);
        }
    }
}

/// Measures one call of a stage or function from its creation to its drop.
///
/// Made by `Mode::enter`; holds nothing but its place on this thread's stack, and is not `Send`.
#[must_use = "the call is measured until the guard is dropped"]
pub struct CallGuard {
    depth: usize,
    _not_send: PhantomData<*const ()>,
}

const INERT: usize = usize::MAX;

/// Opens a measured call of `callsite` (a session records: see `Mode::enter`); it ends when the
/// returned guard drops.
#[inline(never)]
pub(crate) fn enter_recording(callsite: &'static Callsite, mode: Mode) -> CallGuard {
    let session = current_session();
    let depth = STATE.with(|state| state.borrow_mut().push(callsite, session, mode));
    CallGuard { depth, _not_send: PhantomData }
}

impl CallGuard {
    /// A guard that measures nothing (no session records).
    #[inline]
    pub(crate) fn idle() -> CallGuard {
        CallGuard { depth: INERT, _not_send: PhantomData }
    }

    /// Ends the call now and returns its allocations (nested calls included), or `None` when
    /// nothing was recorded (no profiler running).
    pub(crate) fn finish(mut self) -> Option<Counters> {
        self.end()
    }

    /// Ends the call now (later calls and the drop do nothing); see [`CallGuard::finish`].
    #[inline]
    pub(crate) fn end(&mut self) -> Option<Counters> {
        self.end_with(None)
    }

    /// Ends the call now; `outcome` renders how it failed for its trace slice (called only when
    /// the slice's end is written).
    #[inline]
    pub(crate) fn end_with(&mut self, outcome: Option<&dyn Fn() -> String>) -> Option<Counters> {
        let depth = std::mem::replace(&mut self.depth, INERT);
        if depth == INERT {
            return None;
        }
        exit(depth, outcome)
    }
}

impl Drop for CallGuard {
    #[inline]
    fn drop(&mut self) {
        if self.depth != INERT {
            exit(self.depth, None);
        }
    }
}

#[inline(never)]
fn exit(depth: usize, outcome: Option<&dyn Fn() -> String>) -> Option<Counters> {
    // `try_with`: during thread teardown the state may already be gone; the call is then lost
    // rather than panicking inside a destructor.
    STATE
        .try_with(|state| {
            let mut state = state.borrow_mut();
            let Closed { frame, end_ns, elapsed_ns: total_ns, mem } = state.pop(depth)?;
            // A call a panic unwinds through still counts, as panicked.
            let panicking = std::thread::panicking();
            let end = if panicking { CallEnd::Panicked } else { CallEnd::Returned };
            let measured = Measured {
                total_ns,
                self_ns: total_ns.saturating_sub(frame.child_ns),
                waiting_ns: 0,
                memory: MeasuredMemory::new(mem, frame.child_mem),
                end,
            };
            state.record(frame.session, frame.parent_stage, frame.callsite, &measured);
            // A call ended by a panic unwinding through it says so on its slice.
            let outcome = match outcome {
                None if frame.trace != Token::NONE && panicking => Some(&panicked as _),
                outcome => outcome,
            };
            trace_records::end_slice(
                frame.trace,
                end_ns,
                mem.allocations,
                mem.bytes_allocated,
                outcome,
            );
            Some(mem)
        })
        .ok()
        .flatten()
}

/// The outcome of a call a panic unwound through.
fn panicked() -> String {
    "panicked".to_owned()
}

/// The measurement of one `async fn` call, carried by its future across polls (and threads).
#[derive(Debug, Default)]
pub struct AsyncCall {
    /// Set on the first poll: (session, parent stage, first poll time).
    started: Option<(u64, CallsiteId, u64)>,
    /// The time its polls took (waits for the trace writer left out): the thread time it held.
    busy_ns: u64,
    /// The busy time of nested instrumented calls made during its polls.
    child_ns: u64,
    /// Allocations during its polls, nested calls included.
    mem: Counters,
    /// Allocations of nested instrumented calls made during its polls.
    child_mem: Counters,
    /// Its slice in the trace, from first poll to completion.
    trace: Option<(AsyncSlice, &'static str)>,
    /// Its call site, from the first poll.
    callsite: Option<&'static Callsite>,
    /// Recorded already (it completed).
    recorded: bool,
    /// A poll panicked.
    panicked: bool,
}

/// A poll of an instrumented future in progress; made by [`AsyncCall::poll_begin`].
pub struct PollGuard<'a> {
    call: &'a mut AsyncCall,
    depth: usize,
    _not_send: PhantomData<*const ()>,
}

impl AsyncCall {
    /// Marks the start of one poll: nested calls made during it become this call's children.
    pub fn poll_begin(&mut self, callsite: &'static Callsite) -> PollGuard<'_> {
        let session = current_session();
        let enabled = is_enabled() && self.started.is_none_or(|(s, _, _)| s == session);
        if !enabled {
            return PollGuard { call: self, depth: INERT, _not_send: PhantomData };
        }
        // A poll is not a slice of its own: the call is one async slice, first poll to end.
        let (depth, parent, start) = STATE.with(|state| {
            let mut state = state.borrow_mut();
            // A poll writes no trace slice of its own (the call is one async slice).
            let depth = state.push(callsite, session, Mode::now().without_trace_records());
            let frame = &state.stack[depth];
            (depth, frame.parent_stage, frame.start_ns)
        });
        if self.started.is_none() {
            self.started = Some((session, parent, start));
            self.callsite = Some(callsite);
            // A stage of a traced async event is drawn on the event's track by its pipeline
            // (with its outcome); other calls get a track of their own.
            let drawn_by_pipeline =
                callsite.kind() == CallsiteKind::Stage && trace_records::event_track() != 0;
            if Mode::now().writes_records() && !drawn_by_pipeline {
                let name = callsite.name();
                self.trace = trace_records::begin_async(start, name).map(|slice| (slice, name));
            }
        }
        PollGuard { call: self, depth, _not_send: PhantomData }
    }
}

impl PollGuard<'_> {
    /// Ends the poll; `ready` says whether the future completed, which records the whole call.
    pub fn end(mut self, ready: bool) {
        self.finish(ready);
    }

    fn finish(&mut self, ready: bool) {
        if self.depth == INERT {
            return;
        }
        let depth = std::mem::replace(&mut self.depth, INERT);
        let call = &mut *self.call;
        let _ = STATE.try_with(|state| {
            let mut state = state.borrow_mut();
            let Some(Closed { frame, end_ns, elapsed_ns, mem }) = state.pop(depth) else { return };
            call.busy_ns += elapsed_ns;
            call.child_ns += frame.child_ns;
            call.mem.add(mem);
            call.child_mem.add(frame.child_mem);
            if !ready {
                return;
            }
            call.record(&mut state, end_ns, CallEnd::Returned);
        });
    }
}

impl AsyncCall {
    /// Records the call (once): its time from the first poll to `end_ns`, and how it ended.
    fn record(&mut self, state: &mut ThreadState, end_ns: u64, end: CallEnd) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        if let Some((slice, name)) = self.trace.take() {
            let outcome = match end {
                CallEnd::Returned => AsyncOutcome::Completed,
                CallEnd::Panicked => AsyncOutcome::Panicked,
                CallEnd::Cancelled => AsyncOutcome::Cancelled,
            };
            trace_records::end_async(slice, end_ns, name, outcome);
        }
        let (Some((session, parent, first_poll_ns)), Some(callsite)) =
            (self.started, self.callsite)
        else {
            return;
        };
        let total_ns = end_ns.saturating_sub(first_poll_ns);
        // Busy time is never more than the call's time (a poll's clock and the first poll's
        // start are the same clock, but a dropped call ends at the drop).
        let busy_ns = self.busy_ns.min(total_ns);
        let measured = Measured {
            total_ns,
            // What it did itself while it held a thread: waiting is nobody's self time.
            self_ns: busy_ns.saturating_sub(self.child_ns),
            waiting_ns: total_ns - busy_ns,
            memory: MeasuredMemory::new(self.mem, self.child_mem),
            end,
        };
        state.record(session, parent, callsite.id(), &measured);
    }
}

impl Drop for AsyncCall {
    /// A call that started and never completed: a poll panicked, or the future was dropped
    /// (a timeout, a `select!` that took another branch). It counts, with its time until now.
    fn drop(&mut self) {
        if self.started.is_none() || self.recorded {
            return;
        }
        let end = if self.panicked || std::thread::panicking() {
            CallEnd::Panicked
        } else {
            CallEnd::Cancelled
        };
        let end_ns = now_ns();
        let _ = STATE.try_with(|state| {
            if let Ok(mut state) = state.try_borrow_mut() {
                self.record(&mut state, end_ns, end);
            }
        });
    }
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        // Reached only when the poll panicked: close the frame; the call records itself as
        // panicked when its future is dropped.
        if self.depth != INERT {
            self.call.panicked = true;
        }
        self.finish(false);
    }
}
