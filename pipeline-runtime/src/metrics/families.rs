//! Writing metric families: one family (name, help, type) with its rows of labels and values,
//! and how a counter, a gauge and a latency histogram are written.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::calls::Aggregate;
use super::LATENCY_BUCKETS;

/// One row's labels: (name, value) pairs.
pub(super) type Labels = Vec<(&'static str, String)>;

/// Label sets must be encodable; this checks it at compile time.
const _: fn(&Labels) -> &dyn EncodeLabelSet = |labels| labels;

/// One metric family: its rows of (labels, value).
pub(super) fn family<V>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: &[(Labels, V)],
    mut write: impl FnMut(MetricEncoder<'_>, &V) -> fmt::Result,
) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        write(metric.encode_family(labels)?, value)?;
    }
    Ok(())
}

pub(super) fn counter(mut metric: MetricEncoder<'_>, value: &f64) -> fmt::Result {
    metric.encode_counter::<NoLabelSet, f64, f64>(value, None)
}

pub(super) fn gauge(mut metric: MetricEncoder<'_>, value: &f64) -> fmt::Result {
    metric.encode_gauge(value)
}

pub(super) fn histogram(mut metric: MetricEncoder<'_>, row: &Aggregate) -> fmt::Result {
    let buckets: Vec<(f64, u64)> =
        LATENCY_BUCKETS.iter().zip(row.buckets.0).map(|(&bound, count)| (bound, count)).collect();
    let sum = row.total_ns as f64 / 1e9;
    metric.encode_histogram::<NoLabelSet>(sum, row.calls, &buckets, None)
}
