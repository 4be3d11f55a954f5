//! What a concurrent run measured: per-worker figures gathered without shared locks, merged into
//! a [`RunSummary`] with throughput, latency, its split into queue wait and stages, the queue's
//! depth over time, worker utilisation and a diagnosis in plain words.

use std::sync::{Mutex, PoisonError};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::call_stats;
use crate::durations::histogram;

mod diagnosis;
mod worker;

use worker::{bucket_of, count_message, Composition, BUCKETS};
pub(crate) use worker::{BookedStop, Failure, SlotTimes, WorkerLoad, WorkerTimes};

/// Concurrent runs that finished while a profiling session recorded, with that session's id:
/// how a run reaches the session's report without the worker pool knowing of the profiler.
static FINISHED: Mutex<Vec<(u64, RunSummary)>> = Mutex::new(Vec::new());

/// Hands a finished run (`run_concurrent`, `WorkerPool`) to the profiling session recording
/// now, if one is.
pub(crate) fn finished(summary: &RunSummary) {
    if !crate::mode::is_enabled() {
        return;
    }
    let session = crate::mode::current_session();
    FINISHED.lock().unwrap_or_else(PoisonError::into_inner).push((session, summary.clone()));
}

/// The runs that finished during `session`.
pub(crate) fn finished_in(session: u64) -> Vec<RunSummary> {
    let runs = FINISHED.lock().unwrap_or_else(PoisonError::into_inner);
    runs.iter().filter(|(s, _)| *s == session).map(|(_, run)| run.clone()).collect()
}

/// Forgets the runs of `session` (its report has been taken, or it was dropped).
pub(crate) fn forget_finished(session: u64) {
    FINISHED.lock().unwrap_or_else(PoisonError::into_inner).retain(|(s, _)| *s != session);
}

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
    pub stages: Vec<(String, f64)>,
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
    pub stage_time_share: Vec<(String, f64)>,
    /// Each stage's share of the busy time in stages (the time its calls held a thread), in
    /// pipeline order: the same as `stage_time_share` for synchronous stages; for async ones,
    /// what they used of the CPU rather than what they waited for. The diagnosis names the stage
    /// to make cheaper from these.
    pub stage_busy_share: Vec<(String, f64)>,
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

/// Run-wide figures gathered outside the workers.
pub(crate) struct RunTotals {
    pub process_cpu_ns: u64,
    pub machine_cpu_busy: Option<f64>,
    pub submitted: u64,
    pub wall_time_ns: u64,
    pub feed_time_ns: u64,
    pub queue: QueueStats,
}

impl RunSummary {
    pub(crate) fn merge(
        workers: Vec<WorkerLoad>,
        stage_names: &[String],
        totals: RunTotals,
    ) -> Self {
        let mut latency = histogram();
        let mut wait = histogram();
        let mut composition = vec![Composition::default(); BUCKETS];
        let mut stages: Vec<StageOutcomes> = stage_names
            .iter()
            .map(|name| StageOutcomes { name: name.clone(), ..StageOutcomes::default() })
            .collect();
        let mut completed = 0;
        let wall = totals.wall_time_ns.max(1);
        let mut utilisation = Vec::new();
        for worker in &workers {
            let _ = latency.add(&worker.latency);
            let _ = wait.add(&worker.wait);
            completed += worker.completed;
            for (total, part) in composition.iter_mut().zip(&worker.composition) {
                total.merge(part);
            }
            for (total, part) in stages.iter_mut().zip(&worker.stages) {
                total.filtered += part.filtered;
                total.rejected += part.rejected;
                total.failed += part.failed;
                total.panicked += part.panicked;
                for (message, count) in &part.failure_messages {
                    count_message(total, message.clone(), *count);
                }
                total.other_messages += part.other_messages;
            }
            utilisation.push(WorkerUtilisation {
                name: worker.name.clone(),
                events: worker.events,
                busy_ns: worker.busy_ns,
                utilisation: worker.busy_ns as f64 / wall as f64,
                in_stage_ns: worker.in_stage_ns,
                in_stage_busy_ns: worker.in_stage_busy_ns,
                handoff_ns: worker
                    .running_ns
                    .saturating_sub(worker.in_stage_ns)
                    .saturating_sub(worker.idle_ns),
                idle_ns: worker.idle_ns,
                cpu_ns: worker.thread_cpu_ns,
            });
        }
        let stage_time_share = stage_time_share(&composition, stage_names);
        let mut stage_times: Vec<StageTime> = stage_names
            .iter()
            .map(|name| StageTime { name: name.clone(), ..StageTime::default() })
            .collect();
        for worker in &workers {
            for (sum, part) in stage_times.iter_mut().zip(&worker.stage_times) {
                sum.wall_ns += part.wall_ns;
                sum.busy_ns += part.busy_ns;
                sum.ready_ns += part.ready_ns;
            }
        }
        let stage_busy_ns: Vec<u64> = stage_times.iter().map(|time| time.busy_ns).collect();
        let stage_busy_share = stage_busy_share(&stage_busy_ns, stage_names);
        let processed: u64 = workers.iter().map(|w| w.events).sum();
        let latency_stats = Latency::of(&latency);
        let latency_split = split_at(&composition, latency_stats.p99_ns, stage_names);
        let filtered: u64 = stages.iter().map(|s| s.filtered).sum();
        let rejected: u64 = stages.iter().map(|s| s.rejected).sum();
        let failed: u64 = stages.iter().map(|s| s.failed).sum();
        let mut summary = RunSummary {
            submitted: totals.submitted,
            completed,
            filtered,
            rejected,
            failed,
            unfinished: totals.submitted.saturating_sub(completed + filtered + rejected + failed),
            stages,
            wall_time_ns: totals.wall_time_ns,
            throughput_per_sec: processed as f64 / (wall as f64 / 1e9),
            arrival_rate_per_sec: totals.submitted as f64
                / (totals.feed_time_ns.max(1) as f64 / 1e9),
            latency: latency_stats,
            queue_wait: Latency::of(&wait),
            latency_split,
            stage_time_share,
            stage_busy_share,
            stage_times,
            queue: totals.queue,
            workers: utilisation,
            process_cpu_ns: totals.process_cpu_ns,
            cpu_busy: totals.process_cpu_ns as f64 / (wall as f64 * cores() as f64),
            machine_cpu_busy: totals.machine_cpu_busy,
            diagnosis: String::new(),
        };
        summary.diagnosis = diagnosis::diagnosis(&summary);
        summary
    }

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

/// The CPU cores this process may use.
pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Each stage's share of the time in stages: the report's shares when a session records (so a
/// diagnosis and the table quote the same figure), the run's own per-stage totals otherwise.
fn stage_time_share(composition: &[Composition], stage_names: &[String]) -> Vec<(String, f64)> {
    let recorded = if crate::mode::is_enabled() {
        call_stats::stage_totals(crate::mode::current_session())
    } else {
        Vec::new()
    };
    let all_recorded: u64 = recorded.iter().map(|(_, total)| total).sum();
    let mut run_totals = vec![0u64; stage_names.len()];
    for bucket in composition {
        for (total, ns) in run_totals.iter_mut().zip(&bucket.stage_ns) {
            *total += ns;
        }
    }
    let all_run = run_totals.iter().sum::<u64>().max(1) as f64;
    let recorded_total =
        |name: &String| recorded.iter().find(|(stage, _)| stage == name).map(|(_, total)| *total);
    // The table's figures only when it has every stage of the run (a hand-written stage is not
    // recorded): shares of two different wholes would not add up.
    let from_table = all_recorded > 0 && stage_names.iter().all(|n| recorded_total(n).is_some());
    stage_names
        .iter()
        .zip(&run_totals)
        .map(|(name, run_total)| {
            let share = match recorded_total(name) {
                Some(total) if from_table => total as f64 / all_recorded as f64,
                _ => *run_total as f64 / all_run,
            };
            (name.clone(), share)
        })
        .collect()
}

/// Each stage's share of the stages' busy time: the report's busy figures when a session records
/// every stage of the run (so the diagnosis quotes the table), the run's own otherwise.
fn stage_busy_share(run_busy_ns: &[u64], stage_names: &[String]) -> Vec<(String, f64)> {
    let recorded = if crate::mode::is_enabled() {
        call_stats::stage_busy_totals(crate::mode::current_session())
    } else {
        Vec::new()
    };
    let recorded_total =
        |name: &String| recorded.iter().find(|(stage, _)| stage == name).map(|(_, total)| *total);
    let all_recorded: u64 = recorded.iter().map(|(_, total)| total).sum();
    let from_table = all_recorded > 0 && stage_names.iter().all(|n| recorded_total(n).is_some());
    let all_run = run_busy_ns.iter().sum::<u64>().max(1) as f64;
    stage_names
        .iter()
        .zip(run_busy_ns)
        .map(|(name, run_total)| {
            let share = match recorded_total(name) {
                Some(total) if from_table => total as f64 / all_recorded as f64,
                _ => *run_total as f64 / all_run,
            };
            (name.clone(), share)
        })
        .collect()
}

/// Averages the composition of the events in the buckets at or above `p99_ns`'s bucket.
fn split_at(composition: &[Composition], p99_ns: u64, stage_names: &[String]) -> LatencySplit {
    let mut tail = Composition::default();
    for bucket in &composition[bucket_of(p99_ns)..] {
        tail.merge(bucket);
    }
    let whole = tail.end_to_end_ns.max(1) as f64;
    LatencySplit {
        events: tail.events,
        queue_wait: tail.wait_ns as f64 / whole,
        stages: stage_names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                (name.clone(), tail.stage_ns.get(i).copied().unwrap_or(0) as f64 / whole)
            })
            .collect(),
    }
}

/// Classifies the backlog from depth samples taken while events arrived (least-squares slope).
pub(crate) fn trend(
    samples: &[(u64, usize)],
    feed_end_ns: u64,
    capacity: usize,
) -> (Option<Trend>, f64) {
    let feeding: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(t, _)| *t <= feed_end_ns)
        .map(|(t, d)| (*t as f64 / 1e9, *d as f64))
        .collect();
    if feeding.len() < 4 {
        return (None, 0.0);
    }
    let n = feeding.len() as f64;
    let mean_t = feeding.iter().map(|(t, _)| t).sum::<f64>() / n;
    let mean_d = feeding.iter().map(|(_, d)| d).sum::<f64>() / n;
    let covariance: f64 = feeding.iter().map(|(t, d)| (t - mean_t) * (d - mean_d)).sum();
    let variance: f64 = feeding.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
    if variance == 0.0 {
        return (None, 0.0);
    }
    let slope = covariance / variance;
    let span = feeding.last().map_or(0.0, |(t, _)| *t) - feeding[0].0;
    // The backlog moved by more than 5 % of the queue (and more than one event) over the feed.
    let threshold = (capacity as f64 * 0.05).max(1.0);
    let trend = if slope * span > threshold {
        Trend::Growing
    } else if slope * span < -threshold {
        Trend::Draining
    } else {
        Trend::Stable
    };
    (Some(trend), slope)
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

    #[test]
    fn buckets_are_monotonic_and_bounded() {
        assert!(bucket_of(1_000) < bucket_of(1_200));
        assert_eq!(bucket_of(0), bucket_of(1));
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn a_rising_backlog_is_growing_and_a_flat_one_stable() {
        let rising: Vec<(u64, usize)> = (0..20).map(|i| (i * 10_000_000, i as usize * 5)).collect();
        assert_eq!(trend(&rising, u64::MAX, 100).0, Some(Trend::Growing));
        let flat: Vec<(u64, usize)> = (0..20).map(|i| (i * 10_000_000, 3)).collect();
        assert_eq!(trend(&flat, u64::MAX, 100).0, Some(Trend::Stable));
        assert_eq!(trend(&flat[..2], u64::MAX, 100).0, None);
    }
}
