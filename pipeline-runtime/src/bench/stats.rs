//! The statistics the gate decides with: summaries of samples and a bootstrap confidence
//! interval for a ratio of medians.
//!
//! Why the bootstrap on medians and not Mann-Whitney: the question a gate answers is "by how
//! much did it change, and is that more than the tolerance?". Mann-Whitney says whether two
//! samples differ, not by how much, so it cannot be weighed against a 10 % tolerance; the
//! bootstrap gives the estimated change *and* an interval for it, assumes no distribution, and
//! medians shrug off the odd sample a busy machine spoils.

use serde::{Deserialize, Serialize};

/// SampleSummary of per-event times (nanoseconds) over a benchmark's samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SampleSummary {
    /// Mean.
    pub mean_ns: f64,
    /// Median.
    pub median_ns: f64,
    /// 99th percentile.
    pub p99_ns: f64,
    /// Standard deviation.
    pub stddev_ns: f64,
    /// Fastest sample.
    pub min_ns: f64,
}

impl SampleSummary {
    /// Summarises `values` (at least one).
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return SampleSummary::default();
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        SampleSummary {
            mean_ns: mean,
            median_ns: quantile(values, 0.5),
            p99_ns: quantile(values, 0.99),
            stddev_ns: variance.sqrt(),
            min_ns: values.iter().copied().fold(f64::INFINITY, f64::min),
        }
    }
}

/// The `q` quantile (nearest rank) of `values`.
pub(crate) fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// An estimated relative change (`after / before - 1`) with a 95 % confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Change {
    /// The estimate: +0.30 means 30 % slower (or more).
    pub estimate: f64,
    /// Lower end of the 95 % interval.
    pub low: f64,
    /// Upper end of the 95 % interval.
    pub high: f64,
}

const RESAMPLES: usize = 2_000;

/// Change of the median of `after` over the median of `before`, bootstrapping both.
pub(crate) fn median_ratio_change(
    before: &[f64],
    after: &[f64],
    rng: &mut fastrand::Rng,
) -> Change {
    let estimate = median(after) / median(before) - 1.0;
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| median(&resample(after, rng)) / median(&resample(before, rng)) - 1.0)
        .collect();
    ratios.sort_by(f64::total_cmp);
    Change { estimate, low: ratios[RESAMPLES * 25 / 1000], high: ratios[RESAMPLES * 975 / 1000] }
}

/// Change given per-pair ratios (`after / before` measured side by side): their median, with a
/// bootstrap interval.
pub(crate) fn paired_ratio_change(ratios: &[f64], rng: &mut fastrand::Rng) -> Change {
    let estimate = median(ratios) - 1.0;
    let mut medians: Vec<f64> =
        (0..RESAMPLES).map(|_| median(&resample(ratios, rng)) - 1.0).collect();
    medians.sort_by(f64::total_cmp);
    Change { estimate, low: medians[RESAMPLES * 25 / 1000], high: medians[RESAMPLES * 975 / 1000] }
}

fn resample(values: &[f64], rng: &mut fastrand::Rng) -> Vec<f64> {
    (0..values.len()).map(|_| values[rng.usize(..values.len())]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_and_quantiles() {
        let s = SampleSummary::of(&[1.0, 2.0, 3.0, 4.0, 100.0]);
        assert_eq!(s.median_ns, 3.0);
        assert_eq!(s.p99_ns, 100.0);
        assert_eq!(s.min_ns, 1.0);
        assert_eq!(s.mean_ns, 22.0);
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), 2.5);
    }

    #[test]
    fn a_clear_shift_has_an_interval_excluding_zero_and_no_shift_includes_it() {
        let mut rng = fastrand::Rng::with_seed(7);
        let before: Vec<f64> = (0..30).map(|i| 100.0 + (i % 5) as f64).collect();
        let slower: Vec<f64> = before.iter().map(|v| v * 1.3).collect();
        let change = median_ratio_change(&before, &slower, &mut rng);
        assert!((change.estimate - 0.3).abs() < 0.01 && change.low > 0.2, "{change:?}");
        let same = median_ratio_change(&before, &before, &mut rng);
        assert!(same.low <= 0.0 && same.high >= 0.0, "{same:?}");
    }
}
