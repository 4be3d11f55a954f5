//! Runtime of the `pipeline` toolkit: stages and pipelines, the recorder that `#[stage]` and
//! `#[profiled]` feed, the profiler that switches it on, and the report it produces.
//!
//! Users normally depend on the `pipeline` facade crate, which re-exports all of this together
//! with the macros.
#![warn(missing_docs)]

mod alloc;
pub mod analysis;
pub mod bench;
mod clock;
mod durations;
mod error;
mod load;
mod pipeline;
mod profiler;
mod queue;
mod recorder;
mod records;
mod report;
#[cfg(feature = "cpu-sampling")]
mod sampler;
mod stage;
pub mod trace;
mod workers;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use alloc::{
    flush_thread, heap, installed_allocator, reset_peak, AllocatorKind, CountingAllocator, Heap,
    Stats, ThreadRegion,
};
pub use error::Error;
pub use load::{
    Latency, LatencySplit, QueueStats, RunSummary, StageOutcomes, Trend, WorkerUtilisation,
};
pub use pipeline::{Halt, Pipeline};
pub use profiler::{emit_spans, Profiler, ProfilingSession};
pub use report::cpu;
pub use report::{
    AllocStats, FunctionStats, MemoryStats, MemorySummary, Report, Retention, StageStats, Timing,
};
pub use stage::{Stage, StageError, StopKind};
pub use workers::{TrySubmitError, WorkerPool, Workers};
