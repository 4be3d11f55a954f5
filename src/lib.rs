//! # pipeline
//!
//! Make a data pipeline's performance visible. Annotate stages with [`#[stage]`](stage) and hot
//! functions with [`#[profiled]`](profiled); start a [`Profiler`]; run; print the [`Report`].
//!
//! ```
//! use pipeline::{profiled, stage, Pipeline, Profiler, StageError};
//!
//! #[derive(Clone, Debug)]
//! pub struct Order { pub user: String, pub amount: u64 }
//!
//! pub struct FraudStage { pub limit: u64 }
//!
//! #[stage]
//! impl FraudStage {
//!     fn process(&self, order: Order) -> Result<Order, StageError> {
//!         if score(&order) > self.limit {
//!             return Err(StageError::rejected("score over limit"));
//!         }
//!         Ok(order)
//!     }
//! }
//!
//! #[profiled]
//! fn score(order: &Order) -> u64 { order.amount / 10 }
//!
//! let pipeline = Pipeline::new().stage(FraudStage { limit: 90 });
//! let profiler = Profiler::new().start()?;
//! for amount in [100, 2_000] {
//!     let _ = pipeline.run(Order { user: "alice".into(), amount });
//! }
//! let report = profiler.finish()?;
//! println!("{report}");
//! let slowest = report.slowest_stage().expect("one stage ran");
//! assert_eq!(slowest.name, "FraudStage");
//! assert_eq!(slowest.timing.calls, 2);
//! assert_eq!(slowest.hottest_function().unwrap().timing.calls, 2);
//! # Ok::<(), pipeline::Error>(())
//! ```
#![warn(missing_docs)]

pub use pipeline_macros::{profiled, stage};
pub use pipeline_runtime::*;

#[doc(hidden)]
pub use pipeline_runtime::__private;

/// The README's examples run as doctests, so the quick start always compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
