//! Runtime of the `pipeline` toolkit: stages and pipelines, the recorder that `#[stage]` and
//! `#[profiled]` feed, the profiler that switches it on, and the report it produces.
//!
//! Users normally depend on the `pipeline` facade crate, which re-exports all of this together
//! with the macros.
#![warn(missing_docs)]

mod clock;
mod error;
mod pipeline;
mod profiler;
mod recorder;
mod report;
mod stage;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use error::Error;
pub use pipeline::{Halt, Pipeline};
pub use profiler::{Profiler, ProfilingSession};
pub use report::{FunctionStats, Report, StageStats, Timing};
pub use stage::{Stage, StageError, StopKind};
