//! [`Profile`]: per-stage and per-function figures read back from a Chrome trace or a saved
//! report, in one shape so that both can be printed, compared and drawn.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use std::collections::HashMap;

use crate::durations::Distribution;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::chrome::{read_events, Outcome, TraceCut};
use super::tree::TraceExtras;
use super::tree::{CallTree, NodeStats, SliceCounts};
use crate::error::Error;
pub use crate::flame::FoldedStack;
use crate::report::build::share;
use crate::report::{folded_stacks, Allocations, FunctionStats, Report, StageStats, Timing};

/// Whether a row is a stage or a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RowKind {
    /// A `#[stage]` (or, in a trace without stage markers, a top-level slice).
    Stage,
    /// A `#[profiled]` function (or any slice nested in a stage).
    Function,
}

/// One stage, or one function as called inside one stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProfileRow {
    /// Stage or function.
    pub kind: RowKind,
    /// For a function, the stage it ran in (`None` outside any stage); `None` for a stage.
    pub stage: Option<String>,
    /// The stage's or function's name.
    pub name: String,
    /// Timing of its calls.
    pub timing: Timing,
    /// A stage's share of all stages' time; a function's share of its stage's time.
    pub share: f64,
    /// Allocations over all calls (nested calls included), when the source measured them.
    pub allocations: Option<u64>,
    /// Bytes allocated over all calls, when the source measured them.
    pub bytes_allocated: Option<u64>,
    /// Standard error of the median call, in nanoseconds, when the source held every call's
    /// duration (a trace): how far the median could move by chance alone.
    #[serde(default)]
    pub p50_standard_error_ns: Option<f64>,
    /// The resolution of the clock that timed the row's calls, where the trace declares it
    /// (traces this toolkit writes): a median cannot be read finer.
    #[serde(default)]
    pub timer_resolution_ns: Option<u64>,
}

impl ProfileRow {
    /// `Stage` for a stage, `Stage › function` for a function in a stage.
    pub fn label(&self) -> String {
        match &self.stage {
            Some(stage) => format!("{stage} › {}", self.name),
            None => self.name.clone(),
        }
    }
}

/// End-to-end figures of the events a worker pool traced (its per-event slices).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventFigures {
    /// Events traced.
    pub events: u64,
    /// Median end-to-end latency, queue wait plus processing (as in a run's summary), of the
    /// events whose slice says how long they waited; `None` when none does.
    pub end_to_end_p50_ns: Option<u64>,
    /// 99th percentile of the end-to-end latency.
    pub end_to_end_p99_ns: Option<u64>,
    /// Median time the event waited in the queue first.
    pub queue_wait_p50_ns: u64,
    /// 99th percentile of the queue wait.
    pub queue_wait_p99_ns: u64,
    /// Median processing time: from a worker taking the event to its last stage ending.
    pub processing_p50_ns: u64,
    /// 99th percentile of the processing time.
    pub processing_p99_ns: u64,
}

/// What reading a trace found besides the slices it used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TraceRead {
    /// Trace events read.
    pub events: u64,
    /// Slices used, and what was counted and left out.
    pub counts: SliceCounts,
    /// Where the file stopped being readable, when it did (e.g. the process was killed while
    /// writing it): the figures cover everything before that point.
    #[serde(alias = "stop")]
    pub cut: Option<TraceCut>,
    /// Counters, instants, flow arrows, and what the writer left out.
    #[serde(default)]
    pub extras: TraceExtras,
}

/// Where a profile's figures came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProfileSource {
    /// A Chrome trace: figures are per traced slice (a sampled trace holds a sample of calls).
    Trace(TraceRead),
    /// A report: every call the profiler recorded.
    Report,
    /// Several traces or reports (one per process) merged: [`Profile::read_merged`].
    Merged(MergedFrom),
}

/// The inputs of a merged profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MergedFrom {
    /// Each input, in the order given.
    pub inputs: Vec<ProfileInput>,
    /// The percentiles are exact: every input was a trace, whose every call's duration is
    /// merged. With a saved report among them (reports keep percentiles, not histograms), they
    /// are the inputs' percentiles weighted by calls: an estimate.
    pub exact_percentiles: bool,
}

/// One input of a merged profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProfileInput {
    /// The file.
    pub path: String,
    /// `trace` or `report`.
    pub kind: String,
    /// Stage calls it holds.
    pub stage_calls: u64,
    /// Where a trace stopped being readable, when it did.
    #[serde(alias = "stop")]
    pub cut: Option<TraceCut>,
}

/// Per-stage and per-function figures, from a [`Report`] or a Chrome trace file.
///
/// ```
/// # fn main() -> Result<(), pipeline_runtime::Error> {
/// let dir = std::env::temp_dir().join(format!("profile-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let trace = dir.join("trace.json");
/// std::fs::write(&trace, r#"[
///   {"ph":"B","name":"Fraud","pid":1,"tid":1,"ts":0},
///   {"ph":"B","name":"score","pid":1,"tid":1,"ts":1},
///   {"ph":"E","name":"score","pid":1,"tid":1,"ts":9},
///   {"ph":"E","name":"Fraud","pid":1,"tid":1,"ts":10}
/// ]"#).unwrap();
/// let profile = pipeline_runtime::analysis::Profile::read(&trace)?;
/// let score = profile.row(Some("Fraud"), "score").expect("nested in the stage");
/// assert_eq!(score.timing.total_ns, 8_000);
/// println!("{profile}");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Profile {
    /// Where the figures came from.
    pub source: ProfileSource,
    /// Stages by total time, largest first, each followed by its functions by total time;
    /// then functions called outside any stage.
    pub rows: Vec<ProfileRow>,
    /// Stacks and their self time: what a flame graph draws.
    pub stacks: Vec<FoldedStack>,
    /// End-to-end figures, when the trace holds a worker pool's per-event slices.
    pub events: Option<EventFigures>,
}

impl Profile {
    /// Reads a Chrome trace (as written by this toolkit or any tracing-chrome program) or a
    /// report saved with [`Report::write_json`].
    ///
    /// The trace is streamed: its text is never held in memory whole. A trace that stops
    /// part-way (the process was killed) is read up to that point; the profile's
    /// [`TraceRead::cut`] says where.
    ///
    /// # Errors
    ///
    /// [`Error::Read`] when the file cannot be opened or read from the start;
    /// [`Error::NotAProfile`] when it holds neither a trace nor a report.
    pub fn read(path: impl AsRef<Path>) -> Result<Profile, Error> {
        Ok(match Profile::read_input(path.as_ref())? {
            Input::Trace(parts) => Profile::from_parts(parts, ProfileSource::Trace),
            Input::Report(profile) => profile,
        })
    }

    /// Reads one file as the parts of a trace (to merge exactly) or as a report's profile.
    pub(super) fn read_input(path: &Path) -> Result<Input, Error> {
        let file = File::open(path).map_err(|source| Error::Read {
            what: "trace or report",
            path: path.to_owned(),
            source,
        })?;
        let mut tree = CallTree::new();
        let outcome =
            read_events(BufReader::with_capacity(1 << 16, file), &mut |event| tree.add(event));
        let not_a_profile = |reason: String| Error::NotAProfile { path: path.to_owned(), reason };
        match outcome {
            Outcome::Trace { events, cut } => {
                tree.finish();
                let extras = std::mem::take(&mut tree.extras);
                let read = TraceRead { events, counts: tree.counts, cut, extras };
                Ok(Input::Trace(TraceParts::of(&tree, read)))
            }
            Outcome::Object(map) => {
                Profile::from_saved_report(map).map(Input::Report).map_err(not_a_profile)
            }
            Outcome::NotATrace(reason) => Err(not_a_profile(reason)),
        }
    }

    /// The figures of a report taken in this process.
    pub fn from_report(report: &Report) -> Profile {
        Profile::from_report_rows(&report.stages, &report.outside_stages)
    }

    /// The row of `name`: a stage with `stage` `None`, or a function inside `stage`.
    pub fn row(&self, stage: Option<&str>, name: &str) -> Option<&ProfileRow> {
        self.rows.iter().find(|row| {
            row.name == name
                && match stage {
                    None => row.stage.is_none(),
                    Some(stage) => row.stage.as_deref() == Some(stage),
                }
        })
    }

    /// The stages, by total time, largest first.
    pub fn stages(&self) -> impl Iterator<Item = &ProfileRow> {
        self.rows.iter().filter(|row| row.kind == RowKind::Stage)
    }

    /// The stage with the most total time.
    pub fn slowest_stage(&self) -> Option<&ProfileRow> {
        self.stages().next()
    }

    /// How reading a trace went; `None` for a report.
    pub fn trace_read(&self) -> Option<&TraceRead> {
        match &self.source {
            ProfileSource::Trace(read) => Some(read),
            ProfileSource::Report | ProfileSource::Merged(_) => None,
        }
    }

    fn from_saved_report(map: Map<String, Value>) -> Result<Profile, String> {
        #[derive(Deserialize)]
        struct SavedReport {
            stages: Vec<StageStats>,
            outside_stages: Vec<FunctionStats>,
        }
        if !map.contains_key("stages") {
            let keys: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
            return Err(format!(
                "it is JSON but neither a Chrome trace (an array of events, or an object with \
                 `traceEvents`) nor a saved pipeline report (an object with `stages`); its keys \
                 are: {}",
                if keys.is_empty() { "(none)".to_owned() } else { keys.join(", ") }
            ));
        }
        let saved: SavedReport = serde_json::from_value(Value::Object(map))
            .map_err(|error| format!("it looks like a saved report but {error}"))?;
        Ok(Profile::from_report_rows(&saved.stages, &saved.outside_stages))
    }

    pub(super) fn from_report_rows(stages: &[StageStats], outside: &[FunctionStats]) -> Profile {
        let mut rows = Vec::new();
        // One row per stage and per function, from the figures a saved report keeps.
        let row =
            |kind, stage: Option<&str>, name: &str, timing, share, memory: Option<Allocations>| {
                ProfileRow {
                    kind,
                    stage: stage.map(str::to_owned),
                    name: name.to_owned(),
                    timing,
                    share,
                    allocations: memory.map(|m| m.total.allocations),
                    bytes_allocated: memory.map(|m| m.total.bytes_allocated),
                    p50_standard_error_ns: None,
                    timer_resolution_ns: None,
                }
            };
        let function_row = |stage: Option<&str>, f: &FunctionStats| {
            row(RowKind::Function, stage, &f.name, f.timing, f.share_of_stage, f.memory)
        };
        for stage in stages {
            rows.push(row(
                RowKind::Stage,
                None,
                &stage.name,
                stage.timing,
                stage.share_of_stage_time,
                stage.memory,
            ));
            for function in &stage.functions {
                rows.push(function_row(Some(&stage.name), function));
            }
        }
        for function in outside {
            rows.push(function_row(None, function));
        }
        let stacks = folded_stacks(stages, outside);
        Profile { source: ProfileSource::Report, rows, stacks, events: None }
    }

    /// The profile of a trace's (or several merged traces') rows, stacks and event figures.
    pub(super) fn from_parts(
        parts: TraceParts,
        source: impl FnOnce(TraceRead) -> ProfileSource,
    ) -> Profile {
        let TraceParts { merged, stacks, events, read, timer_resolution_ns } = parts;
        let waited = !events.end_to_end.is_empty();
        let events = (!events.processing.is_empty()).then(|| EventFigures {
            events: events.processing.len(),
            end_to_end_p50_ns: waited.then(|| events.end_to_end.value_at_quantile(0.5)),
            end_to_end_p99_ns: waited.then(|| events.end_to_end.value_at_quantile(0.99)),
            queue_wait_p50_ns: events.queue_wait.value_at_quantile(0.5),
            queue_wait_p99_ns: events.queue_wait.value_at_quantile(0.99),
            processing_p50_ns: events.processing.value_at_quantile(0.5),
            processing_p99_ns: events.processing.value_at_quantile(0.99),
        });
        let mut rows = order(merged);
        for row in &mut rows {
            row.timer_resolution_ns = timer_resolution_ns;
        }
        Profile { source: source(read), rows, stacks, events }
    }
}

/// One file read: a trace's parts, or a saved report's profile.
// One per input file, moved a few times and never stored in bulk: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Input {
    Trace(TraceParts),
    Report(Profile),
}

/// What one trace (or several, merged) holds before it becomes a [`Profile`]: rows with their
/// whole distributions, so that traces merge exactly.
pub(super) struct TraceParts {
    pub(super) merged: Vec<Merged>,
    pub(super) stacks: Vec<FoldedStack>,
    pub(super) events: super::tree::EventFigures,
    pub(super) read: TraceRead,
    /// The writing clock's resolution, where the trace declares it.
    pub(super) timer_resolution_ns: Option<u64>,
}

impl TraceParts {
    fn of(tree: &CallTree, read: TraceRead) -> TraceParts {
        let nodes = &tree.nodes;
        // Stages: those the trace declares (and any slice marked with an outcome). Without a
        // declaration (a trace cut short, or from another program), marked and top-level slices.
        let is_stage = |index: usize| {
            let node = &nodes[index];
            index != 0
                && (node.stats.stage_marked
                    || match &tree.declared {
                        Some(declared) => declared.stages.contains(&node.name),
                        None => node.parent == 0,
                    })
        };
        let allocations_measured = tree.declared.as_ref().is_some_and(|d| d.allocations_measured);
        // Each node's enclosing stage, in one pass: a parent's index is below its children's.
        let mut enclosing: Vec<Option<usize>> = vec![None; nodes.len()];
        for index in 1..nodes.len() {
            let parent = nodes[index].parent;
            enclosing[index] =
                if parent != 0 && is_stage(parent) { Some(parent) } else { enclosing[parent] };
        }
        let mut merged: Vec<Merged> = Vec::new();
        let mut merged_index: HashMap<(RowKind, Option<&str>, &str), usize> = HashMap::new();
        for index in 1..nodes.len() {
            let stats = &nodes[index].stats;
            if stats.durations.calls == 0 {
                continue;
            }
            let (kind, stage) = if is_stage(index) {
                (RowKind::Stage, None)
            } else {
                (RowKind::Function, enclosing[index].map(|s| nodes[s].name.as_str()))
            };
            let name = nodes[index].name.as_str();
            match merged_index.get(&(kind, stage, name)) {
                Some(&existing) => merged[existing].stats.merge(stats),
                None => {
                    merged_index.insert((kind, stage, name), merged.len());
                    merged.push(Merged::new(kind, stage, name, stats));
                }
            }
        }
        if allocations_measured {
            // Stage slices carry allocations only when there were some.
            for stage in merged.iter_mut().filter(|m| m.kind == RowKind::Stage) {
                stage.stats.allocations.get_or_insert(0);
                stage.stats.bytes_allocated.get_or_insert(0);
            }
        }
        let stacks = (1..nodes.len())
            .filter(|&index| nodes[index].stats.durations.self_ns > 0)
            .map(|index| FoldedStack {
                frames: tree.path(index).into_iter().map(str::to_owned).collect(),
                self_ns: nodes[index].stats.durations.self_ns,
            })
            .collect();
        let events = super::tree::EventFigures {
            processing: tree.events.processing.clone(),
            queue_wait: tree.events.queue_wait.clone(),
            end_to_end: tree.events.end_to_end.clone(),
        };
        let timer_resolution_ns = tree.declared.as_ref().and_then(|d| d.timer_resolution_ns);
        TraceParts { merged, stacks, events, read, timer_resolution_ns }
    }
}

/// The figures of every node that makes one row, merged.
pub(super) struct Merged {
    pub(super) kind: RowKind,
    pub(super) stage: Option<String>,
    pub(super) name: String,
    pub(super) stats: NodeStats,
}

impl Merged {
    pub(super) fn new(kind: RowKind, stage: Option<&str>, name: &str, stats: &NodeStats) -> Self {
        let (stage, name) = (stage.map(str::to_owned), name.to_owned());
        let mut merged = Merged { kind, stage, name, stats: NodeStats::new() };
        merged.stats.merge(stats);
        merged
    }

    fn row(&self, share: f64) -> ProfileRow {
        let s = &self.stats;
        ProfileRow {
            kind: self.kind,
            stage: self.stage.clone(),
            name: self.name.clone(),
            timing: s.durations.timing(),
            share,
            allocations: s.allocations,
            bytes_allocated: s.bytes_allocated,
            p50_standard_error_ns: Some(median_standard_error(&s.durations.distribution)),
            timer_resolution_ns: None, // the trace's, set for every row
        }
    }
}

/// The standard error of a histogram's median: `1 / (2 f(m) sqrt(n))`, with the density at the
/// median `f(m)` estimated from the quantiles either side, `0.1 / (q(0.55) - q(0.45))`.
fn median_standard_error(h: &Distribution) -> f64 {
    let width = h.quantile(0.55).saturating_sub(h.quantile(0.45)) as f64;
    5.0 * width / (h.len().max(1) as f64).sqrt()
}

/// Stages by total time, each followed by its functions by total time; then the rest.
fn order(mut merged: Vec<Merged>) -> Vec<ProfileRow> {
    merged.sort_by(|a, b| {
        b.stats
            .durations
            .total_ns
            .cmp(&a.stats.durations.total_ns)
            .then_with(|| a.name.cmp(&b.name))
    });
    let all_stages: u64 = merged
        .iter()
        .filter(|m| m.kind == RowKind::Stage)
        .map(|m| m.stats.durations.total_ns)
        .sum();
    // Functions grouped by their stage once (largest first, as `merged` is sorted).
    let mut by_stage: HashMap<&str, Vec<&Merged>> = HashMap::new();
    for function in merged.iter().filter(|m| m.kind == RowKind::Function) {
        if let Some(stage) = function.stage.as_deref() {
            by_stage.entry(stage).or_default().push(function);
        }
    }
    let mut rows = Vec::with_capacity(merged.len());
    for stage in merged.iter().filter(|m| m.kind == RowKind::Stage) {
        rows.push(stage.row(share(stage.stats.durations.total_ns, all_stages)));
        for function in by_stage.get(stage.name.as_str()).into_iter().flatten() {
            rows.push(
                function
                    .row(share(function.stats.durations.total_ns, stage.stats.durations.total_ns)),
            );
        }
    }
    for function in merged.iter().filter(|m| m.kind == RowKind::Function && m.stage.is_none()) {
        rows.push(function.row(0.0));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user's span `handle` around a stage `S` around a function `f`; two calls, the second of
    /// which allocated.
    const SLICES: &str = r#"[
        {"ph":"B","name":"handle","pid":1,"tid":1,"ts":0},
        {"ph":"B","name":"S","pid":1,"tid":1,"ts":1},
        {"ph":"B","name":"f","pid":1,"tid":1,"ts":2},
        {"ph":"E","name":"f","pid":1,"tid":1,"ts":3},
        {"ph":"E","name":"S","pid":1,"tid":1,"ts":4},
        {"ph":"B","name":"S","pid":1,"tid":1,"ts":5},
        {"ph":"E","name":"S","pid":1,"tid":1,"ts":7,"args":{"allocations":"2","bytes_allocated":"64"}},
        {"ph":"E","name":"handle","pid":1,"tid":1,"ts":8}"#;

    fn profile_of(text: &str) -> Profile {
        let path = std::env::temp_dir().join(format!(
            "pipeline-profile-test-{}-{}.json",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&path, text).unwrap();
        let profile = Profile::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        profile
    }

    fn row<'a>(profile: &'a Profile, name: &str) -> &'a ProfileRow {
        profile.rows.iter().find(|row| row.name == name).unwrap()
    }

    #[test]
    fn the_closing_declaration_names_the_stages_and_makes_missing_allocations_zero() {
        let declared = r#",
            {"ph":"M","name":"pipeline_profile","pid":1,"tid":0,
             "args":{"stages":["S"],"allocations_measured":true}}]"#;
        let profile = profile_of(&format!("{SLICES}{declared}"));
        let stage = row(&profile, "S");
        assert_eq!(stage.kind, RowKind::Stage);
        assert_eq!(stage.timing.calls, 2);
        assert_eq!((stage.allocations, stage.bytes_allocated), (Some(2), Some(64)));
        let f = row(&profile, "f");
        assert_eq!((f.kind, f.stage.as_deref()), (RowKind::Function, Some("S")));
        let handle = row(&profile, "handle");
        assert_eq!((handle.kind, handle.stage.as_deref()), (RowKind::Function, None));
    }

    #[test]
    fn without_a_declaration_top_level_slices_are_the_stages() {
        let profile = profile_of(&format!("{SLICES}]"));
        assert_eq!(row(&profile, "handle").kind, RowKind::Stage);
        let stage = row(&profile, "S");
        assert_eq!((stage.kind, stage.stage.as_deref()), (RowKind::Function, Some("handle")));
        assert_eq!(stage.allocations, Some(2), "only what the slices carried");
    }
}
