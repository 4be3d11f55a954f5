//! The memory side of a report: per-call allocation figures and the heap over the run.

use serde::{Deserialize, Serialize};

use crate::alloc::{AllocatorKind, Counters, Heap};

/// Allocation counts of a set of calls. Bytes reallocated count as allocated when a block grew
/// and as freed when it shrank, as `stats_alloc` counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AllocCounts {
    /// Allocations made.
    pub allocations: u64,
    /// Deallocations made.
    pub deallocations: u64,
    /// Reallocations made.
    pub reallocations: u64,
    /// Bytes allocated.
    pub bytes_allocated: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// `bytes_allocated - bytes_freed`: what the calls left allocated when they returned.
    pub retained_bytes: i64,
}

impl From<Counters> for AllocCounts {
    fn from(c: Counters) -> Self {
        AllocCounts {
            allocations: c.allocations,
            deallocations: c.deallocations,
            reallocations: c.reallocations,
            bytes_allocated: c.bytes_allocated,
            bytes_freed: c.bytes_freed,
            retained_bytes: c.retained(),
        }
    }
}

/// A stage's or function's allocations, when the counting allocator measured them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Allocations {
    /// Everything its calls allocated, nested calls included.
    pub total: AllocCounts,
    /// What its calls allocated themselves, less nested instrumented calls.
    #[serde(rename = "self")]
    pub self_only: AllocCounts,
    /// `total.allocations / calls`.
    pub allocations_per_call: f64,
    /// `total.bytes_allocated / calls`.
    pub bytes_per_call: f64,
    /// `total.retained_bytes / calls`.
    pub retained_per_call: f64,
}

impl Allocations {
    pub(crate) fn new(total: Counters, self_only: Counters, calls: u64) -> Self {
        let per_call = |n: f64| if calls == 0 { 0.0 } else { n / calls as f64 };
        let total = AllocCounts::from(total);
        Allocations {
            allocations_per_call: per_call(total.allocations as f64),
            bytes_per_call: per_call(total.bytes_allocated as f64),
            retained_per_call: per_call(total.retained_bytes as f64),
            total,
            self_only: AllocCounts::from(self_only),
        }
    }
}

/// A stage whose calls left memory allocated that was still live when the run ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Retention {
    /// The stage.
    pub stage: String,
    /// Bytes its calls allocated and did not free, over the run.
    pub retained_bytes: i64,
    /// The same per call.
    pub retained_per_call: f64,
}

/// The smallest retention that gets a stage flagged: below it, one-off lazy initialisations.
pub(crate) const RETENTION_FLAG_MIN_BYTES: i64 = 4096;

/// How much of a stage's retained bytes the heap growth not yet explained must cover.
const RETENTION_COVERAGE: f64 = 0.75;

/// Flags the stages whose retained bytes the heap's growth still holds.
///
/// A stage's calls "retain" what they allocate and do not free, which includes memory handed on
/// with the event and freed later (not a leak). So retention alone does not flag a stage: the
/// heap must have grown by it. Stages are taken largest retention first, and each must be
/// covered (at least 75 %) by growth that the stages before it do not already explain, so one
/// real leak does not make every stage that passes memory along look leaky.
fn explain_growth(growth_bytes: i64, stage_retention: &[(String, i64, u64)]) -> Vec<Retention> {
    let mut candidates: Vec<&(String, i64, u64)> = stage_retention
        .iter()
        .filter(|(_, retained, _)| *retained >= RETENTION_FLAG_MIN_BYTES)
        .collect();
    candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.1));
    let mut unexplained = growth_bytes;
    let mut flagged = Vec::new();
    for (stage, retained, calls) in candidates {
        if unexplained as f64 >= RETENTION_COVERAGE * *retained as f64 {
            unexplained -= retained;
            flagged.push(Retention {
                stage: stage.clone(),
                retained_bytes: *retained,
                retained_per_call: *retained as f64 / (*calls).max(1) as f64,
            });
        }
    }
    flagged
}

/// The heap over the profiled run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HeapSummary {
    /// Which allocator measured (or that none did). Every figure below is `None` when none did.
    pub allocator: AllocatorKind,
    /// Live heap bytes when the profile started.
    pub live_at_start: Option<u64>,
    /// Live heap bytes when the report was taken.
    pub live_at_end: Option<u64>,
    /// The process's peak heap before the profile started (`None` with stats_alloc's allocator,
    /// which keeps no peak).
    pub peak_before_start: Option<u64>,
    /// The peak heap during the run (exact to within 64 KiB per thread).
    pub peak_during_run: Option<u64>,
    /// `live_at_end - live_at_start`.
    pub growth_bytes: Option<i64>,
    /// The stage whose calls retained the most bytes, if any retained.
    pub most_retaining_stage: Option<String>,
    /// Stages flagged for retention: their calls retained at least 4 KiB and the heap's growth
    /// over the run still holds it (see the module's rule), largest first.
    pub retaining_stages: Vec<Retention>,
}

/// Heap figures the profiler took at the start and end of a run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeapReadings {
    pub allocator: AllocatorKind,
    pub at_start: Option<Heap>,
    pub at_end: Option<Heap>,
}

impl HeapSummary {
    /// Whether per-call allocation figures exist (the counting allocator is installed).
    pub fn per_call_measured(&self) -> bool {
        self.allocator == AllocatorKind::Counting
    }

    pub(crate) fn new(readings: HeapReadings, stage_retention: &[(String, i64, u64)]) -> Self {
        let has_peak = readings.allocator == AllocatorKind::Counting;
        let live_at_start = readings.at_start.map(|h| h.live_bytes);
        let live_at_end = readings.at_end.map(|h| h.live_bytes);
        let growth_bytes = match (live_at_start, live_at_end) {
            (Some(start), Some(end)) => Some(end as i64 - start as i64),
            _ => None,
        };
        let most_retaining_stage = stage_retention
            .iter()
            .filter(|(_, retained, _)| *retained > 0)
            .max_by_key(|(_, retained, _)| *retained)
            .map(|(name, _, _)| name.clone());
        let retaining_stages = explain_growth(growth_bytes.unwrap_or(0), stage_retention);
        HeapSummary {
            allocator: readings.allocator,
            live_at_start,
            live_at_end,
            peak_before_start: readings.at_start.filter(|_| has_peak).map(|h| h.peak_bytes),
            peak_during_run: readings.at_end.filter(|_| has_peak).map(|h| h.peak_bytes),
            growth_bytes,
            most_retaining_stage,
            retaining_stages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::explain_growth;

    fn stage(name: &str, retained: i64) -> (String, i64, u64) {
        (name.to_owned(), retained, 100)
    }

    #[test]
    fn one_leak_does_not_make_a_stage_that_passes_memory_on_look_leaky() {
        // RecentOrders keeps 1.5 MB; Annotate's 300 KB left with the events; heap grew 1.6 MB.
        let flagged =
            explain_growth(1_600_000, &[stage("Annotate", 300_000), stage("Recent", 1_500_000)]);
        let names: Vec<&str> = flagged.iter().map(|r| r.stage.as_str()).collect();
        assert_eq!(names, ["Recent"]);
        assert_eq!(flagged[0].retained_per_call, 15_000.0);
    }

    #[test]
    fn two_real_leaks_are_both_flagged_and_no_growth_flags_nothing() {
        let both = explain_growth(2_000_000, &[stage("A", 1_000_000), stage("B", 900_000)]);
        assert_eq!(both.len(), 2);
        assert!(explain_growth(0, &[stage("A", 1_000_000)]).is_empty());
        assert!(explain_growth(1_000_000, &[stage("tiny", 4095)]).is_empty());
    }
}
