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

/// One metric's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricVerdict {
    /// "time per event", "allocations per event".
    pub metric: String,
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

    /// The verdict on `metric`.
    pub fn verdict(&self, metric: &str) -> Option<&Verdict> {
        self.metrics.iter().find(|m| m.metric == metric).map(|m| &m.verdict)
    }
}

/// Panics, printing the comparison as a table, if any metric regressed. For `#[test]`s.
///
/// An inconclusive comparison does not fail: it prints why, so a noisy machine cannot fail a
/// build at random.
pub fn assert_no_regression(comparison: &Comparison) {
    if comparison.regressed() {
        panic!("performance regression\n{comparison}");
    }
    if comparison.inconclusive() {
        eprintln!("performance comparison inconclusive (not failing)\n{comparison}");
    }
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
            writeln!(
                f,
                "  {:<24}{:>14.1}{:>14.1}{change:>26}  {verdict}",
                m.metric, m.before, m.after
            )?;
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

/// Decides allocations per event: exact counts, so any change beyond `tolerance` counts.
pub(super) fn allocation_verdict(
    before: Option<f64>,
    after: Option<f64>,
    tolerance: f64,
) -> MetricVerdict {
    let verdict = match (before, after) {
        (Some(b), Some(a)) if a > b * (1.0 + tolerance) + 1e-9 => Verdict::Regressed,
        (Some(b), Some(a)) if a < b * (1.0 - tolerance) - 1e-9 => Verdict::Improved,
        (Some(_), Some(_)) => Verdict::Unchanged,
        _ => Verdict::Inconclusive(
            "allocations were not measured on both sides: install pipeline::CountingAllocator"
                .to_owned(),
        ),
    };
    MetricVerdict {
        metric: "allocations per event".to_owned(),
        before: before.unwrap_or(f64::NAN),
        after: after.unwrap_or(f64::NAN),
        change: None,
        verdict,
    }
}
