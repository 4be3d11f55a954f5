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

mod calls;
mod families;
mod http;
mod runs;

use std::fmt;
use std::net::SocketAddr;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::alloc::{self, AllocatorKind};
use crate::error::Error;
use families::{family, gauge, Labels};

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

impl Collector for SessionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let e = &mut encoder;
        calls::encode(e, self.session, self.allocator)?;
        runs::encode_runs(e)?;
        runs::encode_flight(e)?;
        if self.allocator == AllocatorKind::Counting {
            encode_heap(e)?;
        }
        Ok(())
    }
}

/// The program's live and peak heap (with the counting allocator only).
fn encode_heap(e: &mut DescriptorEncoder<'_>) -> fmt::Result {
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
    )
}
