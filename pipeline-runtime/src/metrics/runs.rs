//! The running pools' families (queue, stopped events, workers) and the flight recorder's dumps.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::families::{counter, family, gauge, Labels};
use crate::workers::live;

/// The flight recorder's dumps: how many, per trigger, and where the last went.
pub(super) fn encode_flight(e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let dumps = crate::trace::dumps_written();
    let Some(last) = dumps.last() else { return Ok(()) };
    let mut per_trigger: Vec<(Labels, f64)> = Vec::new();
    for dump in &dumps {
        let labels = vec![("trigger", dump.trigger.slug())];
        match per_trigger.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, n)) => *n += 1.0,
            None => per_trigger.push((labels, 1.0)),
        }
    }
    family(
        e,
        "pipeline_flight_dumps",
        "Flight recorder dumps written, per trigger.",
        MetricType::Counter,
        &per_trigger,
        counter,
    )?;
    let where_ = vec![("path", last.path.display().to_string()), ("trigger", last.trigger.slug())];
    family(
        e,
        "pipeline_flight_last_dump_info",
        "Where the flight recorder's last dump went (always 1).",
        MetricType::Gauge,
        &[(where_, 1.0)],
        gauge,
    )
}

/// The running pools' figures.
pub(super) fn encode_runs(e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let runs = live::running();
    let mut submitted = Vec::new();
    let mut depth = Vec::new();
    let mut capacity = Vec::new();
    let mut filtered = Vec::new();
    let mut rejected = Vec::new();
    let mut failed = Vec::new();
    let mut events = Vec::new();
    let mut busy = Vec::new();
    let mut in_stage = Vec::new();
    let mut idle = Vec::new();
    for run in &runs {
        let id = run.id.to_string();
        let labels = vec![("run", id.clone())];
        submitted.push((labels.clone(), run.submitted as f64));
        depth.push((labels.clone(), run.depth as f64));
        capacity.push((labels, run.capacity as f64));
        for stage in &run.stages {
            let labels = vec![("run", id.clone()), ("stage", stage.name.clone())];
            filtered.push((labels.clone(), stage.filtered as f64));
            rejected.push((labels.clone(), stage.rejected as f64));
            failed.push((labels, stage.failed as f64));
        }
        for worker in &run.workers {
            let labels = vec![("run", id.clone()), ("worker", worker.name.clone())];
            events.push((labels.clone(), worker.events as f64));
            busy.push((labels.clone(), worker.busy_ns as f64 / 1e9));
            in_stage.push((labels.clone(), worker.in_stage_ns as f64 / 1e9));
            idle.push((labels, worker.idle_ns as f64 / 1e9));
        }
    }
    family(
        e,
        "pipeline_events_submitted",
        "Events accepted into each running pool's queue.",
        MetricType::Counter,
        &submitted,
        counter,
    )?;
    family(
        e,
        "pipeline_queue_depth",
        "Events waiting in each running pool's queue.",
        MetricType::Gauge,
        &depth,
        gauge,
    )?;
    family(
        e,
        "pipeline_queue_capacity",
        "Each running pool's queue capacity.",
        MetricType::Gauge,
        &capacity,
        gauge,
    )?;
    family(
        e,
        "pipeline_stage_filtered",
        "Events each stage dropped as a filter (neither rejected nor failed), per running pool.",
        MetricType::Counter,
        &filtered,
        counter,
    )?;
    family(
        e,
        "pipeline_stage_rejected",
        "Events each stage rejected, per running pool.",
        MetricType::Counter,
        &rejected,
        counter,
    )?;
    family(
        e,
        "pipeline_stage_failed",
        "Events each stage failed (panics included), per running pool.",
        MetricType::Counter,
        &failed,
        counter,
    )?;
    family(
        e,
        "pipeline_worker_events",
        "Events each worker processed.",
        MetricType::Counter,
        &events,
        counter,
    )?;
    family(
        e,
        "pipeline_worker_busy_seconds",
        "Time each worker spent processing events.",
        MetricType::Counter,
        &busy,
        counter,
    )?;
    family(
        e,
        "pipeline_worker_in_stage_seconds",
        "Time each worker spent inside the stages.",
        MetricType::Counter,
        &in_stage,
        counter,
    )?;
    family(
        e,
        "pipeline_worker_idle_seconds",
        "Time each worker waited on an empty queue.",
        MetricType::Counter,
        &idle,
        counter,
    )
}
