//! What one worker books per event (under its own lock): latency and queue wait histograms,
//! where the slowest events' time went, and each stage's stopped events with their messages.

use hdrhistogram::Histogram;

use super::{StageOutcomes, StageTime};

/// One event's time in each slot (the stages, then the sink).
pub(crate) struct SlotTimes<'a> {
    /// From the call's start (first poll) to its end: what the event waited for it.
    pub(crate) wall_ns: &'a [u64],
    /// The time it held a thread (the sum of its polls; its wall time when synchronous).
    pub(crate) busy_ns: &'a [u64],
    /// Of the rest, the time it was woken and waiting to be polled (async runs only).
    pub(crate) ready_ns: Option<&'a [u64]>,
}
use crate::durations::{histogram, record};
use crate::stage::StopKind;

/// Latency buckets are a quarter of an octave wide (~19 %): enough to find "the events at or
/// above p99" and average what their time was spent on, in bounded memory.
pub(super) const BUCKETS_PER_OCTAVE: f64 = 4.0;
pub(super) const BUCKETS: usize = 64 * BUCKETS_PER_OCTAVE as usize;

pub(super) fn bucket_of(latency_ns: u64) -> usize {
    let index = ((latency_ns.max(1) as f64).log2() * BUCKETS_PER_OCTAVE) as usize;
    index.min(BUCKETS - 1)
}

/// Sums of where the time of the events in one latency bucket went.
#[derive(Clone, Default)]
pub(super) struct Composition {
    pub(super) events: u64,
    pub(super) end_to_end_ns: u64,
    pub(super) wait_ns: u64,
    pub(super) stage_ns: Vec<u64>,
}

impl Composition {
    fn add(&mut self, events: u64, end_to_end_ns: u64, wait_ns: u64, stage_ns: &[u64]) {
        self.events += events;
        self.end_to_end_ns += end_to_end_ns;
        self.wait_ns += wait_ns;
        if self.stage_ns.len() < stage_ns.len() {
            self.stage_ns.resize(stage_ns.len(), 0);
        }
        for (sum, ns) in self.stage_ns.iter_mut().zip(stage_ns) {
            *sum += ns;
        }
    }

    pub(super) fn merge(&mut self, other: &Composition) {
        self.add(other.events, other.end_to_end_ns, other.wait_ns, &other.stage_ns);
    }
}

pub(super) const MAX_MESSAGES: usize = 10;

/// How an event that did not complete was stopped (or filtered).
pub(crate) struct BookedStop {
    pub stage_index: usize,
    pub kind: StopKind,
    /// For failures: whether it was a panic, and the message.
    pub failure: Option<Failure>,
}

/// A failed event's cause.
pub(crate) struct Failure {
    pub panicked: bool,
    pub message: String,
}

/// A worker's times around one event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WorkerTimes {
    /// From taking the event off the queue to finishing it.
    pub(crate) service_ns: u64,
    /// Of the service time, the part inside the stages.
    pub(crate) in_stage_ns: u64,
    /// Of that, the time the stages held a thread (less than `in_stage_ns` when async stages
    /// waited between polls).
    pub(crate) in_stage_busy_ns: u64,
    /// How long the worker waited for it on an empty queue.
    pub(crate) idle_ns: u64,
    /// From the worker's start to the end of this event.
    pub(crate) running_ns: u64,
}

/// What one worker thread measured; owned by that thread until it ends.
pub(crate) struct WorkerLoad {
    pub(crate) name: String,
    pub(super) events: u64,
    pub(super) busy_ns: u64,
    /// Time inside the stages.
    pub(super) in_stage_ns: u64,
    /// Of that, the time the stages held a thread.
    pub(super) in_stage_busy_ns: u64,
    /// Each slot's times, summed over its calls: wall, busy, and (async) woken waiting.
    pub(super) stage_times: Vec<StageTime>,
    /// Time waiting on an empty queue.
    pub(super) idle_ns: u64,
    /// From the worker's start to the end of its latest event.
    pub(super) running_ns: u64,
    /// The CPU time its thread used, booked when a synchronous worker's loop ends (`None`
    /// before that, and for async workers, whose tasks share the runtime's threads).
    pub(crate) thread_cpu_ns: Option<u64>,
    pub(super) completed: u64,
    pub(super) latency: Histogram<u64>,
    pub(super) wait: Histogram<u64>,
    pub(super) composition: Vec<Composition>,
    pub(super) stages: Vec<StageOutcomes>,
}

impl WorkerLoad {
    pub(crate) fn new(name: String, stage_names: &[String]) -> Self {
        WorkerLoad {
            name,
            events: 0,
            busy_ns: 0,
            in_stage_ns: 0,
            in_stage_busy_ns: 0,
            stage_times: stage_names
                .iter()
                .map(|name| StageTime { name: name.clone(), ..StageTime::default() })
                .collect(),
            idle_ns: 0,
            running_ns: 0,
            thread_cpu_ns: None,
            completed: 0,
            latency: histogram(),
            wait: histogram(),
            composition: vec![Composition::default(); BUCKETS],
            stages: stage_names
                .iter()
                .map(|name| StageOutcomes { name: name.clone(), ..StageOutcomes::default() })
                .collect(),
        }
    }

    /// Records one event: its queue wait, time per stage (wall and busy), the worker's times
    /// around it and how it ended.
    pub(crate) fn record(
        &mut self,
        wait_ns: u64,
        stage: &SlotTimes<'_>,
        times: WorkerTimes,
        stopped: Option<BookedStop>,
    ) {
        let stage_ns = stage.wall_ns;
        let WorkerTimes { service_ns, in_stage_ns, in_stage_busy_ns, idle_ns, running_ns } = times;
        let end_to_end = wait_ns + service_ns;
        self.events += 1;
        self.busy_ns += service_ns;
        self.in_stage_ns += in_stage_ns;
        self.in_stage_busy_ns += in_stage_busy_ns;
        for (slot, sum) in self.stage_times.iter_mut().enumerate() {
            sum.wall_ns += stage.wall_ns.get(slot).copied().unwrap_or(0);
            sum.busy_ns += stage.busy_ns.get(slot).copied().unwrap_or(0);
            sum.ready_ns += stage.ready_ns.and_then(|ready| ready.get(slot)).copied().unwrap_or(0);
        }
        self.idle_ns += idle_ns;
        self.running_ns = self.running_ns.max(running_ns);
        record(&mut self.latency, end_to_end);
        record(&mut self.wait, wait_ns);
        self.composition[bucket_of(end_to_end)].add(1, end_to_end, wait_ns, stage_ns);
        match stopped {
            None => self.completed += 1,
            Some(BookedStop { stage_index, kind, failure }) => {
                let stage = &mut self.stages[stage_index];
                match kind {
                    StopKind::Rejected => stage.rejected += 1,
                    StopKind::Failed => stage.failed += 1,
                    StopKind::Filtered => stage.filtered += 1,
                }
                if let Some(Failure { panicked, message }) = failure {
                    stage.panicked += u64::from(panicked);
                    count_message(stage, message, 1);
                }
            }
        }
    }
}

pub(super) fn count_message(stage: &mut StageOutcomes, message: String, n: u64) {
    let messages = &mut stage.failure_messages;
    if let Some((_, count)) = messages.iter_mut().find(|(m, _)| *m == message) {
        *count += n;
    } else if messages.len() < MAX_MESSAGES {
        messages.push((message, n));
    } else {
        stage.other_messages += n;
    }
}
