//! What a concurrent run measured: per-worker figures gathered without shared locks, merged into
//! a [`RunSummary`] with throughput, latency, its split into queue wait and stages, the queue's
//! depth over time, worker utilisation and a diagnosis in plain words.

use hdrhistogram::Histogram;
use serde::Serialize;

mod diagnosis;
mod finished;
mod merge;
mod worker;

pub(crate) use finished::{finished, finished_in, forget_finished};
pub(crate) use merge::{trend, RunTotals};
pub(crate) use worker::{BookedStop, Failure, SlotTimes, WorkerLoad, WorkerTimes};

/// One stage's stopped and filtered events in a run (the sink, when the run had one, is the
/// last entry).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StageOutcomes {
    /// The stage.
    pub name: String,
    /// Events it dropped as a filter (`process` returned `None`): neither rejected nor failed.
    pub filtered: u64,
    /// Events it rejected.
    pub rejected: u64,
    /// Events it failed, panics included.
    pub failed: u64,
    /// Of those, events whose processing panicked (caught; the worker went on).
    pub panicked: u64,
    /// Distinct failure messages with how often each occurred (the first 10 distinct ones;
    /// each cut at 1 KiB).
    pub failure_messages: Vec<(String, u64)>,
    /// Failures whose message was not among those 10 (messages that carry ids are all
    /// distinct): the counts add up, `failure_messages` plus this equals `failed`.
    pub other_messages: u64,
}

/// Latency percentiles of a run's events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Latency {
    /// Mean, nanoseconds.
    pub mean_ns: u64,
    /// Median, nanoseconds.
    pub p50_ns: u64,
    /// 99th percentile, nanoseconds.
    pub p99_ns: u64,
    /// Longest, nanoseconds.
    pub max_ns: u64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Latency::default();
        }
        Latency {
            mean_ns: histogram.mean() as u64,
            p50_ns: histogram.value_at_quantile(0.50),
            p99_ns: histogram.value_at_quantile(0.99),
            max_ns: histogram.max(),
        }
    }
}

/// Where the time of the slowest events went: the events at or above p99 end-to-end latency.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LatencySplit {
    /// How many events the split averages over.
    pub events: u64,
    /// Fraction of their latency spent waiting in the queue.
    pub queue_wait: f64,
    /// Fraction spent in each stage, in pipeline order.
    pub stages: Vec<StageShare>,
}

/// One stage's share of a whole (the time in stages, the busy time, the slowest events' latency).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StageShare {
    /// The stage's name (the sink's is `sink`).
    pub stage: String,
    /// Its fraction of the whole, 0 to 1.
    pub share: f64,
}

impl StageShare {
    pub(crate) fn new(stage: &str, share: f64) -> Self {
        StageShare { stage: stage.to_owned(), share }
    }
}

impl LatencySplit {
    /// `stage`'s fraction of the slowest events' latency (0 for a stage it does not name).
    pub fn stage(&self, stage: &str) -> f64 {
        self.stages.iter().find(|s| s.stage == stage).map_or(0.0, |s| s.share)
    }
}

/// Whether the queue's backlog grew, held or shrank while events were arriving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Trend {
    /// The backlog grew: arrivals outpaced the workers.
    Growing,
    /// The backlog held steady.
    Stable,
    /// The backlog shrank.
    Draining,
}

/// The queue over the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QueueStats {
    /// Its capacity; `submit` blocks when it is full.
    pub capacity: usize,
    /// The deepest it got (exact: measured at every submission).
    pub max_depth: usize,
    /// When it first reached capacity, nanoseconds after the run started.
    pub first_full_at_ns: Option<u64>,
    /// Depth samples: (nanoseconds after the start, depth).
    pub samples: Vec<(u64, usize)>,
    /// The backlog's trend while events were arriving (`None` with too few samples).
    pub trend: Option<Trend>,
    /// The trend's slope, events per second.
    pub trend_per_sec: f64,
}

/// Where one stage's time in a run went, summed over its calls (the run's own clock, with or
/// without a profiling session): wall time, and for async stages the part that held a thread
/// and the part spent woken, waiting for a runtime thread to poll it again.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StageTime {
    /// The stage (or the sink).
    pub name: String,
    /// From each call's start (its first poll) to its end: what events waited for it.
    pub wall_ns: u64,
    /// The time its calls held a thread: all of `wall_ns` for a synchronous stage; for an async
    /// one, the sum of its polls.
    pub busy_ns: u64,
    /// Of the rest (between polls), the time its calls had been woken and waited to be polled
    /// again: runnable, but every runtime thread was busy. The remainder is what they awaited
    /// (I/O, timers, other tasks). 0 for synchronous stages.
    pub ready_ns: u64,
}

impl StageTime {
    /// The time between polls spent awaiting something (not runnable): wall − busy − ready.
    pub fn awaiting_ns(&self) -> u64 {
        self.wall_ns.saturating_sub(self.busy_ns).saturating_sub(self.ready_ns)
    }
}

/// One worker thread's share of the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct WorkerUtilisation {
    /// Its thread name (`worker-0`, ...).
    pub name: String,
    /// Events it processed.
    pub events: u64,
    /// Time it spent processing them.
    pub busy_ns: u64,
    /// `busy_ns` as a fraction of the run's wall time.
    pub utilisation: f64,
    /// Of the time it ran, the part inside the stages.
    pub in_stage_ns: u64,
    /// Of `in_stage_ns`, the time its stages held a thread: all of it for synchronous stages;
    /// for async stages, the sum of their polls (not the time they awaited).
    pub in_stage_busy_ns: u64,
    /// Of the time it ran, the part handing events over: taking them off the queue, the
    /// toolkit's bookkeeping around each event, being descheduled between them. With stages of
    /// a few hundred nanoseconds this is the limit, not the stages.
    pub handoff_ns: u64,
    /// Of the time it ran, the part waiting on an empty queue: capacity to spare.
    pub idle_ns: u64,
    /// The CPU time its thread used, for a synchronous worker whose loop ended (`None` for
    /// async workers, whose tasks share the runtime's threads). Below `in_stage_ns +
    /// handoff_ns` when it was descheduled (more workers than cores).
    pub cpu_ns: Option<u64>,
}

impl WorkerUtilisation {
    /// The CPU its stages used, estimated: their busy time, scaled by the share of the
    /// worker's working (non-idle) wall time its thread was on a core. A worker descheduled
    /// inside a stage would otherwise count that wall time as stage CPU.
    pub fn in_stage_cpu_ns(&self) -> f64 {
        let working_ns = self.in_stage_ns + self.handoff_ns;
        let on_core = match self.cpu_ns {
            Some(cpu_ns) if working_ns > 0 => (cpu_ns as f64 / working_ns as f64).min(1.0),
            _ => 1.0,
        };
        self.in_stage_busy_ns as f64 * on_core
    }
}

/// The workers' time, summed over them, as fractions that add up to 1: the parts of
/// [`WorkerUtilisation`]'s `in_stage_ns`, `handoff_ns` and `idle_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct WorkerTimeSplit {
    /// Inside the stages.
    pub in_stage: f64,
    /// Handing events over (taking them off the queue, bookkeeping, being descheduled).
    pub handoff: f64,
    /// Waiting on an empty queue.
    pub idle: f64,
}

/// The outcome of a concurrent run: counts, latency, queue and workers, and a diagnosis.
///
/// `submitted == completed + filtered + rejected + failed + unfinished` always holds, panics
/// included;
/// `unfinished` is 0 unless [`WorkerPool::join_timeout`](crate::WorkerPool::join_timeout) gave up
/// waiting.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RunSummary {
    /// Events accepted into the queue.
    pub submitted: u64,
    /// Events that made it through every stage (and into the sink, when the run had one).
    pub completed: u64,
    /// Events a filter dropped (a stage's `process` returned `None`): not a failure, not a
    /// rejection.
    pub filtered: u64,
    /// Events a stage rejected.
    pub rejected: u64,
    /// Events a stage failed on, panics included.
    pub failed: u64,
    /// Accepted events still queued or being processed when the summary was taken: only
    /// [`WorkerPool::join_timeout`](crate::WorkerPool::join_timeout) takes one before the end.
    pub unfinished: u64,
    /// Filtered events, rejections and failures per stage, in pipeline order; the sink last.
    pub stages: Vec<StageOutcomes>,
    /// From the first submission to the last event processed.
    pub wall_time_ns: u64,
    /// Events processed per second of wall time.
    pub throughput_per_sec: f64,
    /// Events submitted per second while they were being submitted.
    pub arrival_rate_per_sec: f64,
    /// End-to-end latency: queue wait plus processing.
    pub latency: Latency,
    /// Queue wait alone.
    pub queue_wait: Latency,
    /// What the slowest events' latency was made of.
    pub latency_split: LatencySplit,
    /// Each stage's share of the time in stages over the whole run, in pipeline order: the
    /// shares the report's table gives (from the recorded calls) when a profiler recorded the
    /// run, the run's own timing of each stage otherwise. The diagnosis quotes these.
    pub stage_time_share: Vec<StageShare>,
    /// Each stage's share of the busy time in stages (the time its calls held a thread), in
    /// pipeline order: the same as `stage_time_share` for synchronous stages; for async ones,
    /// what they used of the CPU rather than what they waited for. The diagnosis names the stage
    /// to make cheaper from these.
    pub stage_busy_share: Vec<StageShare>,
    /// Where each stage's time went (wall, busy, woken waiting for a thread), in pipeline
    /// order; the sink last.
    pub stage_times: Vec<StageTime>,
    /// The queue's depth over the run.
    pub queue: QueueStats,
    /// Each worker's load.
    pub workers: Vec<WorkerUtilisation>,
    /// CPU time of the whole process during the run (getrusage: the workers, the producer,
    /// and anything else the process ran meanwhile).
    pub process_cpu_ns: u64,
    /// `process_cpu_ns` over what the machine's cores could give in the run's wall time: near
    /// 1 the machine has no CPU to spare, whatever the workers' own busy time says.
    pub cpu_busy: f64,
    /// The whole machine's CPU use during the run, every process's (Linux: `/proc/stat`): near
    /// 1 no core was idle, even where this process used little of them. `None` where the
    /// system does not say.
    pub machine_cpu_busy: Option<f64>,
    /// The bottleneck, in plain words.
    pub diagnosis: String,
}

impl RunSummary {
    /// The fraction of the process's CPU during the run that went into the stages (the rest is
    /// submitting events, handing them over, waking workers, the toolkit's bookkeeping): their
    /// busy time, so async stages' awaiting counts for nothing, and time a worker was
    /// descheduled inside a stage counts for nothing either ([`WorkerUtilisation::in_stage_cpu_ns`]).
    pub fn stage_share_of_cpu(&self) -> f64 {
        let in_stage: f64 = self.workers.iter().map(WorkerUtilisation::in_stage_cpu_ns).sum();
        (in_stage / self.process_cpu_ns.max(1) as f64).min(1.0)
    }

    /// The workers' time, summed, split three ways.
    pub fn worker_time_split(&self) -> WorkerTimeSplit {
        let sum = |part: fn(&WorkerUtilisation) -> u64| self.workers.iter().map(part).sum::<u64>();
        let (in_stage, handoff, idle) =
            (sum(|w| w.in_stage_ns), sum(|w| w.handoff_ns), sum(|w| w.idle_ns));
        let total = (in_stage + handoff + idle).max(1) as f64;
        WorkerTimeSplit {
            in_stage: in_stage as f64 / total,
            handoff: handoff as f64 / total,
            idle: idle as f64 / total,
        }
    }

    /// Mean utilisation of the workers (busy time over wall time).
    pub fn mean_utilisation(&self) -> f64 {
        if self.workers.is_empty() {
            return 0.0;
        }
        self.workers.iter().map(|w| w.utilisation).sum::<f64>() / self.workers.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(in_stage_ns: u64, handoff_ns: u64, cpu_ns: Option<u64>) -> WorkerUtilisation {
        WorkerUtilisation {
            name: "worker-0".into(),
            events: 1,
            busy_ns: in_stage_ns + handoff_ns,
            utilisation: 1.0,
            in_stage_ns,
            in_stage_busy_ns: in_stage_ns,
            handoff_ns,
            idle_ns: 0,
            cpu_ns,
        }
    }

    #[test]
    fn time_a_worker_was_descheduled_does_not_count_as_stage_cpu() {
        // On a core half of its working time: half of its stages' wall time was CPU.
        assert_eq!(worker(600, 400, Some(500)).in_stage_cpu_ns(), 300.0);
        // Never more than the wall time (its CPU clock ticks a little past the last event).
        assert_eq!(worker(600, 400, Some(1_100)).in_stage_cpu_ns(), 600.0);
        // Without its thread's CPU (async workers), wall time is all there is.
        assert_eq!(worker(600, 400, None).in_stage_cpu_ns(), 600.0);
    }
}
