//! A run in plain words: the verdict (saturated workers, or the stage to speed up) and the
//! printed summary.

use std::fmt;

use super::{RunSummary, Trend};
use crate::format::{duration_ns, percent};

/// Workers this busy (busy time over wall time) cannot absorb more arrivals.
const SATURATED: f64 = 0.8;

/// The bottleneck in plain words: per-event overhead, a CPU-bound machine, saturated workers
/// with cores to spare, bursts, or one stage to speed up. It knows the machine: more workers are
/// advised only while cores are idle, and the shares it quotes are the report table's.
pub(super) fn verdict(run: &RunSummary) -> String {
    let split = &run.latency_split;
    let heaviest = run.stage_time_share.iter().max_by(|a, b| a.1.total_cmp(&b.1));
    let stage_part: f64 = split.stages.iter().map(|(_, share)| share).sum();
    let (stage, share_of_stages) = match heaviest {
        Some((name, share)) if stage_part > 0.0 => (name.as_str(), *share),
        _ => return "No events were processed.".to_owned(),
    };
    let utilisation = run.mean_utilisation();
    let (_, _, waiting) = run.worker_time_split();
    // Busy is "not waiting on an empty queue": time handing events over counts, so per-event
    // overhead does not pass for spare capacity when stages are tiny.
    let saturated = utilisation >= SATURATED || 1.0 - waiting >= SATURATED;
    // The machine's CPU all used: more threads only take turns on the same cores.
    let cpu_bound = run.cpu_busy >= SATURATED;
    let cores = super::cores();
    let machine = format!(
        "the process used {} of {cores} core{}",
        percent(run.cpu_busy),
        if cores == 1 { "" } else { "s" }
    );
    // Idle cores: neither this process nor another uses them all.
    let machine_busy = run.machine_cpu_busy.filter(|busy| *busy >= SATURATED);
    // Work piles up: the queue filled, its backlog grew, or arrivals outran the workers. A
    // busy CPU with a queue that keeps up is no capacity problem (a trace writer's thread can
    // make normal traffic use most of the CPU).
    let backlog = if run.queue.first_full_at_ns.is_some() {
        Some(format!("the queue filled up ({} events)", run.queue.capacity))
    } else if run.queue.trend == Some(Trend::Growing)
        || run.arrival_rate_per_sec > run.throughput_per_sec * 1.05
    {
        Some(format!(
            "arrivals ({:.0}/s) exceed what it processes ({:.0}/s)",
            run.arrival_rate_per_sec, run.throughput_per_sec
        ))
    } else {
        None
    };
    let stage_cpu = run.stage_share_of_cpu();
    if split.queue_wait >= 0.5 && stage_cpu < 0.5 {
        // Tiny stages: what limits the run is the work around each event (submitting it,
        // handing it to a worker, waking workers, bookkeeping), whether workers wait for it or
        // the machine's CPU is all used.
        let state = if saturated || cpu_bound {
            format!("the run is saturated ({machine})")
        } else {
            format!(
                "the workers spend {} of their time waiting to be handed an event",
                percent(waiting)
            )
        };
        return format!(
            "Queue wait dominates: {} of p99 latency is waiting, and {state}, but only {} of \
             the process's CPU went into the stages: per-event overhead is the limit \
             (submitting each event, handing it to a worker, waking workers, bookkeeping), not \
             a stage, at {:.0} events/s on {} workers. Give each event more work (batch small \
             events), or run stages this cheap without a queue.",
            percent(split.queue_wait),
            percent(stage_cpu),
            run.throughput_per_sec,
            run.workers.len(),
        );
    }
    if let (true, true, Some(backlog)) = (split.queue_wait >= 0.5, cpu_bound, &backlog) {
        let workers = run.workers.len();
        let crowded = if workers > cores {
            format!(" ({workers} workers already take turns on {cores} cores)")
        } else {
            String::new()
        };
        return format!(
            "CPU-bound: {machine}, queue wait is {} of p99 latency and {backlog}. More workers \
             cannot help on this machine{crowded}: speed up {stage}, which takes {} of the time \
             in stages, or run on more cores.",
            percent(split.queue_wait),
            percent(share_of_stages),
        );
    }
    if let (true, Some(busy), Some(backlog)) = (split.queue_wait >= 0.5, machine_busy, &backlog) {
        return format!(
            "Queue wait dominates: {} of p99 latency is waiting and {backlog}, and the workers \
             are {} busy, but no core was idle: the machine's CPU was {} used and {machine}; \
             other processes take the rest. More workers cannot help while they do: speed up \
             {stage}, which takes {} of the time in stages, or give the process its cores.",
            percent(split.queue_wait),
            percent(utilisation),
            percent(busy),
            percent(share_of_stages),
        );
    }
    if split.queue_wait >= 0.5 && !saturated {
        return format!(
            "Queue wait is {} of p99 latency, but the workers are only {} busy and {machine}: \
             events arrive in bursts (or workers were descheduled) and the queue absorbs them; \
             capacity is not the problem. In stages, {stage} takes {} of the time.",
            percent(split.queue_wait),
            percent(utilisation),
            percent(share_of_stages),
        );
    }
    if split.queue_wait >= 0.5 {
        format!(
            "Queue wait dominates: {} of p99 latency is waiting, and the workers are {} busy, so \
             they are saturated while cores are idle ({machine}): arrivals ({:.0}/s) exceed what \
             {} workers can process ({:.0}/s). Add workers, or speed up {stage}, which takes {} \
             of the time in stages.",
            percent(split.queue_wait),
            percent(utilisation),
            run.arrival_rate_per_sec,
            run.workers.len(),
            run.throughput_per_sec,
            percent(share_of_stages),
        )
    } else {
        // The cores all used: say so, since more workers would only take turns on them.
        let cpu_note = match (cpu_bound, machine_busy) {
            (true, _) => format!(" CPU-bound: {machine}, so more workers would not help."),
            (false, Some(busy)) => format!(
                " The machine has no idle core (its CPU {} used, {machine}), so more workers \
                 would not help.",
                percent(busy)
            ),
            (false, None) => String::new(),
        };
        if share_of_stages >= 0.5 {
            format!(
                "{stage} dominates: {} of the time in stages ({} of p99 latency); queue wait is \
                 {} of p99 latency, so the queue keeps up. Optimise {stage}.{cpu_note}",
                percent(share_of_stages),
                percent(split.stages.iter().find(|(n, _)| n == stage).map_or(0.0, |s| s.1)),
                percent(split.queue_wait),
            )
        } else {
            format!(
                "No single bottleneck: queue wait is {} of p99 latency and the largest stage, \
                 {stage}, takes {} of the time in stages.{cpu_note}",
                percent(split.queue_wait),
                percent(share_of_stages),
            )
        }
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Filtered events are their own count, shown where a filter dropped any.
        let filtered = match self.filtered {
            0 => String::new(),
            n => format!(" {n} filtered,"),
        };
        writeln!(
            f,
            "Load: {} events submitted, {} completed,{filtered} {} rejected, {} failed, in {}",
            self.submitted,
            self.completed,
            self.rejected,
            self.failed,
            duration_ns(self.wall_time_ns)
        )?;
        if self.unfinished > 0 {
            writeln!(
                f,
                "  {} accepted events were still queued or in a stage when the pool stopped \
                 waiting (join_timeout)",
                self.unfinished
            )?;
        }
        writeln!(
            f,
            "  arrivals {:.0}/s, throughput {:.0}/s; end-to-end latency p50 {}, p99 {}, max {}",
            self.arrival_rate_per_sec,
            self.throughput_per_sec,
            duration_ns(self.latency.p50_ns),
            duration_ns(self.latency.p99_ns),
            duration_ns(self.latency.max_ns)
        )?;
        let stages: Vec<String> = self
            .latency_split
            .stages
            .iter()
            .map(|(name, share)| format!("{} {name}", percent(*share)))
            .collect();
        writeln!(
            f,
            "  of p99 latency: {} queue wait, {}",
            percent(self.latency_split.queue_wait),
            stages.join(", ")
        )?;
        let trend = match self.queue.trend {
            Some(Trend::Growing) => format!("growing ({:+.0} events/s)", self.queue.trend_per_sec),
            Some(Trend::Draining) => {
                format!("draining ({:+.0} events/s)", self.queue.trend_per_sec)
            }
            Some(Trend::Stable) => "stable".to_owned(),
            None => "too short to tell".to_owned(),
        };
        writeln!(
            f,
            "  queue: max depth {} of {}, backlog {trend}; queue wait p50 {}, p99 {}",
            self.queue.max_depth,
            self.queue.capacity,
            duration_ns(self.queue_wait.p50_ns),
            duration_ns(self.queue_wait.p99_ns)
        )?;
        let workers: Vec<String> =
            self.workers.iter().map(|w| format!("{} {}", w.name, percent(w.utilisation))).collect();
        let (in_stage, handoff, idle) = self.worker_time_split();
        writeln!(
            f,
            "  workers busy: {}; their time: {} in stages, {} handing events over, {} waiting for \
             events; the process used {} of the machine's CPU",
            workers.join(", "),
            percent(in_stage),
            percent(handoff),
            percent(idle),
            percent(self.cpu_busy)
        )?;
        for stage in self.stages.iter().filter(|s| s.filtered + s.rejected + s.failed > 0) {
            write!(f, "  {}:", stage.name)?;
            if stage.filtered > 0 {
                write!(f, " {} filtered", stage.filtered)?;
                if stage.rejected + stage.failed > 0 {
                    write!(f, ",")?;
                }
            }
            if stage.rejected + stage.failed > 0 {
                write!(f, " {} rejected, {} failed", stage.rejected, stage.failed)?;
            }
            if stage.panicked > 0 {
                write!(f, " ({} panicked)", stage.panicked)?;
            }
            if let Some((message, count)) = stage.failure_messages.first() {
                // The table shows a line, not a whole message (the JSON has up to 1 KiB).
                let shown: String = message.chars().take(120).collect();
                let cut = if shown.len() < message.len() { "…" } else { "" };
                write!(f, "; e.g. \"{shown}{cut}\" ×{count}")?;
            }
            if stage.other_messages > 0 {
                write!(f, "; {} with other messages", stage.other_messages)?;
            }
            writeln!(f)?;
        }
        write!(f, "Verdict: {}", self.verdict)
    }
}
