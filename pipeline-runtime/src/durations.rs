//! The duration figures of one row, shared by the in-process recorder and the trace reader:
//! calls, total and self time, extremes, and an HDR histogram of each call's total time.

use hdrhistogram::Histogram;

use crate::report::Timing;

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

/// Duration figures of a set of calls.
#[derive(Clone, Debug)]
pub(crate) struct Durations {
    pub calls: u64,
    pub total_ns: u64,
    pub self_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    /// Distribution of each call's total time, in nanoseconds.
    pub histogram: Histogram<u64>,
}

impl Durations {
    pub(crate) fn new() -> Self {
        Durations {
            calls: 0,
            total_ns: 0,
            self_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            histogram: histogram(),
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
        record(&mut self.histogram, total_ns);
    }

    /// Adds `other`'s calls to these.
    pub(crate) fn merge(&mut self, other: &Durations) {
        self.calls += other.calls;
        self.total_ns += other.total_ns;
        self.self_ns += other.self_ns;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        // Both histograms auto-resize, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    /// The report's view of these figures: mean and percentiles included.
    pub(crate) fn timing(&self) -> Timing {
        let h = &self.histogram;
        Timing {
            calls: self.calls,
            total_ns: self.total_ns,
            self_ns: self.self_ns,
            min_ns: if self.calls == 0 { 0 } else { self.min_ns },
            max_ns: self.max_ns,
            mean_ns: self.total_ns.checked_div(self.calls).unwrap_or(0),
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
        }
    }
}
