//! Live figures for Prometheus (feature `prometheus`): while a session records, an HTTP endpoint
//! serves every stage's and function's calls, latency histogram and allocations, each running
//! pool's stopped events, queue depth and worker time, and the heap, in Prometheus's text format
//! (encoded by `prometheus-client`, served by a single-threaded server of its own, which bounds
//! connections, request size and time whatever clients do).
//!
//! A scrape reads what the recorder and the pools keep anyway: the recorder's per-thread tables
//! (each locked only while it is copied; a worker takes its own table's lock once per 64 calls,
//! never per call) and the pools' relaxed atomic counters. Nothing is added to the hot path.
//!
//! Metric names (counters end in `_total`):
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `pipeline_stage_calls_total` | counter | `stage` |
//! | `pipeline_stage_duration_seconds` | histogram | `stage` |
//! | `pipeline_stage_allocations_total`, `pipeline_stage_allocated_bytes_total` | counter | `stage` |
//! | `pipeline_function_calls_total` | counter | `stage`, `function` |
//! | `pipeline_function_duration_seconds` | histogram | `stage`, `function` |
//! | `pipeline_function_allocations_total`, `pipeline_function_allocated_bytes_total` | counter | `stage`, `function` |
//! | `pipeline_stage_panicked_total` | counter | `stage` |
//! | `pipeline_stage_filtered_total`, `pipeline_stage_rejected_total`, `pipeline_stage_failed_total` | counter | `run`, `stage` |
//! | `pipeline_events_submitted_total` | counter | `run` |
//! | `pipeline_queue_depth`, `pipeline_queue_capacity` | gauge | `run` |
//! | `pipeline_worker_events_total` | counter | `run`, `worker` |
//! | `pipeline_worker_busy_seconds_total`, `…_in_stage_seconds_total`, `…_idle_seconds_total` | counter | `run`, `worker` |
//! | `pipeline_heap_live_bytes`, `pipeline_heap_peak_bytes` | gauge | |
//! | `pipeline_flight_dumps_total` | counter | `trigger` (`latency-FraudStage`, `queue-full`...) |
//! | `pipeline_flight_last_dump_info` | gauge (1) | `path`, `trigger`: where the last dump went |
//!
//! Counters start from zero with each profiling session (Prometheus's `rate()` reads that as a
//! reset); a pool's series exist while the pool runs.

mod http;

use std::fmt;
use std::net::SocketAddr;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::alloc::{self, AllocatorKind};
use std::collections::HashMap;

use crate::call_stats;
use crate::callsite::{CallsiteId, CallsiteKind, OUTSIDE_STAGES};
use crate::durations::LatencyBuckets;
use crate::error::Error;
use crate::workers::live;

/// Upper bounds of the latency histograms' buckets, in seconds: 1 µs to 10 s, three per decade.
pub const LATENCY_BUCKETS: [f64; 22] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The metrics endpoint of a running session; stops when dropped.
pub(crate) struct MetricsServer {
    server: http::Server,
}

impl fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsServer").field("address", &self.address()).finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Listens on `address` (`host:port`; port 0 picks a free one) and serves `/metrics` for
    /// `session` on a thread of its own.
    pub(crate) fn start(
        address: &str,
        session: u64,
        allocator: AllocatorKind,
    ) -> Result<Self, Error> {
        let failed = |error: std::io::Error| Error::Metrics {
            address: address.to_owned(),
            reason: error.to_string(),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(SessionCollector { session, allocator }));
        let server = http::Server::start(address, "metrics", move |path| answer(&registry, path))
            .map_err(failed)?;
        crate::durations::count_latency_buckets(true);
        Ok(MetricsServer { server })
    }

    /// The address it listens on.
    pub(crate) fn address(&self) -> SocketAddr {
        self.server.address()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        crate::durations::count_latency_buckets(false);
    }
}

/// The answer to a `GET` of `path`.
fn answer(registry: &Registry, path: &str) -> http::Response {
    if path != "/metrics" {
        return http::Response::plain(404, "pipeline: the metrics are at /metrics\n");
    }
    let mut body = String::new();
    match prometheus_client::encoding::prometheus_text::encode(&mut body, registry) {
        Ok(()) => http::Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body,
        },
        Err(_) => http::Response::plain(500, "encoding failed\n"),
    }
}

/// Reads the session's figures at each scrape.
#[derive(Debug)]
struct SessionCollector {
    session: u64,
    allocator: AllocatorKind,
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: its rows of (labels, value).
fn family<V>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: &[(Labels, V)],
    mut write: impl FnMut(MetricEncoder<'_>, &V) -> fmt::Result,
) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        write(metric.encode_family(labels)?, value)?;
    }
    Ok(())
}

fn counter(mut metric: MetricEncoder<'_>, value: &f64) -> fmt::Result {
    metric.encode_counter::<NoLabelSet, f64, f64>(value, None)
}

fn gauge(mut metric: MetricEncoder<'_>, value: &f64) -> fmt::Result {
    metric.encode_gauge(value)
}

fn histogram(mut metric: MetricEncoder<'_>, row: &Aggregate) -> fmt::Result {
    let buckets: Vec<(f64, u64)> =
        LATENCY_BUCKETS.iter().zip(row.buckets.0).map(|(&bound, count)| (bound, count)).collect();
    let sum = row.total_ns as f64 / 1e9;
    metric.encode_histogram::<NoLabelSet>(sum, row.calls, &buckets, None)
}

/// One (enclosing stage, call site)'s figures summed over the threads.
#[derive(Default)]
struct Aggregate {
    calls: u64,
    total_ns: u64,
    panicked: u64,
    buckets: LatencyBuckets,
    allocations: u64,
    bytes_allocated: u64,
}

/// Label sets must be encodable; this checks it at compile time.
const _: fn(&Labels) -> &dyn EncodeLabelSet = |labels| labels;

impl Collector for SessionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut rows: HashMap<(CallsiteId, CallsiteId), Aggregate> = HashMap::new();
        call_stats::visit_rows(self.session, |parent, site, stats| {
            let row = rows.entry((parent, site)).or_default();
            let d = &stats.durations;
            row.calls += d.calls;
            row.total_ns += d.total_ns;
            row.panicked += d.panicked;
            row.buckets.merge(&d.buckets);
            row.allocations += stats.mem_total.allocations;
            row.bytes_allocated += stats.mem_total.bytes_allocated;
        });
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
                    if self.allocator == AllocatorKind::Counting {
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
                    if self.allocator == AllocatorKind::Counting {
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
        let e = &mut encoder;
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
        encode_runs(e)?;
        encode_flight(e)?;
        if self.allocator == AllocatorKind::Counting {
            let heap = alloc::heap();
            let none = Labels::new();
            family(
                e,
                "pipeline_heap_live_bytes",
                "The program's live heap (the profiler's own tables left out).",
                MetricType::Gauge,
                &[(none.clone(), heap.live_bytes as f64)],
                gauge,
            )?;
            family(
                e,
                "pipeline_heap_peak_bytes",
                "The program's peak heap since the session started.",
                MetricType::Gauge,
                &[(none, heap.peak_bytes as f64)],
                gauge,
            )?;
        }
        Ok(())
    }
}

/// The flight recorder's dumps: how many, per trigger, and where the last went.
fn encode_flight(e: &mut DescriptorEncoder<'_>) -> fmt::Result {
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
fn encode_runs(e: &mut DescriptorEncoder<'_>) -> fmt::Result {
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
