//! Turns the recorder's merged rows into a [`Report`].

use super::memory::{Allocations, HeapReadings, HeapSummary};
use super::{FunctionStats, Report, StageStats};
use crate::call_stats::{CallStats, Row};
use crate::callsite::{lookup, CallsiteKind};

/// `part / whole`, or 0 when there is no whole.
pub(crate) fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn memory(stats: &CallStats, measured: bool) -> Option<Allocations> {
    measured.then(|| Allocations::new(stats.mem_total, stats.mem_self, stats.durations.calls))
}

/// Builds the report from merged rows (one per enclosing stage and call site).
pub(crate) fn build(rows: Vec<Row>, wall_time_ns: u64, heap: HeapReadings) -> Report {
    let measured = heap.allocator == crate::alloc::AllocatorKind::Counting;
    // Stages: one entry per stage call site, whatever stage (if any) it was nested in.
    let mut stage_rows: Vec<(u32, CallStats)> = Vec::new();
    for row in rows.iter().filter(|r| lookup(r.callsite).kind() == CallsiteKind::Stage) {
        match stage_rows.iter_mut().find(|(site, _)| *site == row.callsite) {
            Some((_, stats)) => stats.merge(&row.stats),
            None => stage_rows.push((row.callsite, row.stats.clone())),
        }
    }
    let all_stages_ns: u64 = stage_rows.iter().map(|(_, s)| s.durations.total_ns).sum();
    let mut stages: Vec<(u32, StageStats)> = stage_rows
        .iter()
        .map(|(site, stats)| {
            let stage = StageStats {
                name: lookup(*site).name().to_owned(),
                timing: stats.durations.timing(),
                share_of_stage_time: share(stats.durations.total_ns, all_stages_ns),
                memory: memory(stats, measured),
                functions: Vec::new(),
            };
            (*site, stage)
        })
        .collect();

    let mut outside_stages = Vec::new();
    for row in rows.iter().filter(|r| lookup(r.callsite).kind() == CallsiteKind::Function) {
        let name = lookup(row.callsite).name().to_owned();
        let timing = row.stats.durations.timing();
        let memory = memory(&row.stats, measured);
        match stages.iter_mut().find(|(site, _)| *site == row.parent_stage) {
            Some((_, stage)) => {
                let share_of_stage = share(timing.total_ns, stage.timing.total_ns);
                stage.functions.push(FunctionStats { name, timing, share_of_stage, memory });
            }
            None => {
                outside_stages.push(FunctionStats { name, timing, share_of_stage: 0.0, memory })
            }
        }
    }

    let mut stages: Vec<StageStats> = stages.into_iter().map(|(_, stage)| stage).collect();
    stages.sort_by(|a, b| b.timing.total_ns.cmp(&a.timing.total_ns).then(a.name.cmp(&b.name)));
    for stage in &mut stages {
        sort_functions(&mut stage.functions);
    }
    sort_functions(&mut outside_stages);
    let retention: Vec<(String, i64, u64)> = stages
        .iter()
        .filter_map(|s| s.memory.map(|m| (s.name.clone(), m.total.retained_bytes, s.timing.calls)))
        .collect();
    let memory = HeapSummary::new(heap, &retention);
    Report {
        wall_time_ns,
        stages,
        outside_stages,
        memory,
        runs: Vec::new(),
        trace: None,
        flight: None,
        cpu_samples: None,
    }
}

fn sort_functions(functions: &mut [FunctionStats]) {
    functions.sort_by(|a, b| b.timing.total_ns.cmp(&a.timing.total_ns).then(a.name.cmp(&b.name)));
}
