//! Runtime of the `pipeline` toolkit: stages and pipelines, the recorder that `#[stage]` and
//! `#[profiled]` feed, the profiler that switches it on, and the report it produces.
//!
//! Users normally depend on the `pipeline` facade crate, which re-exports all of this together
//! with the macros.
//!
//! # Module map
//!
//! The runtime is built in layers: a module uses only modules of a lower layer, or of its own
//! layer listed before it in the table, so there is no cycle between modules; recording (the
//! hot path) knows nothing of how figures are shown, and the pipeline does not know it is
//! measured or benchmarked. `tests/layers.rs` checks every path that leaves a module (`crate::`
//! paths, root re-exports, `super::` climbing out) against this table. ARCHITECTURE.md at the
//! repository's root is the map of the whole project.
//!
//! | layer | modules, in order | owns |
//! | --- | --- | --- |
//! | 0 recording | `clock`, `error`, `durations`, `format`, `alloc`, `mode`, `callsite`, `sampler`, `trace_records`, `call_stats`, `incidents` | time, errors, shared figures and their formatting, the counting allocator, the switches every call reads, call sites, the CPU sampler, per-thread trace records, per-thread statistics, what the flight recorder's triggers watch |
//! | 1 running | `stage`, `sink`, `__private`, `pipeline`, `async_pipeline`, `queue`, `run`, `workers` | `Stage`, where outputs go, what the macros' expansions call, `Pipeline`, `AsyncPipeline`, the workers' queue, a run's load figures, the worker pools |
//! | 2 outputs | `flame`, `trace`, `report`, `metrics`, `profiler` | SVG flame graphs; trace writers and the flight recorder; figures as table, JSON, pprof; live metrics for Prometheus; the session |
//! | 3 harness | `bench` | benchmark runs, same-run comparisons, baselines, verdicts |
//! | 4 read back | `analysis` | summaries, diffs and flame graphs of saved traces and reports |
#![warn(missing_docs)]
// Every `unsafe` block says why it is sound, and an `unsafe fn`'s body is not one big unsafe block:
// each operation that needs the caller's promise is marked and justified on its own.
#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

pub mod alloc;
pub mod analysis;
mod async_pipeline;
pub mod bench;
mod call_stats;
mod callsite;
mod clock;
mod durations;
mod error;
mod flame;
mod format;
mod incidents;
#[cfg(feature = "prometheus")]
pub mod metrics;
mod mode;
mod pipeline;
mod profiler;
mod queue;
pub mod report;
pub mod run;
#[cfg(feature = "cpu-sampling")]
mod sampler;
mod sink;
mod stage;
pub mod trace;
mod trace_records;
pub mod workers;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

// The crate root holds what the quick start uses; the figures live in their modules
// (`report`, `run`, `alloc`, `trace`, `bench`, `analysis`).
pub use alloc::CountingAllocator;
pub use async_pipeline::AsyncPipeline;
pub use error::Error;
pub use pipeline::{Pipeline, Stop};
pub use profiler::{Profiler, ProfilingSession};
pub use report::Report;
pub use sink::Sink;
pub use stage::{AsyncStage, IntoStageError, Stage, StageError, StageResult, StopKind};
#[cfg(feature = "tokio")]
pub use workers::AsyncWorkerPool;
pub use workers::{WorkerConfig, WorkerPool};
