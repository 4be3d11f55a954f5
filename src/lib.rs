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
