//! The duration figures of one row, shared by the in-process recorder, the report and the trace
//! reader: [`Timing`] (calls, total and self time, extremes, percentiles) and the distribution of
//! each call's total time it is computed from.
//!
//! The distribution starts as the exact values (up to [`EXACT_VALUES`]) and becomes an HDR
//! histogram (three significant digits, ~16 KiB) only past that: a trace with 100,000 distinct
//! slice names, each called once, holds 100,000 small rows rather than 1.6 GB of histograms.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Timing figures of one stage or function. Times are wall-clock nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Timing {
    /// Calls: completed, and those a panic ended or (async) that were dropped before completing
    /// (see `panicked`, `cancelled`).
    pub calls: u64,
    /// Sum of every call's duration.
    pub total_ns: u64,
    /// The time the calls were busy (`total_ns` less `waiting_ns`) minus the busy time of nested
    /// instrumented calls: an `async` call that only awaits has almost none.
    pub self_ns: u64,
    /// Of `total_ns`, the time `async` calls spent waiting between polls (awaiting I/O, a
    /// timer, a lock, another task): not holding a thread. Always 0 for synchronous calls.
    #[serde(default)]
    pub waiting_ns: u64,
    /// Shortest call.
    pub min_ns: u64,
    /// Longest call.
    pub max_ns: u64,
    /// `total_ns / calls`.
    pub mean_ns: u64,
    /// Median call duration.
    pub p50_ns: u64,
    /// 90th percentile call duration.
    pub p90_ns: u64,
    /// 99th percentile call duration.
    pub p99_ns: u64,
    /// 99.9th percentile call duration.
    pub p999_ns: u64,
    /// Of `calls`, those a panic ended (counted with their time until the panic).
    #[serde(default)]
    pub panicked: u64,
    /// Of `calls`, `async` calls dropped before they completed (a timeout, the losing side of a
    /// `select!`), counted with their time until the drop.
    #[serde(default)]
    pub cancelled: u64,
}

impl Timing {
    /// Sum of every call's duration.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.total_ns)
    }

    /// Time spent in the calls themselves, not in nested instrumented calls.
    pub fn self_time(&self) -> Duration {
        Duration::from_nanos(self.self_ns)
    }

    /// Time the calls held a thread: the total less the time `async` calls spent waiting
    /// between polls (for synchronous calls, the total).
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy_ns())
    }

    /// [`busy`](Self::busy) in nanoseconds.
    pub fn busy_ns(&self) -> u64 {
        self.total_ns.saturating_sub(self.waiting_ns)
    }

    /// Time `async` calls spent waiting between polls (0 for synchronous calls).
    pub fn waiting(&self) -> Duration {
        Duration::from_nanos(self.waiting_ns)
    }

    /// Mean duration of a call.
    pub fn mean(&self) -> Duration {
        Duration::from_nanos(self.mean_ns)
    }
}

/// A histogram of nanosecond values: three significant digits, growing as larger values arrive.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

/// Records `value`, growing the histogram as needed. (`saturating_record` alone would clamp to
/// the histogram's current range instead of growing it.)
#[inline]
pub(crate) fn record(histogram: &mut Histogram<u64>, value: u64) {
    if histogram.record(value).is_err() {
        histogram.saturating_record(value); // only beyond u64::MAX / 2 ns (292 years)
    }
}

/// Values kept exactly before a row's distribution becomes a histogram.
pub(crate) const EXACT_VALUES: usize = 64;

/// The distribution of a row's call times.
#[derive(Clone, Debug)]
pub(crate) enum Distribution {
    /// Up to [`EXACT_VALUES`] values, as they came.
    Exact(Vec<u64>),
    /// Past that, a histogram (inline: a busy row records into it on every call).
    Histogram(Histogram<u64>),
}

impl Distribution {
    /// Adds a value: into the histogram (the steady state of a busy row, checked first), or
    /// among the exact values until there are [`EXACT_VALUES`].
    #[inline]
    fn record(&mut self, value: u64) {
        match self {
            Distribution::Histogram(h) => record(h, value),
            Distribution::Exact(values) if values.len() < EXACT_VALUES => values.push(value),
            Distribution::Exact(_) => self.grow_into_histogram(value),
        }
    }

    #[cold]
    #[inline(never)]
    fn grow_into_histogram(&mut self, value: u64) {
        let Distribution::Exact(values) = self else { return };
        let mut h = histogram();
        for v in values.drain(..) {
            record(&mut h, v);
        }
        record(&mut h, value);
        *self = Distribution::Histogram(h);
    }

    fn merge(&mut self, other: &Distribution) {
        match other {
            Distribution::Exact(values) => values.iter().for_each(|&v| self.record(v)),
            Distribution::Histogram(other) => {
                if let Distribution::Exact(values) = self {
                    let mut h = histogram();
                    values.iter().for_each(|&v| record(&mut h, v));
                    *self = Distribution::Histogram(h);
                }
                if let Distribution::Histogram(h) = self {
                    // Both histograms auto-resize, so adding cannot fail.
                    let _ = h.add(other);
                }
            }
        }
    }

    /// Adds its values into `histogram`.
    pub(crate) fn add_into(&self, histogram: &mut Histogram<u64>) {
        match self {
            Distribution::Exact(values) => values.iter().for_each(|&v| record(histogram, v)),
            // Both histograms auto-resize, so adding cannot fail.
            Distribution::Histogram(h) => drop(histogram.add(h)),
        }
    }

    /// The value at quantile `q` (0..=1): exact while few, to 3 significant digits after.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        match self {
            Distribution::Exact(values) if values.is_empty() => 0,
            Distribution::Exact(values) => {
                let mut sorted = values.clone();
                sorted.sort_unstable();
                // The smallest value with at least a fraction q of the values at or below it.
                let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
                sorted[rank - 1]
            }
            Distribution::Histogram(h) => h.value_at_quantile(q),
        }
    }

    /// How many values it holds.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Distribution::Exact(values) => values.len() as u64,
            Distribution::Histogram(h) => h.len(),
        }
    }
}

/// How a call ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum CallEnd {
    /// It returned (or its future completed).
    #[default]
    Returned,
    /// A panic ended it.
    Panicked,
    /// Its future was dropped before it completed.
    Cancelled,
}

/// Upper bounds, in nanoseconds, of the fixed latency buckets the metrics endpoint exposes
/// (1 µs to 10 s, three per decade); a call above the last falls in one more bucket.
#[cfg(feature = "prometheus")]
pub(crate) const LATENCY_BOUNDS_NS: [u64; 22] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Calls per latency bucket ([`LATENCY_BOUNDS_NS`], then one for longer calls): counted as
/// calls are folded, so a scrape reads 23 numbers per row instead of walking a histogram.
#[cfg(feature = "prometheus")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LatencyBuckets(pub(crate) [u64; 23]);

/// Whether calls are counted into [`LatencyBuckets`]: only while a metrics endpoint serves
/// them, so a session without one pays a load and a branch per call, not the bucket search.
#[cfg(feature = "prometheus")]
static COUNT_BUCKETS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts or stops counting calls into the latency buckets (the metrics endpoint's lifetime).
#[cfg(feature = "prometheus")]
pub(crate) fn count_latency_buckets(on: bool) {
    COUNT_BUCKETS.store(on, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(feature = "prometheus")]
impl LatencyBuckets {
    #[inline]
    fn record(&mut self, ns: u64) {
        if COUNT_BUCKETS.load(std::sync::atomic::Ordering::Relaxed) {
            self.0[LATENCY_BOUNDS_NS.partition_point(|&bound| bound < ns)] += 1;
        }
    }

    pub(crate) fn merge(&mut self, other: &LatencyBuckets) {
        for (count, more) in self.0.iter_mut().zip(other.0) {
            *count += more;
        }
    }
}

/// Duration figures of a set of calls.
#[derive(Clone, Debug)]
pub(crate) struct Durations {
    pub calls: u64,
    /// Of `calls`, ended by a panic.
    pub panicked: u64,
    /// Of `calls`, `async` calls dropped before completing.
    pub cancelled: u64,
    pub total_ns: u64,
    pub self_ns: u64,
    /// Of `total_ns`, the time `async` calls waited between polls.
    pub waiting_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    /// Distribution of each call's total time, in nanoseconds.
    pub distribution: Distribution,
    /// The same calls in the metrics endpoint's fixed buckets.
    #[cfg(feature = "prometheus")]
    pub buckets: LatencyBuckets,
}

impl Durations {
    pub(crate) fn new() -> Self {
        Durations {
            calls: 0,
            panicked: 0,
            cancelled: 0,
            total_ns: 0,
            self_ns: 0,
            waiting_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            distribution: Distribution::Exact(Vec::new()),
            #[cfg(feature = "prometheus")]
            buckets: LatencyBuckets::default(),
        }
    }

    /// Adds one call: its total time and the part of it not spent in instrumented children.
    #[inline]
    pub(crate) fn record(&mut self, total_ns: u64, self_ns: u64) {
        self.calls += 1;
        self.total_ns += total_ns;
        self.self_ns += self_ns;
        self.min_ns = self.min_ns.min(total_ns);
        self.max_ns = self.max_ns.max(total_ns);
        self.distribution.record(total_ns);
        #[cfg(feature = "prometheus")]
        self.buckets.record(total_ns);
    }

    /// Counts how a call just recorded ended.
    #[inline]
    pub(crate) fn ended(&mut self, end: CallEnd) {
        match end {
            CallEnd::Returned => {}
            CallEnd::Panicked => self.panicked += 1,
            CallEnd::Cancelled => self.cancelled += 1,
        }
    }

    /// Adds `other`'s calls to these.
    pub(crate) fn merge(&mut self, other: &Durations) {
        self.calls += other.calls;
        self.panicked += other.panicked;
        self.cancelled += other.cancelled;
        self.total_ns += other.total_ns;
        self.self_ns += other.self_ns;
        self.waiting_ns += other.waiting_ns;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.distribution.merge(&other.distribution);
        #[cfg(feature = "prometheus")]
        self.buckets.merge(&other.buckets);
    }

    /// The report's view of these figures: mean and percentiles included.
    pub(crate) fn timing(&self) -> Timing {
        let h = &self.distribution;
        Timing {
            calls: self.calls,
            total_ns: self.total_ns,
            self_ns: self.self_ns,
            waiting_ns: self.waiting_ns,
            min_ns: if self.calls == 0 { 0 } else { self.min_ns },
            max_ns: self.max_ns,
            mean_ns: self.total_ns.checked_div(self.calls).unwrap_or(0),
            p50_ns: h.quantile(0.50),
            p90_ns: h.quantile(0.90),
            p99_ns: h.quantile(0.99),
            p999_ns: h.quantile(0.999),
            panicked: self.panicked,
            cancelled: self.cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_values_are_exact_and_many_become_a_histogram_with_the_same_answers() {
        let mut few = Durations::new();
        for v in [5, 1, 9, 3] {
            few.record(v, v);
        }
        assert!(matches!(few.distribution, Distribution::Exact(_)));
        let t = few.timing();
        assert_eq!((t.p50_ns, t.p99_ns, t.min_ns, t.max_ns), (3, 9, 1, 9));

        let mut many = Durations::new();
        for v in 1..=1000 {
            many.record(v * 1000, 0);
        }
        assert!(matches!(many.distribution, Distribution::Histogram(_)));
        let p50 = many.timing().p50_ns;
        assert!(p50.abs_diff(500_000) < 1_000, "{p50}");
        assert_eq!(many.distribution.len(), 1000);

        // Merging an exact row into a histogram row and the other way round.
        let mut merged = few.clone();
        merged.merge(&many);
        assert_eq!(merged.distribution.len(), 1004);
        many.merge(&few);
        assert_eq!(many.distribution.len(), 1004);
    }

    #[test]
    #[cfg(feature = "prometheus")]
    fn calls_fall_in_the_fixed_latency_buckets_by_their_upper_bound() {
        count_latency_buckets(true);
        let mut durations = Durations::new();
        for ns in [1_000, 1_001, 2_500, 7_000, 20_000_000_000] {
            durations.record(ns, ns);
        }
        let buckets = durations.buckets.0;
        // 1,000 ≤ 1 µs; 1,001 and 2,500 ≤ 2.5 µs; 7,000 ≤ 10 µs.
        assert_eq!(buckets[..4], [1, 2, 0, 1], "{buckets:?}");
        assert_eq!(buckets[22], 1, "above the last bound");
        let mut other = Durations::new();
        other.record(1_000, 1_000);
        durations.merge(&other);
        assert_eq!(durations.buckets.0[0], 2);
        assert_eq!(durations.buckets.0.iter().sum::<u64>(), durations.calls);
    }
}
