//! The flight recorder's window: the trace records of the last seconds, kept as the threads
//! wrote them (whole chunks, nothing formatted) until a dump formats them into a Chrome trace.
//!
//! Chunks arrive as threads fill them ([`trace_records::keep_full`]) and leave, oldest first, once
//! everything in them is older than the window or the window holds more bytes than it may. A
//! dump takes what the window holds (and the unread part of the chunks threads are filling),
//! so the next dump starts where this one ended.

use std::collections::{HashMap, VecDeque};

use crate::trace_records::{self, Keeper, KeptChunk, Record, Records, SlotInfo};

/// A chunk in the window, with the texts of its records.
struct Held {
    slot: u64,
    chunk: KeptChunk,
    texts: VecDeque<Box<str>>,
    /// Its latest record's time.
    newest_ns: u64,
}

/// What the window knows of a thread.
struct KeptThread {
    info: SlotInfo,
    /// Texts of records not in a held chunk yet (the thread's current chunk, or records not
    /// published yet), in record order.
    texts: VecDeque<Box<str>>,
    /// Held chunks of this thread.
    chunks: usize,
    ended: bool,
}

/// The last `keep_ns` of trace records, in at most `max_bytes` of chunks.
pub(super) struct Window {
    keep_ns: u64,
    max_bytes: usize,
    chunks: VecDeque<Held>,
    bytes: usize,
    threads: HashMap<u64, KeptThread>,
    /// The latest record time among chunks let go (0: none yet): the window holds everything
    /// after it.
    let_go_up_to_ns: u64,
    /// During a dump: the unread records of the threads' current chunks, by slot.
    current: Vec<(u64, Unread)>,
}

/// The records of a thread's current chunk not read before, copied for a dump, with their texts.
pub(super) struct Unread {
    pub(super) generation: u32,
    pub(super) records: Vec<Record>,
    pub(super) texts: VecDeque<Box<str>>,
}

/// One thread's part of a dump, in record order.
pub(super) struct DumpThread {
    pub(super) info: SlotInfo,
    /// Held chunks with their texts; each goes back to the pool when dropped.
    pub(super) chunks: Vec<(KeptChunk, VecDeque<Box<str>>)>,
    /// Records of the thread's current chunk.
    pub(super) current: Option<Unread>,
}

/// What a dump takes out of the window.
pub(super) struct Taken {
    pub(super) threads: Vec<DumpThread>,
    /// The window holds everything recorded after this time (0: since recording began).
    pub(super) complete_after_ns: u64,
}

impl Window {
    /// A window that keeps at least `keep_ns` of records, within `max_bytes` of chunks.
    pub(super) fn new(keep_ns: u64, max_bytes: usize) -> Self {
        Window {
            keep_ns,
            max_bytes,
            chunks: VecDeque::new(),
            bytes: 0,
            threads: HashMap::new(),
            let_go_up_to_ns: 0,
            current: Vec::new(),
        }
    }

    /// Takes the chunks threads filled and lets go of what is older than the window or past its
    /// bytes.
    pub(super) fn collect(&mut self, now_ns: u64) {
        trace_records::keep_full(self, false);
        self.let_go(now_ns);
    }

    fn let_go(&mut self, now_ns: u64) {
        let cutoff = now_ns.saturating_sub(self.keep_ns);
        while let Some(front) = self.chunks.front() {
            if self.bytes <= self.max_bytes && front.newest_ns >= cutoff {
                break;
            }
            let held = self.chunks.pop_front().expect("front exists");
            self.bytes -= held.chunk.bytes();
            self.let_go_up_to_ns = self.let_go_up_to_ns.max(held.newest_ns);
            trace_records::texts_taken(&held.texts);
            self.forget_thread_if_done(held.slot, true);
        }
    }

    /// Counts a held chunk of `slot` gone; forgets the thread once it ended and nothing of it
    /// is held.
    fn forget_thread_if_done(&mut self, slot: u64, chunk_gone: bool) {
        let Some(thread) = self.threads.get_mut(&slot) else { return };
        if chunk_gone {
            thread.chunks -= 1;
        }
        if thread.ended && thread.chunks == 0 && thread.texts.is_empty() {
            self.threads.remove(&slot);
        }
    }

    /// Takes everything the window holds, and the unread records of the chunks threads are
    /// filling, for a dump; the window starts again empty.
    pub(super) fn take(&mut self) -> Taken {
        trace_records::keep_full(self, true);
        let complete_after_ns = self.let_go_up_to_ns;
        let mut per_thread: HashMap<u64, DumpThread> = HashMap::new();
        for held in self.chunks.drain(..) {
            let thread = self.threads.get(&held.slot).expect("a held chunk's thread is known");
            per_thread
                .entry(held.slot)
                .or_insert_with(|| DumpThread {
                    info: thread.info.clone(),
                    chunks: Vec::new(),
                    current: None,
                })
                .chunks
                .push((held.chunk, held.texts));
        }
        for (slot, unread) in std::mem::take(&mut self.current) {
            let Some(thread) = self.threads.get(&slot) else { continue };
            per_thread
                .entry(slot)
                .or_insert_with(|| DumpThread {
                    info: thread.info.clone(),
                    chunks: Vec::new(),
                    current: None,
                })
                .current = Some(unread);
        }
        self.bytes = 0;
        for thread in self.threads.values_mut() {
            thread.chunks = 0;
        }
        self.threads.retain(|_, thread| !(thread.ended && thread.texts.is_empty()));
        // The next dump holds what comes after this one.
        self.let_go_up_to_ns = crate::clock::now_ns();
        let mut threads: Vec<DumpThread> = per_thread.into_values().collect();
        threads.sort_by_key(|thread| thread.info.id);
        Taken { threads, complete_after_ns }
    }

    fn thread(&mut self, slot: &SlotInfo) -> &mut KeptThread {
        self.threads.entry(slot.id).or_insert_with(|| KeptThread {
            info: slot.clone(),
            texts: VecDeque::new(),
            chunks: 0,
            ended: false,
        })
    }
}

/// The first `count` of `texts`, taken off.
fn take_texts(texts: &mut VecDeque<Box<str>>, count: usize) -> VecDeque<Box<str>> {
    let count = count.min(texts.len());
    texts.drain(..count).collect()
}

impl Keeper for Window {
    fn texts(&mut self, slot: &SlotInfo, texts: VecDeque<Box<str>>) {
        self.thread(slot).texts.extend(texts);
    }

    fn keep(&mut self, slot: &SlotInfo, chunk: KeptChunk) {
        let (with_text, newest_ns) = (chunk.texts(), chunk.records().last_ts());
        let thread = self.thread(slot);
        let texts = take_texts(&mut thread.texts, with_text);
        thread.chunks += 1;
        self.bytes += chunk.bytes();
        self.chunks.push_back(Held { slot: slot.id, chunk, texts, newest_ns });
    }

    fn current(&mut self, slot: &SlotInfo, generation: u32, records: Records<'_>) {
        if records.is_empty() {
            return;
        }
        let records: Vec<Record> = records.iter().collect();
        let with_text = records.iter().filter(|record| record.has_text()).count();
        let texts = take_texts(&mut self.thread(slot).texts, with_text);
        self.current.push((slot.id, Unread { generation, records, texts }));
    }

    fn ended(&mut self, slot: &SlotInfo) {
        self.thread(slot).ended = true;
        self.forget_thread_if_done(slot.id, false);
    }
}
