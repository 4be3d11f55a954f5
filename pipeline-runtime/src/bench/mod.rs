//! Benchmarks that make performance testable: "it got slower" becomes a failing test, without
//! false alarms on a noisy shared machine.
//!
//! Two ways to decide, in order of trust:
//!
//! - [`Bench::compare`]: the old and the new pipeline timed in the same run, in pairs, in random
//!   order, decided on the median of the per-pair ratios with a bootstrap interval. Whatever
//!   the machine is doing affects both sides of each pair alike. Use it to verify an
//!   optimisation, or to gate a change against the code it replaces.
//! - [`BenchResult::compare`] against a stored [`Baseline`]: each run's times are divided by the
//!   fastest a fixed calibration workload, timed after each sample, ran in that run (so a
//!   slower or faster machine cancels out), batches the scheduler interrupted are retaken, and
//!   a two-thread probe recorded with the baseline tells whether a core is now taken by
//!   something else; if so the answer is [`Verdict::Inconclusive`], never a false alarm.
//!
//! Allocations per event are exact (with the counting allocator), so their gate has no
//! tolerance: one more allocation per event is a regression.

mod baseline;
mod machine;
mod paired;
mod runner;
mod stats;
mod verdict;

pub use baseline::{Baseline, BASELINE_VERSION};
pub use machine::Machine;
pub use paired::SERVE_ENV;
pub use runner::{Bench, BenchResult};
pub use stats::{Change, SampleSummary};
pub use verdict::{assert_no_regression, in_ci, Comparison, Metric, MetricVerdict, Verdict};
