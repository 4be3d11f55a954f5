//! Profiles from several processes merged into one: [`Profile::read_merged`]. Traces merge
//! exactly (every call's duration is kept, so percentiles come from the merged distribution);
//! saved reports keep only their figures, so with a report among the inputs the percentiles
//! are weighted by calls, and the merged profile says so.

use std::collections::HashMap;
use std::path::Path;

use super::profile::{
    FoldedStack, Input, Merged, MergedFrom, Profile, ProfileInput, ProfileRow, ProfileSource,
    RowKind, TraceParts,
};
use crate::durations::Timing;
use crate::error::Error;
use crate::report::build::share;

impl Profile {
    /// Reads several Chrome traces or saved reports (one per process, say) and merges them into
    /// one profile: calls, totals and allocations added per stage and function, the call-time
    /// distributions merged exactly when every input is a trace, and each input listed in the
    /// profile's [`ProfileSource::Merged`].
    ///
    /// # Errors
    ///
    /// What [`Profile::read`] returns for the first file that cannot be read, naming it; or
    /// [`Error::InvalidConfig`] for an empty list.
    pub fn read_merged<P: AsRef<Path>>(paths: &[P]) -> Result<Profile, Error> {
        if paths.is_empty() {
            return Err(Error::InvalidConfig("no profiles to merge: give at least one file"));
        }
        let mut inputs = Vec::with_capacity(paths.len());
        let mut read = Vec::with_capacity(paths.len());
        for path in paths {
            let path = path.as_ref();
            let input = Profile::read_input(path)?;
            inputs.push(describe(path, &input));
            read.push(input);
        }
        let exact = read.iter().all(|input| matches!(input, Input::Trace(_)));
        let from = MergedFrom { inputs, exact_percentiles: exact };
        if exact {
            let mut parts = read.into_iter().map(|input| match input {
                Input::Trace(parts) => parts,
                Input::Report(_) => unreachable!("every input is a trace"),
            });
            let first = parts.next().expect("at least one input");
            let merged = parts.fold(first, merge_parts);
            return Ok(Profile::from_parts(merged, |_| ProfileSource::Merged(from)));
        }
        let profiles = read.into_iter().map(|input| match input {
            Input::Trace(parts) => Profile::from_parts(parts, ProfileSource::Trace),
            Input::Report(profile) => profile,
        });
        Ok(merge_figures(profiles.collect(), from))
    }
}

/// What the merged profile lists about one input.
fn describe(path: &Path, input: &Input) -> ProfileInput {
    let (kind, stage_calls, cut) = match input {
        Input::Trace(parts) => (
            "trace",
            parts
                .merged
                .iter()
                .filter(|row| row.kind == RowKind::Stage)
                .map(|row| row.stats.durations.calls)
                .sum(),
            parts.read.cut.clone(),
        ),
        Input::Report(profile) => {
            ("report", profile.stages().map(|row| row.timing.calls).sum(), None)
        }
    };
    ProfileInput { path: path.display().to_string(), kind: kind.to_owned(), stage_calls, cut }
}

/// Two traces' parts as one: rows with the same stage and name merged (distributions exactly),
/// stacks added, event figures merged.
fn merge_parts(mut into: TraceParts, from: TraceParts) -> TraceParts {
    // Merged traces' medians are read no finer than the coarsest of their clocks.
    into.timer_resolution_ns = into.timer_resolution_ns.max(from.timer_resolution_ns);
    let mut index: HashMap<(RowKind, Option<String>, String), usize> = into
        .merged
        .iter()
        .enumerate()
        .map(|(i, row)| ((row.kind, row.stage.clone(), row.name.clone()), i))
        .collect();
    for row in from.merged {
        match index.get(&(row.kind, row.stage.clone(), row.name.clone())) {
            Some(&i) => into.merged[i].stats.merge(&row.stats),
            None => {
                index.insert((row.kind, row.stage.clone(), row.name.clone()), into.merged.len());
                into.merged.push(Merged::new(
                    row.kind,
                    row.stage.as_deref(),
                    &row.name,
                    &row.stats,
                ));
            }
        }
    }
    into.stacks = add_stacks(std::mem::take(&mut into.stacks), from.stacks);
    let _ = into.events.processing.add(&from.events.processing);
    let _ = into.events.end_to_end.add(&from.events.end_to_end);
    let _ = into.events.queue_wait.add(&from.events.queue_wait);
    into
}

fn add_stacks(into: Vec<FoldedStack>, from: Vec<FoldedStack>) -> Vec<FoldedStack> {
    let mut by_frames: HashMap<Vec<String>, u64> = HashMap::new();
    let mut order = Vec::new();
    for stack in into.into_iter().chain(from) {
        if !by_frames.contains_key(&stack.frames) {
            order.push(stack.frames.clone());
        }
        *by_frames.entry(stack.frames).or_default() += stack.self_ns;
    }
    order
        .into_iter()
        .map(|frames| {
            let self_ns = by_frames[&frames];
            FoldedStack { frames, self_ns }
        })
        .collect()
}

/// Profiles merged by their figures (a report among them keeps no distributions): counts,
/// totals, extremes and allocations exact; percentiles weighted by calls.
fn merge_figures(profiles: Vec<Profile>, from: MergedFrom) -> Profile {
    let mut rows: Vec<ProfileRow> = Vec::new();
    let mut index: HashMap<(RowKind, Option<String>, String), usize> = HashMap::new();
    let mut stacks = Vec::new();
    for profile in profiles {
        stacks = add_stacks(stacks, profile.stacks);
        for row in profile.rows {
            let key = (row.kind, row.stage.clone(), row.name.clone());
            match index.get(&key) {
                Some(&i) => add_row(&mut rows[i], &row),
                None => {
                    index.insert(key, rows.len());
                    rows.push(row);
                }
            }
        }
    }
    rows.sort_by(|a, b| {
        b.timing.total_ns.cmp(&a.timing.total_ns).then_with(|| a.name.cmp(&b.name))
    });
    let all_stages: u64 =
        rows.iter().filter(|r| r.kind == RowKind::Stage).map(|r| r.timing.total_ns).sum();
    let stage_totals: HashMap<String, u64> = rows
        .iter()
        .filter(|r| r.kind == RowKind::Stage)
        .map(|r| (r.name.clone(), r.timing.total_ns))
        .collect();
    // Stages by total time, each followed by its functions; then functions outside stages.
    let mut ordered = Vec::with_capacity(rows.len());
    for stage in rows.iter().filter(|r| r.kind == RowKind::Stage) {
        let mut stage = stage.clone();
        stage.share = share(stage.timing.total_ns, all_stages);
        let name = stage.name.clone();
        ordered.push(stage);
        for function in rows.iter().filter(|r| r.stage.as_deref() == Some(name.as_str())) {
            let mut function = function.clone();
            function.share = share(function.timing.total_ns, stage_totals[&name]);
            ordered.push(function);
        }
    }
    ordered
        .extend(rows.iter().filter(|r| r.kind == RowKind::Function && r.stage.is_none()).cloned());
    let mut profile = Profile::from_report_rows(&[], &[]);
    profile.source = ProfileSource::Merged(from);
    profile.rows = ordered;
    profile.stacks = stacks;
    profile
}

/// Adds `other`'s figures to `row`'s.
fn add_row(row: &mut ProfileRow, other: &ProfileRow) {
    row.timing = add_timing(&row.timing, &other.timing);
    let sum = super::tree::add_measured;
    row.allocations = sum(row.allocations, other.allocations);
    row.bytes_allocated = sum(row.bytes_allocated, other.bytes_allocated);
    // The standard error belongs to one input's distribution; a merged estimate has none.
    row.p50_standard_error_ns = None;
    row.timer_resolution_ns = row.timer_resolution_ns.max(other.timer_resolution_ns);
}

/// Two rows' timings as one: counts and totals added, extremes kept, percentiles weighted by
/// calls (an estimate: the distributions themselves are not known).
pub(super) fn add_timing(a: &Timing, b: &Timing) -> Timing {
    let calls = a.calls + b.calls;
    let weighted = |x: u64, y: u64| {
        if calls == 0 {
            0
        } else {
            ((x as u128 * a.calls as u128 + y as u128 * b.calls as u128) / calls as u128) as u64
        }
    };
    let mut timing = Timing::default();
    timing.calls = calls;
    timing.total_ns = a.total_ns + b.total_ns;
    timing.self_ns = a.self_ns + b.self_ns;
    timing.waiting_ns = a.waiting_ns + b.waiting_ns;
    timing.min_ns = match (a.calls, b.calls) {
        (0, _) => b.min_ns,
        (_, 0) => a.min_ns,
        _ => a.min_ns.min(b.min_ns),
    };
    timing.max_ns = a.max_ns.max(b.max_ns);
    timing.mean_ns = timing.total_ns.checked_div(calls).unwrap_or(0);
    timing.p50_ns = weighted(a.p50_ns, b.p50_ns);
    timing.p90_ns = weighted(a.p90_ns, b.p90_ns);
    timing.p99_ns = weighted(a.p99_ns, b.p99_ns);
    timing.p999_ns = weighted(a.p999_ns, b.p999_ns);
    timing.panicked = a.panicked + b.panicked;
    timing.cancelled = a.cancelled + b.cancelled;
    timing
}
