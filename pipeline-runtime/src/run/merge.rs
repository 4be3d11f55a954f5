//! Merging a run: the workers' loads and the run-wide figures summed into a [`RunSummary`],
//! with each stage's share of the time, the latency split at p99 and the backlog's trend.

use super::diagnosis;
use super::worker::{bucket_of, count_message, Composition, WorkerLoad, BUCKETS};
use super::{
    Latency, LatencySplit, QueueStats, RunSummary, StageOutcomes, StageShare, StageTime, Trend,
    WorkerUtilisation,
};
use crate::call_stats;
use crate::durations::histogram;

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
}

/// The CPU cores this process may use.
pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Each stage's share of the time in stages: the report's shares when a session records (so a
/// diagnosis and the table quote the same figure), the run's own per-stage totals otherwise.
fn stage_time_share(composition: &[Composition], stage_names: &[String]) -> Vec<StageShare> {
    let mut run_totals = vec![0u64; stage_names.len()];
    for bucket in composition {
        for (total, ns) in run_totals.iter_mut().zip(&bucket.stage_ns) {
            *total += ns;
        }
    }
    shares(call_stats::stage_totals, &run_totals, stage_names)
}

/// Each stage's share of the stages' busy time: the report's busy figures when a session records
/// every stage of the run (so the diagnosis quotes the table), the run's own otherwise.
fn stage_busy_share(run_busy_ns: &[u64], stage_names: &[String]) -> Vec<StageShare> {
    shares(call_stats::stage_busy_totals, run_busy_ns, stage_names)
}

/// Each stage's share of a whole: of the recording session's totals (`recorded`) when they
/// cover every stage of the run, of the run's own (`run_totals`, in `stage_names`' order)
/// otherwise. Never a mix: shares of two different wholes would not add up (a hand-written
/// stage is not recorded).
fn shares(
    recorded: fn(u64) -> Vec<(&'static str, u64)>,
    run_totals: &[u64],
    stage_names: &[String],
) -> Vec<StageShare> {
    let recorded = if crate::mode::is_enabled() {
        recorded(crate::mode::current_session())
    } else {
        Vec::new()
    };
    let recorded_total =
        |name: &String| recorded.iter().find(|(stage, _)| stage == name).map(|(_, total)| *total);
    let all_recorded: u64 = recorded.iter().map(|(_, total)| total).sum();
    let from_table = all_recorded > 0 && stage_names.iter().all(|n| recorded_total(n).is_some());
    let all_run = run_totals.iter().sum::<u64>().max(1) as f64;
    stage_names
        .iter()
        .zip(run_totals)
        .map(|(name, run_total)| {
            let share = match recorded_total(name) {
                Some(total) if from_table => total as f64 / all_recorded as f64,
                _ => *run_total as f64 / all_run,
            };
            StageShare::new(name, share)
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
                StageShare::new(name, tail.stage_ns.get(i).copied().unwrap_or(0) as f64 / whole)
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
