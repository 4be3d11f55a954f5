//! How two measurements compare: a [`Verdict`] per metric (time per event, allocations per
//! event), decided against a tolerance and the measurement's own noise.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::stats::Change;

/// How a metric moved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// Better by more than the tolerance, and significantly so.
    Improved,
    /// Within the tolerance, or not significantly different.
    Unchanged,
    /// Worse by more than the tolerance, and significantly so.
    Regressed,
    /// The measurement cannot decide; the reason says why and what to do.
    Inconclusive(String),
}

/// What a comparison measures: the key of each [`MetricVerdict`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Metric {
    /// Wall time per event, nanoseconds.
    #[serde(rename = "time per event")]
    TimePerEvent,
    /// Allocations per event (exact, with the counting allocator installed).
    #[serde(rename = "allocations per event")]
    AllocationsPerEvent,
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::TimePerEvent => "time per event",
            Metric::AllocationsPerEvent => "allocations per event",
        })
    }
}

/// One metric's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricVerdict {
    /// What was measured.
    pub metric: Metric,
    /// Before (baseline or old pipeline).
    pub before: f64,
    /// After (now or new pipeline).
    pub after: f64,
    /// The estimated relative change with its 95 % interval, where statistics apply.
    pub change: Option<Change>,
    /// The decision.
    pub verdict: Verdict,
}

/// The outcome of a comparison: a verdict per metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Comparison {
    /// The benchmark's name.
    pub name: String,
    /// The relative change a time regression must exceed.
    pub tolerance: f64,
    /// One verdict per metric.
    pub metrics: Vec<MetricVerdict>,
    /// How the figures were taken, when a reader needs it to read the table (calibration,
    /// attempts).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Whether [`assert_no_regression`] lets an inconclusive comparison pass in CI
    /// ([`Bench::allow_inconclusive`](super::Bench::allow_inconclusive)).
    #[serde(default)]
    pub allow_inconclusive: bool,
}

impl Comparison {
    /// Whether any metric regressed.
    pub fn regressed(&self) -> bool {
        self.metrics.iter().any(|m| m.verdict == Verdict::Regressed)
    }

    /// Whether any metric could not be decided.
    pub fn inconclusive(&self) -> bool {
        self.metrics.iter().any(|m| matches!(m.verdict, Verdict::Inconclusive(_)))
    }

    /// The comparison as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("comparisons serialise")
    }

    /// The verdict on `metric`.
    pub fn verdict(&self, metric: Metric) -> Option<&Verdict> {
        self.metrics.iter().find(|m| m.metric == metric).map(|m| &m.verdict)
    }
}

/// Panics, printing the comparison as a table, if any metric regressed. For `#[test]`s and CI.
///
/// A comparison that could not judge is never silent. In CI (the `CI` environment variable set,
/// as every CI service sets it) it fails, saying why and what to do, unless the benchmark opted
/// in with [`Bench::allow_inconclusive`](super::Bench::allow_inconclusive); elsewhere it prints
/// the same message and passes. [`Comparison::gate`] is the same decision without the panic.
pub fn assert_no_regression(comparison: &Comparison) {
    if let Err(failure) = comparison.gate(in_ci()) {
        panic!("{failure}");
    }
}

impl Comparison {
    /// The gate's decision: `Err` with the message to fail with when a metric regressed, or
    /// when the comparison could not judge and runs `in_ci` without
    /// [`allow_inconclusive`](super::Bench::allow_inconclusive). Outside CI a comparison that
    /// could not judge passes, and says so on stderr.
    ///
    /// # Errors
    ///
    /// The failure's message: the comparison's table, and for "could not judge" what to do.
    pub fn gate(&self, in_ci: bool) -> Result<(), String> {
        if self.regressed() {
            return Err(format!("performance regression\n{self}"));
        }
        if !self.inconclusive() {
            return Ok(());
        }
        let advice = "Both sides timed in one run cannot be told apart by a busy machine: gate \
                      with `Bench::compare` (old and new pipelines in one process) or \
                      `pipeline-prof paired OLD NEW` (two builds of one benchmark, interleaved). \
                      Or rerun on a quiet machine, or let this pass with \
                      `Bench::allow_inconclusive(true)`.";
        if self.allow_inconclusive {
            eprintln!("performance comparison could not judge (allowed by the benchmark)\n{self}");
            Ok(())
        } else if in_ci {
            Err(format!(
                "performance comparison could not judge, and in CI that fails\n{self}{advice}"
            ))
        } else {
            eprintln!(
                "\n*** performance comparison could NOT judge (passing outside CI; in CI this \
                 fails) ***\n{self}{advice}\n"
            );
            Ok(())
        }
    }
}

/// Whether this runs in CI, as [`assert_no_regression`] decides it: the `CI` environment
/// variable is set to anything but empty, `0` or `false`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"))
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "benchmark `{}` (tolerance {:.0} %)", self.name, self.tolerance * 100.0)?;
        writeln!(
            f,
            "  {:<24}{:>14}{:>14}{:>26}  verdict",
            "metric", "before", "after", "change (95 % interval)"
        )?;
        for m in &self.metrics {
            let change = m.change.map_or_else(
                || "-".to_owned(),
                |c| {
                    format!(
                        "{:+.1} % [{:+.1}, {:+.1}]",
                        c.estimate * 100.0,
                        c.low * 100.0,
                        c.high * 100.0
                    )
                },
            );
            let verdict = match &m.verdict {
                Verdict::Improved => "improved".to_owned(),
                Verdict::Unchanged => "unchanged".to_owned(),
                Verdict::Regressed => "REGRESSED".to_owned(),
                Verdict::Inconclusive(why) => format!("inconclusive: {why}"),
            };
            // Allocation counts need their digits: 5.8265 against 5.8270 decides a verdict.
            let digits = if m.metric == Metric::AllocationsPerEvent { 4 } else { 1 };
            writeln!(
                f,
                "  {:<24}{:>14.digits$}{:>14.digits$}{change:>26}  {verdict}",
                m.metric, m.before, m.after
            )?;
        }
        for note in &self.notes {
            writeln!(f, "  ({note})")?;
        }
        Ok(())
    }
}

/// Decides a time metric from its change: both beyond the tolerance and significant.
pub(super) fn time_verdict(change: Change, tolerance: f64) -> Verdict {
    if change.estimate > tolerance && change.low > 0.0 {
        Verdict::Regressed
    } else if change.estimate < -tolerance && change.high < 0.0 {
        Verdict::Improved
    } else {
        Verdict::Unchanged
    }
}

/// Decides allocations per event. Counts are exact, so where every sample of the same events
/// allocated alike (`spread` 0) any change beyond `tolerance` counts; where they vary from
/// sample to sample (allocations that depend on the event, or on state), a change must also
/// exceed `spread`, the noise those samples show.
pub(super) fn allocation_verdict(
    before: Option<f64>,
    after: Option<f64>,
    tolerance: f64,
    spread: f64,
) -> MetricVerdict {
    let verdict = match (before, after) {
        (Some(b), Some(a)) if a > b * (1.0 + tolerance) + spread + 1e-9 => Verdict::Regressed,
        (Some(b), Some(a)) if a < b * (1.0 - tolerance) - spread - 1e-9 => Verdict::Improved,
        (Some(_), Some(_)) => Verdict::Unchanged,
        _ => Verdict::Inconclusive(
            "allocations were not measured on both sides: install pipeline::CountingAllocator"
                .to_owned(),
        ),
    };
    MetricVerdict {
        metric: Metric::AllocationsPerEvent,
        before: before.unwrap_or(f64::NAN),
        after: after.unwrap_or(f64::NAN),
        change: None,
        verdict,
    }
}

/// The noise in allocations per event between samples: three standard errors of the samples'
/// mean, the larger of the two sides (0 where every sample allocated the same).
pub(super) fn allocation_spread(before: &[f64], after: &[f64]) -> f64 {
    let standard_error = |values: &[f64]| {
        if values.len() < 2 {
            return 0.0;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (variance / n).sqrt()
    };
    3.0 * standard_error(before).max(standard_error(after))
}
