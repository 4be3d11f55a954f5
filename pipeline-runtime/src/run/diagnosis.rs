//! A run in plain words: the diagnosis (saturated workers, or the stage to speed up) and the
//! printed summary.

use std::fmt;

use super::{RunSummary, Trend, WorkerTimeSplit};
use crate::format::{duration_ns, percent};

/// Workers this busy (busy time over wall time) cannot absorb more arrivals.
const SATURATED: f64 = 0.8;

/// The bottleneck in plain words: per-event overhead, a CPU-bound machine, saturated workers
/// with cores to spare, bursts, or one stage to speed up. It knows the machine: more workers are
/// advised only while cores are idle, and the shares it quotes are the report table's.
pub(super) fn diagnosis(run: &RunSummary) -> String {
    let split = &run.latency_split;
    let heaviest = run.stage_time_share.iter().max_by(|a, b| a.share.total_cmp(&b.share));
    let stage_part: f64 = split.stages.iter().map(|s| s.share).sum();
    let (stage, share_of_stages) = match heaviest {
        Some(heaviest) if stage_part > 0.0 => (heaviest.stage.as_str(), heaviest.share),
        _ => return "No events were processed.".to_owned(),
    };
    // The stage to make cheaper: the one that held threads the longest. It is `stage` unless
    // async stages waited between polls (a stage slow because it awaits is no CPU hot spot).
    let (cpu_stage, cpu_share) = run
        .stage_busy_share
        .iter()
        .max_by(|a, b| a.share.total_cmp(&b.share))
        .map_or((stage, share_of_stages), |busiest| (busiest.stage.as_str(), busiest.share));
    let utilisation = run.mean_utilisation();
    let waiting = run.worker_time_split().idle;
    // Busy is "not waiting on an empty queue": time handing events over counts, so per-event
    // overhead does not pass for spare capacity when stages are tiny.
    let saturated = utilisation >= SATURATED || 1.0 - waiting >= SATURATED;
    // The machine's CPU all used: more threads only take turns on the same cores.
    let cpu_bound = run.cpu_busy >= SATURATED;
    let cores = super::merge::cores();
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
             cannot help on this machine{crowded}: speed up {cpu_stage}, which takes {}, or run \
             on more cores.",
            percent(split.queue_wait),
            cpu_part(run, cpu_share),
        );
    }
    if let (true, Some(busy), Some(backlog)) = (split.queue_wait >= 0.5, machine_busy, &backlog) {
        return format!(
            "Queue wait dominates: {} of p99 latency is waiting and {backlog}, and the workers \
             are {} busy, but no core was idle: the machine's CPU was {} used and {machine}; \
             other processes take the rest. More workers cannot help while they do: speed up \
             {cpu_stage}, which takes {}, or give the process its cores.",
            percent(split.queue_wait),
            percent(utilisation),
            percent(busy),
            cpu_part(run, cpu_share),
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
        if let Some(time) = waiting_stage(run, stage) {
            let of_wall = |ns: u64| ns as f64 / time.wall_ns.max(1) as f64;
            let (ready, awaiting) = (of_wall(time.ready_ns), of_wall(time.awaiting_ns()));
            let latency_share = split.stage(stage);
            // Its awaits were done and it waited for a thread: the CPU work is the problem.
            // With no core to spare, a large ready share means the same even where awaiting
            // looks larger, since timers and I/O are processed late on starved threads too.
            let no_core_spare = cpu_bound || machine_busy.is_some();
            if ready > awaiting || (ready >= 0.25 && no_core_spare) {
                return format!(
                    "{stage} takes {} of the time in stages ({} of p99 latency), but for {} of \
                     its time it was ready to run, waiting for a runtime thread (what it awaited \
                     had completed): the runtime's threads were busy, so speed up {cpu_stage}, \
                     which takes {}, or move CPU-heavy work off the runtime's threads \
                     (spawn_blocking, or a thread pool).{cpu_note}",
                    percent(share_of_stages),
                    percent(latency_share),
                    percent(ready),
                    cpu_part(run, cpu_share),
                );
            }
            let ready_note = if ready >= 0.05 {
                format!(
                    " ({} more it was ready to run, waiting for a runtime thread)",
                    percent(ready)
                )
            } else {
                String::new()
            };
            let busiest = if cpu_stage == stage {
                String::new()
            } else {
                format!(" Of the CPU the stages used, {cpu_stage} takes {}.", percent(cpu_share))
            };
            format!(
                "{stage} takes {} of the time in stages ({} of p99 latency), but {} of its time \
                 is awaiting (I/O, timers or other tasks), not using a CPU{ready_note}: its \
                 latency is what it awaits. Make that faster, or await independent calls \
                 concurrently rather than one after another.{busiest}{cpu_note}",
                percent(share_of_stages),
                percent(latency_share),
                percent(awaiting),
            )
        } else if share_of_stages >= 0.5 {
            format!(
                "{stage} dominates: {} of the time in stages ({} of p99 latency); queue wait is \
                 {} of p99 latency, so the queue keeps up. Optimise {stage}.{cpu_note}",
                percent(share_of_stages),
                percent(split.stage(stage)),
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

/// Each worker's utilisation, or for more than eight workers (async worker tasks run dozens)
/// their mean and the least and most busy.
fn workers_busy(workers: &[super::WorkerUtilisation]) -> String {
    if workers.len() <= 8 {
        let each: Vec<String> =
            workers.iter().map(|w| format!("{} {}", w.name, percent(w.utilisation))).collect();
        return each.join(", ");
    }
    let by_use = |a: &&super::WorkerUtilisation, b: &&super::WorkerUtilisation| {
        a.utilisation.total_cmp(&b.utilisation)
    };
    let (least, most) = (workers.iter().min_by(by_use), workers.iter().max_by(by_use));
    let mean = workers.iter().map(|w| w.utilisation).sum::<f64>() / workers.len() as f64;
    match (least, most) {
        (Some(least), Some(most)) => format!(
            "{} workers, {} on average ({} {} to {} {})",
            workers.len(),
            percent(mean),
            least.name,
            percent(least.utilisation),
            most.name,
            percent(most.utilisation),
        ),
        _ => String::new(),
    }
}

/// "N of the time in stages", or, where async stages waited between polls, "N of the stages'
/// busy time (the time they held a thread)".
fn cpu_part(run: &RunSummary, cpu_share: f64) -> String {
    if stages_waited(run) {
        format!("{} of the stages' busy time (the time they held a thread)", percent(cpu_share))
    } else {
        format!("{} of the time in stages", percent(cpu_share))
    }
}

/// Whether async stages spent a noticeable part (over 10 %) of the time in stages awaiting.
fn stages_waited(run: &RunSummary) -> bool {
    let wall: u64 = run.workers.iter().map(|w| w.in_stage_ns).sum();
    let busy: u64 = run.workers.iter().map(|w| w.in_stage_busy_ns).sum();
    (busy as f64) < wall as f64 * 0.9
}

/// `stage`'s times, when it spent at least half of them between polls (an async stage that
/// waits, for I/O or for a thread).
fn waiting_stage<'a>(run: &'a RunSummary, stage: &str) -> Option<&'a super::StageTime> {
    let time = run.stage_times.iter().find(|time| time.name == stage)?;
    (time.wall_ns > 0 && time.busy_ns * 2 <= time.wall_ns).then_some(time)
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
            .map(|s| format!("{} {}", percent(s.share), s.stage))
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
        let waited: Vec<String> = self
            .stage_times
            .iter()
            .filter(|time| time.busy_ns < time.wall_ns / 10 * 9)
            .map(|time| {
                let share = |ns: u64| percent(ns as f64 / time.wall_ns.max(1) as f64);
                format!(
                    "{} {} busy, {} awaiting, {} ready to run waiting for a thread",
                    time.name,
                    share(time.busy_ns),
                    share(time.awaiting_ns()),
                    share(time.ready_ns)
                )
            })
            .collect();
        if !waited.is_empty() {
            writeln!(f, "  async stages' time: {}", waited.join("; "))?;
        }
        let WorkerTimeSplit { in_stage, handoff, idle } = self.worker_time_split();
        writeln!(
            f,
            "  workers busy: {}; their time: {} in stages, {} handing events over, {} waiting for \
             events; the process used {} of the machine's CPU",
            workers_busy(&self.workers),
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
        write!(f, "Diagnosis: {}", self.diagnosis)
    }
}
