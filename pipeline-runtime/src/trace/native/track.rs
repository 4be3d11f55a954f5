//! What the writer keeps of each thread's track while it reads the records: slices waiting for
//! their thread's outermost slice to end (written in begin order, or as `B`/`E` pairs past
//! [`PENDING_LIMIT`]), and async slices whose begin and end may come from different threads.

use std::collections::{HashMap, VecDeque};

use super::json::{
    async_event, begin_event, complete_event, end_event, instant, AsyncTrack, EventPrefix,
    NameCache,
};
use super::PENDING_LIMIT;
use crate::trace_records::{SliceKind, SlotInfo};

/// The begin of a slice, as the writer keeps it until the slice ends.
#[derive(Clone, Copy)]
pub(super) enum Begin {
    Slice {
        ts: u64,
        name: &'static str,
        kind: SliceKind,
    },
    Event {
        ts: u64,
        id: u64,
        wait_ns: u64,
        flow: u64,
    },
    Submit {
        ts: u64,
        id: u64,
        flow: u64,
    },
    /// A poll of async event `id`'s future.
    Poll {
        ts: u64,
        id: u64,
    },
}

impl Begin {
    pub(super) fn ts(&self) -> u64 {
        match *self {
            Begin::Slice { ts, .. }
            | Begin::Event { ts, .. }
            | Begin::Submit { ts, .. }
            | Begin::Poll { ts, .. } => ts,
        }
    }
}

/// How a slice ended.
pub(super) struct End {
    pub(super) ts: u64,
    pub(super) allocations: u64,
    pub(super) bytes: u64,
    pub(super) outcome: Option<Box<str>>,
    pub(super) unfinished: bool,
}

/// A thread's entry waiting to be written.
pub(super) enum Pending {
    /// A slice: `end` is `None` while it is open.
    Slice {
        begin: Begin,
        end: Option<End>,
    },
    Instant {
        ts: u64,
        marker: &'static str,
        args: Box<str>,
    },
}

/// An open slice of a thread.
pub(super) enum Open {
    /// Waiting in the thread's pending entries, at this index.
    Pending(u32),
    /// Written as a `B` event when too much was waiting: its `E` follows when it ends.
    Written(Begin),
}

/// What the writer knows of one thread.
pub(super) struct ThreadView {
    pub(super) tid: u64,
    pub(super) name: String,
    /// `,\n{"ph":"X","pid":P,"tid":T,"ts":`: the start of each of its complete slices.
    pub(super) complete_prefix: EventPrefix,
    /// Its `thread_name` entry is in the current file.
    pub(super) named: bool,
    pub(super) open: Vec<Open>,
    pub(super) pending: Vec<Pending>,
    pub(super) texts: VecDeque<Box<str>>,
    pub(super) names: NameCache,
}

/// The name of an async event's slice.
pub(super) const EVENT: &str = "event";

/// An async slice's track and name: begins and ends pair up by these.
pub(super) type AsyncKey = (AsyncTrack, &'static str);

/// An async slice's end, read before its begin.
pub(super) struct HeldEnd {
    pub(super) tid: u64,
    pub(super) ts: u64,
    pub(super) note: Option<&'static str>,
}

/// The writer's async slices while it reads one thread's records.
pub(super) struct AsyncSlices<'a> {
    pub(super) open: &'a mut HashMap<AsyncKey, u32>,
    pub(super) held: &'a mut HashMap<AsyncKey, Vec<HeldEnd>>,
    pub(super) pid: u64,
}

impl AsyncSlices<'_> {
    /// Books a begin just written to `out`, then writes the end read before it, if one was.
    pub(super) fn begun(&mut self, key: AsyncKey, out: &mut Vec<u8>) {
        let held = self.held.get_mut(&key).and_then(Vec::pop);
        if self.held.get(&key).is_some_and(Vec::is_empty) {
            self.held.remove(&key);
        }
        match held {
            Some(end) => self.write_end(key, &end, out),
            None => *self.open.entry(key).or_default() += 1,
        }
    }

    /// Writes an end whose begin was written; holds one whose begin was not read yet.
    pub(super) fn ended(&mut self, key: AsyncKey, end: HeldEnd, out: &mut Vec<u8>) {
        match self.open.get_mut(&key) {
            Some(open) => {
                *open -= 1;
                if *open == 0 {
                    self.open.remove(&key);
                }
                self.write_end(key, &end, out);
            }
            None => self.held.entry(key).or_default().push(end),
        }
    }

    pub(super) fn write_end(&self, (track, name): AsyncKey, end: &HeldEnd, out: &mut Vec<u8>) {
        async_event(out, b'e', self.pid, end.tid, end.ts, name, track, end.note);
    }
}

impl ThreadView {
    pub(super) fn new(pid: u64, slot: &SlotInfo) -> Self {
        ThreadView {
            tid: slot.tid,
            name: slot.name.clone(),
            complete_prefix: EventPrefix::new(b'X', pid, slot.tid),
            named: false,
            open: Vec::new(),
            pending: Vec::new(),
            texts: VecDeque::new(),
            names: NameCache::default(),
        }
    }

    pub(super) fn begin(&mut self, begin: Begin) {
        let index = self.pending.len() as u32;
        self.pending.push(Pending::Slice { begin, end: None });
        self.open.push(Open::Pending(index));
    }

    pub(super) fn end(&mut self, end: End, pid: u64, out: &mut Vec<u8>, written: &mut u64) {
        let Some(open) = self.open.pop() else { return }; // an end without its begin: skipped
        match open {
            Open::Pending(index) => {
                if let Some(Pending::Slice { end: slot, .. }) = self.pending.get_mut(index as usize)
                {
                    *slot = Some(end);
                }
            }
            Open::Written(begin) => {
                // Written as `B` when the queue overflowed: what nested in it goes first.
                self.flush(pid, out, written);
                end_event(out, pid, self.tid, &begin, &end);
            }
        }
        if self.open.is_empty() || self.pending.len() > PENDING_LIMIT {
            self.flush(pid, out, written);
        }
    }

    /// Writes the pending entries in begin order; slices still open become `B` events.
    pub(super) fn flush(&mut self, pid: u64, out: &mut Vec<u8>, written: &mut u64) {
        if self.pending.is_empty() {
            return;
        }
        *written += self.pending.len() as u64;
        let names = &mut self.names;
        for entry in &self.pending {
            match entry {
                Pending::Slice { begin, end: Some(end) } => {
                    complete_event(out, &self.complete_prefix, names, begin, end);
                }
                Pending::Slice { begin, end: None } => {
                    begin_event(out, pid, self.tid, names, begin)
                }
                Pending::Instant { ts, marker, args } => {
                    instant(out, pid, self.tid, *ts, marker, args);
                }
            }
        }
        for open in &mut self.open {
            if let Open::Pending(index) = *open {
                if let Some(Pending::Slice { begin, .. }) = self.pending.get(index as usize) {
                    *open = Open::Written(*begin);
                }
            }
        }
        self.pending.clear();
    }
}
