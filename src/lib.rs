// The README is the crate's documentation, so its examples are doctests and always compile.
// With the `off` feature the examples' assertions about recorded figures would not hold, so the
// docs then say what that build is instead.
#![cfg_attr(not(feature = "off"), doc = include_str!("../README.md"))]
#![cfg_attr(
    feature = "off",
    doc = "`pipeline`, built with the `off` feature: every `#[stage]` and `#[profiled]` \
           compiles to the bare code and records nothing."
)]
#![warn(missing_docs)]

pub use pipeline_macros::{profiled, stage};
pub use pipeline_runtime::*;

#[doc(hidden)]
pub use pipeline_runtime::__private;

/// The guides in `docs/`, compiled as doctests so every example they show builds (and the ones
/// not marked `no_run` run). Nothing here is part of the API.
#[cfg(all(doctest, not(feature = "off")))]
mod guides {
    #[doc = include_str!("../docs/pipelines.md")]
    struct Pipelines;
    #[doc = include_str!("../docs/report.md")]
    struct Report;
    #[doc = include_str!("../docs/traces.md")]
    struct Traces;
    #[doc = include_str!("../docs/cpu-samples.md")]
    struct CpuSamples;
    #[doc = include_str!("../docs/metrics.md")]
    struct Metrics;
    #[doc = include_str!("../docs/gate.md")]
    struct Gate;
    #[doc = include_str!("../docs/cli.md")]
    struct Cli;
    #[doc = include_str!("../docs/attributes.md")]
    struct Attributes;
}
