//! Rebuilds the call tree from a trace's slices: each distinct stack of slice names is a node
//! holding the figures of every slice that closed on that stack.
//!
//! Slices are matched per thread (`B` to its `E`; an `X` stays open until an event on its thread
//! starts at or after its end, as Perfetto's importer nests them). Async slices (`b`/`e`, matched
//! by category, id and name) nest under what was open on the thread that began them. Self time is
//! a slice's duration less its direct children's, as in the in-process recorder. The worker's
//! per-event slice (`pipeline`/`event`) is not a frame: stages under it are roots, and its
//! durations and queue waits become the trace's end-to-end figures; the producer's `submit`
//! slices (`pipeline`/`submit`) are left out.

use std::collections::{HashMap, HashSet};

use hdrhistogram::Histogram;

use crate::durations::{histogram, record, Durations};

use super::chrome::{TraceEvent, TrackId};

/// Figures of every slice closed on one stack.
pub(crate) struct NodeStats {
    pub durations: Durations,
    /// Allocations carried by the slices' arguments, when any slice carried them.
    pub allocations: Option<u64>,
    pub bytes_allocated: Option<u64>,
    /// Some slice here ended with an `outcome` argument: a `#[stage]` call (that failed, in
    /// traces that also close with a [`Declared`] entry).
    pub stage_marked: bool,
}

impl NodeStats {
    pub(crate) fn new() -> Self {
        NodeStats {
            durations: Durations::new(),
            allocations: None,
            bytes_allocated: None,
            stage_marked: false,
        }
    }

    /// Adds `other`'s figures to these (two stacks that make one row).
    pub(crate) fn merge(&mut self, other: &NodeStats) {
        self.durations.merge(&other.durations);
        let sum = add_measured;
        self.allocations = sum(self.allocations, other.allocations);
        self.bytes_allocated = sum(self.bytes_allocated, other.bytes_allocated);
        self.stage_marked |= other.stage_marked;
    }
}

/// Two counts that either side may not have measured: `None` only when neither did.
pub(crate) fn add_measured(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

/// One distinct stack of slice names.
pub(crate) struct Node {
    pub name: String,
    /// Index of the parent node; the root (index 0) is its own parent.
    pub parent: usize,
    children: HashMap<String, usize>,
    pub stats: NodeStats,
}

/// A slice begun and not yet ended on some thread.
struct Open {
    /// The call-tree node, or `None` for a per-event slice (not a frame).
    node: Option<usize>,
    start_us: f64,
    child_ns: u64,
    queue_wait_us: Option<u64>,
    /// For a complete (`X`) slice: when it ends, and its arguments.
    complete: Option<(f64, Option<super::chrome::EventArgs>)>,
}

/// An async slice begun and not yet ended.
struct OpenAsync {
    /// The call-tree node, or `None` for an async event's slice (not a frame).
    node: Option<usize>,
    start_us: f64,
    queue_wait_us: Option<u64>,
}

/// Counts of what the trace held besides complete slices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct SliceCounts {
    /// Slices read completely (begin and end, or one complete event).
    pub slices: u64,
    /// Slices begun but never ended (the trace stopped while they ran); left out of the figures.
    pub unclosed: u64,
    /// Ends with no matching begin; ignored.
    pub unmatched_ends: u64,
    /// Events that are not slices (counters, instants, metadata...).
    pub other_events: u64,
    /// Slices nested deeper than 512 levels on their thread; left out, as Perfetto does.
    #[serde(default)]
    pub too_deep: u64,
}

/// The deepest nesting read (Perfetto's importer stops at the same depth).
pub(crate) const MAX_DEPTH: usize = 512;

/// A counter track's samples (`C` events), as `pipeline-prof` summarises them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CounterSummary {
    /// The track's name as Perfetto shows it: the event's name and the series, e.g. "queue depth".
    pub name: String,
    /// Samples read.
    pub samples: u64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// The last value in the file.
    pub last: f64,
}

/// What a trace held besides slices: counters, instants, flow arrows, and what its writer says
/// it left out.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct TraceExtras {
    /// Counter tracks, by name.
    pub counters: Vec<CounterSummary>,
    /// Instant events by name (rejected, panic, queue full...), with their counts.
    pub instants: Vec<(String, u64)>,
    /// Flow arrows started (`flow_out`, or `s` events).
    pub flows: u64,
    /// Records the writer says it left out (the closing `pipeline_profile` entry), if it says.
    pub records_left_out: Option<u64>,
    /// The window, when the trace is a flight recorder dump.
    #[serde(default)]
    pub flight_window: Option<super::chrome::FlightWindow>,
}

/// Figures of the per-event slices a worker pool writes.
pub(crate) struct EventFigures {
    /// From a worker taking the event to its last stage ending (the event slice).
    pub processing: Histogram<u64>,
    /// How long the event waited in the queue first.
    pub queue_wait: Histogram<u64>,
    /// Queue wait plus processing, for events whose slice says how long they waited.
    pub end_to_end: Histogram<u64>,
}

/// What the trace's closing `pipeline_profile` metadata entry declares (traces this toolkit
/// writes; a trace cut short, or from another program, has none).
#[derive(Debug, Default)]
pub(crate) struct Declared {
    /// The names of the `#[stage]`s.
    pub stages: HashSet<String>,
    /// Allocations were measured: a stage slice without allocation arguments allocated nothing.
    pub allocations_measured: bool,
    /// The writing clock's resolution (the smallest step between two readings).
    pub timer_resolution_ns: Option<u64>,
}

/// The call tree being built as events stream in.
pub(crate) struct CallTree {
    pub nodes: Vec<Node>,
    open: HashMap<(TrackId, TrackId), Vec<Open>>,
    /// Async slices by (process, category, id), innermost last.
    open_async: HashMap<(TrackId, Option<String>, TrackId), Vec<OpenAsync>>,
    /// Per thread: begins left out for depth whose ends are still to come.
    too_deep_open: HashMap<(TrackId, TrackId), u64>,
    /// Where each instant name and counter track is in `extras` (so look-ups stay O(1)).
    instant_index: HashMap<String, usize>,
    counter_index: HashMap<String, usize>,
    pub counts: SliceCounts,
    pub events: EventFigures,
    pub declared: Option<Declared>,
    pub extras: TraceExtras,
}

const ROOT: usize = 0;

fn is_event_slice(event: &TraceEvent) -> bool {
    event.cat.as_deref() == Some("pipeline") && event.name.as_deref() == Some("event")
}

/// The toolkit's own slices that are not calls: a producer's submissions.
fn is_ignored_slice(event: &TraceEvent) -> bool {
    event.cat.as_deref() == Some("pipeline") && event.name.as_deref() != Some("event")
}

fn duration_ns(start_us: f64, end_us: f64) -> u64 {
    let ns = ((end_us - start_us) * 1000.0).round();
    if ns.is_finite() && ns > 0.0 {
        ns as u64
    } else {
        0
    }
}

impl CallTree {
    pub(crate) fn new() -> Self {
        let root = Node {
            name: String::new(),
            parent: ROOT,
            children: HashMap::new(),
            stats: NodeStats::new(),
        };
        CallTree {
            nodes: vec![root],
            open: HashMap::new(),
            open_async: HashMap::new(),
            too_deep_open: HashMap::new(),
            instant_index: HashMap::new(),
            counter_index: HashMap::new(),
            counts: SliceCounts::default(),
            events: EventFigures {
                processing: histogram(),
                queue_wait: histogram(),
                end_to_end: histogram(),
            },
            declared: None,
            extras: TraceExtras::default(),
        }
    }

    /// Takes one event in file order.
    pub(crate) fn add(&mut self, event: TraceEvent) {
        if event.flow_out == Some(true) || event.ph == "s" {
            self.extras.flows += 1;
        }
        match event.ph.as_str() {
            "B" | "E" | "X" if is_ignored_slice(&event) => self.counts.other_events += 1,
            "B" => self.begin(event, None),
            "E" => self.end(event),
            "X" => self.complete(event),
            "b" => self.begin_async(event),
            "e" => self.end_async(event),
            "M" if event.name.as_deref() == Some(crate::trace::PROFILE_METADATA) => {
                self.counts.other_events += 1;
                let args = event.args.unwrap_or_default();
                self.extras.records_left_out = args.records_left_out.and_then(|c| c.0);
                self.extras.flight_window = args.flight_recorder_window;
                self.declared = Some(Declared {
                    stages: args.stages.unwrap_or_default().into_iter().collect(),
                    allocations_measured: args.allocations_measured.unwrap_or(false),
                    timer_resolution_ns: args.timer_resolution_ns.and_then(|c| c.0),
                });
            }
            "C" => {
                self.counts.other_events += 1;
                self.counter(event);
            }
            "i" | "I" => {
                self.counts.other_events += 1;
                let name = event.name.unwrap_or_default();
                match self.instant_index.get(&name) {
                    Some(&index) => self.extras.instants[index].1 += 1,
                    None => {
                        self.instant_index.insert(name.clone(), self.extras.instants.len());
                        self.extras.instants.push((name, 1));
                    }
                }
            }
            _ => self.counts.other_events += 1,
        }
    }

    fn counter(&mut self, event: TraceEvent) {
        let name = event.name.unwrap_or_default();
        for (series, value) in event.args.map(|a| a.numbers).unwrap_or_default() {
            let track = format!("{name} {series}");
            let counters = &mut self.extras.counters;
            match self.counter_index.get(&track).map(|&index| &mut counters[index]) {
                Some(c) => {
                    c.samples += 1;
                    c.min = c.min.min(value);
                    c.max = c.max.max(value);
                    c.last = value;
                }
                None => {
                    self.counter_index.insert(track.clone(), counters.len());
                    counters.push(CounterSummary {
                        name: track,
                        samples: 1,
                        min: value,
                        max: value,
                        last: value,
                    });
                }
            }
        }
    }

    /// Ends reading: complete slices still open are closed; begun slices never ended are
    /// counted and left out.
    pub(crate) fn finish(&mut self) {
        let tracks: Vec<(TrackId, TrackId)> = self.open.keys().copied().collect();
        for track in tracks {
            self.close_complete(track, f64::INFINITY);
            let left = self.open.remove(&track).unwrap_or_default();
            self.counts.unclosed += left.len() as u64;
        }
        self.counts.unclosed += self.open_async.values().map(|s| s.len() as u64).sum::<u64>();
        self.open_async.clear();
    }

    /// Closes the complete (`X`) slices on top of `track`'s stack that ended by `ts`; an open
    /// `B` slice stops the search (it is closed by its `E`).
    fn close_complete(&mut self, track: (TrackId, TrackId), ts: f64) {
        loop {
            let Some(stack) = self.open.get_mut(&track) else { return };
            let ended = match stack.last() {
                Some(Open { complete: Some((end_us, _)), .. }) => *end_us <= ts,
                _ => false,
            };
            if !ended {
                return;
            }
            let mut open = stack.pop().expect("checked");
            let (end_us, args) = open.complete.take().expect("checked");
            let duration = duration_ns(open.start_us, end_us);
            let credited = if open.node.is_some() { duration } else { open.child_ns };
            if let Some(parent) = stack.last_mut() {
                parent.child_ns += credited;
            }
            let unfinished = args.as_ref().is_some_and(|a| a.unfinished == Some(true));
            if unfinished {
                self.counts.unclosed += 1; // cut short when the trace ended: not a whole call
                continue;
            }
            self.close(open, duration, args);
        }
    }

    fn child(&mut self, parent: usize, name: &str) -> usize {
        if let Some(&index) = self.nodes[parent].children.get(name) {
            return index;
        }
        let index = self.nodes.len();
        self.nodes.push(Node {
            name: name.to_owned(),
            parent,
            children: HashMap::new(),
            stats: NodeStats::new(),
        });
        self.nodes[parent].children.insert(name.to_owned(), index);
        index
    }

    fn begin(
        &mut self,
        event: TraceEvent,
        complete: Option<(f64, Option<super::chrome::EventArgs>)>,
    ) {
        let Some(ts) = event.ts else {
            self.counts.other_events += 1;
            return;
        };
        let track = (event.pid, event.tid);
        self.close_complete(track, ts);
        let open = self.open.get(&track);
        if open.is_some_and(|stack| stack.len() >= MAX_DEPTH) {
            self.counts.too_deep += 1;
            if complete.is_none() {
                *self.too_deep_open.entry(track).or_default() += 1; // its end is ignored too
            }
            return;
        }
        let parent = open.and_then(|s| s.iter().rev().find_map(|o| o.node)).unwrap_or(ROOT);
        let args = event.args.as_ref().or(complete.as_ref().and_then(|(_, args)| args.as_ref()));
        let queue_wait_us = args.and_then(|a| a.queue_wait_us).and_then(|c| c.0);
        let node = if is_event_slice(&event) {
            None
        } else {
            let name = event.name.as_deref().unwrap_or("(unnamed)");
            Some(self.child(parent, name))
        };
        self.open.entry(track).or_default().push(Open {
            node,
            start_us: ts,
            child_ns: 0,
            queue_wait_us,
            complete,
        });
    }

    fn begin_async(&mut self, event: TraceEvent) {
        let (Some(ts), Some(id)) = (event.ts, event.id) else {
            self.counts.other_events += 1;
            return;
        };
        let track = (event.pid, event.tid);
        self.close_complete(track, ts);
        let open = self.open.get(&track);
        let parent = open.and_then(|s| s.iter().rev().find_map(|o| o.node)).unwrap_or(ROOT);
        // An async worker's event: its figures, not a frame (its stages nest on its track).
        let (node, queue_wait_us) = if is_event_slice(&event) {
            (None, event.args.as_ref().and_then(|a| a.queue_wait_us).and_then(|c| c.0))
        } else {
            let name = event.name.as_deref().unwrap_or("(unnamed)");
            (Some(self.child(parent, name)), None)
        };
        let key = (event.pid, event.cat, id);
        let open = OpenAsync { node, start_us: ts, queue_wait_us };
        self.open_async.entry(key).or_default().push(open);
    }

    fn end_async(&mut self, event: TraceEvent) {
        let (Some(ts), Some(id)) = (event.ts, event.id) else {
            self.counts.other_events += 1;
            return;
        };
        let key = (event.pid, event.cat.clone(), id);
        let nodes = &self.nodes;
        let Some(stack) = self.open_async.get_mut(&key) else {
            self.counts.unmatched_ends += 1;
            return;
        };
        let found = match event.name.as_deref() {
            None => stack.len().checked_sub(1),
            Some(name) => stack.iter().rposition(|open| match open.node {
                Some(node) => nodes[node].name == name,
                None => is_event_slice(&event),
            }),
        };
        let Some(position) = found else {
            self.counts.unmatched_ends += 1;
            return;
        };
        let open = stack.remove(position);
        if stack.is_empty() {
            self.open_async.remove(&key);
        }
        if event.args.as_ref().is_some_and(|a| a.unfinished == Some(true)) {
            self.counts.unclosed += 1;
            return;
        }
        let duration = duration_ns(open.start_us, ts);
        let slot = Open {
            node: open.node,
            start_us: open.start_us,
            child_ns: 0,
            queue_wait_us: open.queue_wait_us,
            complete: None,
        };
        self.close(slot, duration, event.args);
    }

    fn end(&mut self, event: TraceEvent) {
        let Some(ts) = event.ts else {
            self.counts.other_events += 1;
            return;
        };
        let track = (event.pid, event.tid);
        self.close_complete(track, ts);
        if let Some(skipped) = self.too_deep_open.get_mut(&track).filter(|n| **n > 0) {
            *skipped -= 1; // the end of a begin left out for depth
            return;
        }
        let nodes = &self.nodes;
        let stack = self.open.entry(track).or_default();
        // The innermost open slice of that name (tracing-chrome names its ends); an end without
        // a name closes the innermost slice.
        let found = match event.name.as_deref() {
            None => stack.len().checked_sub(1),
            Some(name) => stack.iter().rposition(|open| match open.node {
                Some(node) => nodes[node].name == name,
                None => is_event_slice(&event),
            }),
        };
        let Some(position) = found else {
            self.counts.unmatched_ends += 1;
            return;
        };
        let open = stack.remove(position);
        if open.complete.is_some() {
            self.counts.unmatched_ends += 1; // an `E` cannot end a complete slice
            stack.insert(position, open);
            return;
        }
        let duration = duration_ns(open.start_us, ts);
        // Credit the enclosing slice; a per-event slice passes its children's time through.
        let credited = if open.node.is_some() { duration } else { open.child_ns };
        if let Some(parent) = position.checked_sub(1).and_then(|p| stack.get_mut(p)) {
            parent.child_ns += credited;
        }
        if event.args.as_ref().is_some_and(|a| a.unfinished == Some(true)) {
            self.counts.unclosed += 1;
            return;
        }
        self.close(open, duration, event.args);
    }

    fn complete(&mut self, event: TraceEvent) {
        let (Some(ts), Some(dur)) = (event.ts, event.dur) else {
            self.counts.other_events += 1;
            return;
        };
        // Open until an event on its thread starts at or after its end: what begins inside it
        // before then nests in it.
        let end_us = if dur.is_finite() && dur > 0.0 { ts + dur } else { ts };
        let args = event.args;
        self.begin(TraceEvent { ph: "B".to_owned(), args: None, ..event }, Some((end_us, args)));
    }

    fn close(&mut self, open: Open, duration: u64, args: Option<super::chrome::EventArgs>) {
        self.counts.slices += 1;
        let Some(node) = open.node else {
            record(&mut self.events.processing, duration);
            if let Some(wait_us) = open.queue_wait_us {
                let wait_ns = wait_us.saturating_mul(1000);
                record(&mut self.events.queue_wait, wait_ns);
                record(&mut self.events.end_to_end, wait_ns.saturating_add(duration));
            }
            return;
        };
        let stats = &mut self.nodes[node].stats;
        stats.durations.record(duration, duration.saturating_sub(open.child_ns));
        if let Some(args) = args {
            stats.stage_marked |= args.outcome.is_some();
            if let Some(count) = args.allocations.and_then(|c| c.0) {
                *stats.allocations.get_or_insert(0) += count;
            }
            if let Some(count) = args.bytes_allocated.and_then(|c| c.0) {
                *stats.bytes_allocated.get_or_insert(0) += count;
            }
        }
    }

    /// The names from the root to `node` (root excluded).
    pub(crate) fn path(&self, mut node: usize) -> Vec<&str> {
        let mut names = Vec::new();
        while node != ROOT {
            names.push(self.nodes[node].name.as_str());
            node = self.nodes[node].parent;
        }
        names.reverse();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::chrome::read_events;

    fn tree(text: &str) -> CallTree {
        let mut tree = CallTree::new();
        read_events(text.as_bytes(), &mut |e| tree.add(e));
        tree.finish();
        tree
    }

    fn node<'a>(tree: &'a CallTree, path: &[&str]) -> &'a NodeStats {
        let index = (1..tree.nodes.len()).find(|&i| tree.path(i) == path).expect("node exists");
        &tree.nodes[index].stats
    }

    #[test]
    fn nesting_gives_total_and_self_time_per_stack() {
        let t = tree(
            r#"[{"ph":"B","name":"S","pid":1,"tid":1,"ts":0},
                {"ph":"B","name":"f","pid":1,"tid":1,"ts":1},
                {"ph":"B","name":"S","pid":1,"tid":2,"ts":1},
                {"ph":"E","name":"f","pid":1,"tid":1,"ts":4},
                {"ph":"E","name":"S","pid":1,"tid":1,"ts":10,"args":{"outcome":"ok","allocations":"2"}},
                {"ph":"E","name":"S","pid":1,"tid":2,"ts":6,"args":{"outcome":"ok","allocations":"1"}}]"#,
        );
        let stage = node(&t, &["S"]);
        let d = &stage.durations;
        assert_eq!((d.calls, d.total_ns, d.self_ns), (2, 15_000, 12_000));
        assert!(stage.stage_marked);
        assert_eq!(stage.allocations, Some(3));
        let f = node(&t, &["S", "f"]);
        let d = &f.durations;
        assert_eq!((d.calls, d.total_ns, d.self_ns), (1, 3_000, 3_000));
        assert_eq!(t.counts.slices, 3);
    }

    #[test]
    fn per_event_slices_are_not_frames_but_give_processing_queue_wait_and_end_to_end() {
        let t = tree(
            r#"[{"ph":"B","cat":"pipeline","name":"event","args":{"queue_wait_us":"7"},"tid":1,"ts":0},
                {"ph":"B","name":"S","tid":1,"ts":1},
                {"ph":"E","name":"S","tid":1,"ts":3},
                {"ph":"E","cat":"pipeline","name":"event","tid":1,"ts":4}]"#,
        );
        assert_eq!(t.path(1), ["S"]);
        assert_eq!(t.nodes.len(), 2);
        assert_eq!(t.events.processing.len(), 1);
        assert!(t.events.processing.equivalent(t.events.processing.max(), 4_000));
        assert!(t.events.queue_wait.equivalent(t.events.queue_wait.max(), 7_000));
        assert!(t.events.end_to_end.equivalent(t.events.end_to_end.max(), 11_000));
    }

    #[test]
    fn unclosed_and_unmatched_slices_are_counted_not_used() {
        let t = tree(
            r#"[{"ph":"E","name":"x","tid":1,"ts":0},
                {"ph":"B","name":"S","tid":1,"ts":1},
                {"ph":"C","name":"queue","ts":1,"args":{"depth":3}},
                {"ph":"X","name":"g","tid":2,"ts":1,"dur":2.5}]"#,
        );
        assert_eq!(t.counts.unmatched_ends, 1);
        assert_eq!(t.counts.unclosed, 1);
        assert_eq!(t.counts.other_events, 1);
        assert_eq!(node(&t, &["g"]).durations.total_ns, 2_500);
        assert_eq!(node(&t, &["S"]).durations.calls, 0);
    }
}
