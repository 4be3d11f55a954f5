//! Runtime of the `pipeline` toolkit: stages and pipelines, the recorder that `#[stage]` and
//! `#[profiled]` feed, the profiler that switches it on, and the report it produces.
//!
//! Users normally depend on the `pipeline` facade crate, which re-exports all of this together
//! with the macros.
//!
//! # Module map
//!
//! The runtime is built in layers: a module uses only modules of its own layer and the layers
//! below, so recording (the hot path) knows nothing of how figures are shown, and the pipeline
//! does not know it is measured or benchmarked. `tests/layers.rs` checks every `crate::` path
//! in the sources against this table.
//!
//! | layer | modules | owns |
//! | --- | --- | --- |
//! | 4 read back | `analysis` | summaries, diffs and flame graphs of saved traces and reports |
//! | 3 harness | `bench` | benchmark runs, same-run comparisons, baselines, verdicts |
//! | 2 outputs | `profiler`, `report`, `trace`, `metrics` | the session; figures as table, JSON, pprof; trace writers and the flight recorder; live metrics for Prometheus |
//! | 1 running | `stage`, `pipeline`, `async_pipeline`, `sink`, `queue`, `workers`, `run`, `__private` | `Stage`, `Pipeline`, `AsyncPipeline`, where outputs go, the worker pool, a run's load figures, what the macros' expansions call |
//! | 0 recording | `recorder`, `records`, `sampler`, `alloc`, `clock`, `durations`, `format`, `error`, `incidents` | per-thread statistics and trace records, the CPU sampler, the counting allocator, time, shared figures and their formatting, errors, what the flight recorder's triggers watch |
#![warn(missing_docs)]
// Every `unsafe` block says why it is sound, and an `unsafe fn`'s body is not one big unsafe block:
// each operation that needs the caller's promise is marked and justified on its own.
#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

pub mod alloc;
pub mod analysis;
mod async_pipeline;
pub mod bench;
mod clock;
mod durations;
mod error;
mod format;
mod incidents;
#[cfg(feature = "prometheus")]
pub mod metrics;
mod pipeline;
mod profiler;
mod queue;
mod recorder;
mod records;
pub mod report;
pub mod run;
#[cfg(feature = "cpu-sampling")]
mod sampler;
mod sink;
mod stage;
pub mod trace;
pub mod workers;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

// The crate root holds what the quick start uses; the figures live in their modules
// (`report`, `run`, `alloc`, `trace`, `bench`, `analysis`).
pub use alloc::CountingAllocator;
pub use async_pipeline::AsyncPipeline;
pub use error::Error;
pub use pipeline::{Halt, Pipeline};
pub use profiler::{Profiler, ProfilingSession};
pub use report::Report;
pub use sink::Sink;
pub use stage::{AsyncStage, IntoStageError, Stage, StageError, StageResult, StopKind};
#[cfg(feature = "tokio")]
pub use workers::AsyncWorkerPool;
pub use workers::{WorkerPool, Workers};
