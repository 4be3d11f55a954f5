//! The stages' and profiled functions' families: calls, latency histograms, panics and
//! allocations, summed over the threads' tables at each scrape.

use std::collections::HashMap;
use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::families::{counter, family, histogram, Labels};
use crate::alloc::AllocatorKind;
use crate::call_stats;
use crate::callsite::{CallsiteId, CallsiteKind, OUTSIDE_STAGES};
use crate::durations::LatencyBuckets;

/// One (enclosing stage, call site)'s figures summed over the threads.
#[derive(Default)]
pub(super) struct Aggregate {
    pub(super) calls: u64,
    pub(super) total_ns: u64,
    panicked: u64,
    pub(super) buckets: LatencyBuckets,
    allocations: u64,
    bytes_allocated: u64,
}

/// Every (enclosing stage, call site) row of `session`, summed over the threads.
fn gather(session: u64) -> HashMap<(CallsiteId, CallsiteId), Aggregate> {
    let mut rows: HashMap<(CallsiteId, CallsiteId), Aggregate> = HashMap::new();
    call_stats::visit_rows(session, |parent, site, stats| {
        let row = rows.entry((parent, site)).or_default();
        let d = &stats.durations;
        row.calls += d.calls;
        row.total_ns += d.total_ns;
        row.panicked += d.panicked;
        row.buckets.merge(&d.buckets);
        row.allocations += stats.mem_total.allocations;
        row.bytes_allocated += stats.mem_total.bytes_allocated;
    });
    rows
}

/// The stage and function families of `session`; allocations only with the counting allocator.
pub(super) fn encode(
    e: &mut DescriptorEncoder<'_>,
    session: u64,
    allocator: AllocatorKind,
) -> fmt::Result {
    let rows = gather(session);
    let mut stage_rows: Vec<(Labels, &Aggregate)> = Vec::new();
    let mut function_rows: Vec<(Labels, &Aggregate)> = Vec::new();
    let mut stage_memory: Vec<(Labels, (f64, f64))> = Vec::new();
    let mut function_memory: Vec<(Labels, (f64, f64))> = Vec::new();
    let mut sorted: Vec<(&(CallsiteId, CallsiteId), &Aggregate)> = rows.iter().collect();
    sorted.sort_by_key(|(key, _)| **key);
    for (&(parent, callsite), row) in sorted {
        let site = crate::callsite::lookup(callsite);
        let memory = (row.allocations as f64, row.bytes_allocated as f64);
        match site.kind() {
            CallsiteKind::Stage => {
                let labels = vec![("stage", site.name().to_owned())];
                if allocator == AllocatorKind::Counting {
                    stage_memory.push((labels.clone(), memory));
                }
                stage_rows.push((labels, row));
            }
            CallsiteKind::Function => {
                let stage = match parent {
                    0 => OUTSIDE_STAGES.to_owned(),
                    id => crate::callsite::lookup(id).name().to_owned(),
                };
                let labels = vec![("stage", stage), ("function", site.name().to_owned())];
                if allocator == AllocatorKind::Counting {
                    function_memory.push((labels.clone(), memory));
                }
                function_rows.push((labels, row));
            }
        }
    }
    let calls = |rows: &[(Labels, &Aggregate)]| -> Vec<(Labels, f64)> {
        rows.iter().map(|(labels, row)| (labels.clone(), row.calls as f64)).collect()
    };
    let panicked: Vec<(Labels, f64)> =
        stage_rows.iter().map(|(labels, row)| (labels.clone(), row.panicked as f64)).collect();
    family(
        e,
        "pipeline_stage_calls",
        "Calls of each stage.",
        MetricType::Counter,
        &calls(&stage_rows),
        counter,
    )?;
    family(
        e,
        "pipeline_stage_duration_seconds",
        "Time per call of each stage.",
        MetricType::Histogram,
        &stage_rows,
        |m, d| histogram(m, d),
    )?;
    family(
        e,
        "pipeline_stage_panicked",
        "Stage calls a panic ended.",
        MetricType::Counter,
        &panicked,
        counter,
    )?;
    let allocations: Vec<(Labels, f64)> =
        stage_memory.iter().map(|(labels, (n, _))| (labels.clone(), *n)).collect();
    let bytes: Vec<(Labels, f64)> =
        stage_memory.iter().map(|(labels, (_, b))| (labels.clone(), *b)).collect();
    family(
        e,
        "pipeline_stage_allocations",
        "Allocations inside each stage's calls (nested calls included).",
        MetricType::Counter,
        &allocations,
        counter,
    )?;
    family(
        e,
        "pipeline_stage_allocated_bytes",
        "Bytes allocated inside each stage's calls (nested calls included).",
        MetricType::Counter,
        &bytes,
        counter,
    )?;
    let allocations: Vec<(Labels, f64)> =
        function_memory.iter().map(|(labels, (n, _))| (labels.clone(), *n)).collect();
    let bytes: Vec<(Labels, f64)> =
        function_memory.iter().map(|(labels, (_, b))| (labels.clone(), *b)).collect();
    family(
        e,
        "pipeline_function_allocations",
        "Allocations inside each profiled function's calls, per enclosing stage.",
        MetricType::Counter,
        &allocations,
        counter,
    )?;
    family(
        e,
        "pipeline_function_allocated_bytes",
        "Bytes allocated inside each profiled function's calls, per enclosing stage.",
        MetricType::Counter,
        &bytes,
        counter,
    )?;
    family(
        e,
        "pipeline_function_calls",
        "Calls of each profiled function, per enclosing stage.",
        MetricType::Counter,
        &calls(&function_rows),
        counter,
    )?;
    family(
        e,
        "pipeline_function_duration_seconds",
        "Time per call of each profiled function, per enclosing stage.",
        MetricType::Histogram,
        &function_rows,
        |m, d| histogram(m, d),
    )?;
    Ok(())
}
