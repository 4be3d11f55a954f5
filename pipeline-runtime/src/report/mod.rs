//! [`Report`]: what a profiling session measured, as data, as a table and as JSON.

pub(crate) mod build;
pub mod cpu;
mod memory;
mod pprof;
pub(crate) mod table;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::durations::Timing;
use crate::error::Error;
use crate::flame::FoldedStack;
use crate::run::RunSummary;
use crate::trace::{FlightSummary, TraceSummary};
use cpu::CpuProfile;
pub(crate) use memory::HeapReadings;
pub use memory::{AllocCounts, Allocations, HeapSummary, Retention};

/// A `#[profiled]` function's figures, as called from one stage (or from outside any stage).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FunctionStats {
    /// `module::function`, or the name given with `#[profiled(name = "..")]`.
    pub name: String,
    /// Its calls' timings.
    pub timing: Timing,
    /// Its total time as a fraction of the enclosing stage's total time (0 outside stages).
    pub share_of_stage: f64,
    /// Its allocations; `None` when no counting allocator measured them.
    pub memory: Option<Allocations>,
}

/// A stage's figures, with the profiled functions called inside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StageStats {
    /// The stage's name.
    pub name: String,
    /// Its calls' timings.
    pub timing: Timing,
    /// Its total time as a fraction of all stages' total time.
    pub share_of_stage_time: f64,
    /// Its allocations, nested calls included; `None` when no counting allocator measured them.
    pub memory: Option<Allocations>,
    /// Profiled functions called (directly or not) inside this stage, by total time, largest first.
    pub functions: Vec<FunctionStats>,
}

impl StageStats {
    /// The function with the most total time inside this stage.
    pub fn hottest_function(&self) -> Option<&FunctionStats> {
        self.functions.first()
    }

    /// The function called `name` inside this stage.
    pub fn function(&self, name: &str) -> Option<&FunctionStats> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// What a profiling session measured.
///
/// Printing it (`{}`) gives the table; the fields give the numbers.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// Wall time from `start()` to the moment the report was taken.
    pub wall_time_ns: u64,
    /// Stages by total time, largest first.
    pub stages: Vec<StageStats>,
    /// Profiled functions called outside any stage, by total time.
    pub outside_stages: Vec<FunctionStats>,
    /// The heap over the run, and which stages retained memory.
    pub memory: HeapSummary,
    /// Concurrent runs (`run_concurrent`, `WorkerPool`) that finished during the session: the
    /// load section.
    pub runs: Vec<RunSummary>,
    /// The Chrome trace written during the session, if one was asked for.
    pub trace: Option<TraceSummary>,
    /// The flight recorder's dumps, when the session had one (`Profiler::flight_recorder`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flight: Option<FlightSummary>,
    /// The sampled CPU profile, when the session sampled
    /// (`Profiler::sample_cpu`, feature `cpu-sampling`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_samples: Option<CpuProfile>,
}

impl Report {
    /// The stage with the most total time: where optimising pays off most.
    pub fn slowest_stage(&self) -> Option<&StageStats> {
        self.stages.first()
    }

    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&StageStats> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Wall time from `start()` to the moment the report was taken.
    pub fn wall_time(&self) -> Duration {
        Duration::from_nanos(self.wall_time_ns)
    }

    /// The report as pretty-printed JSON (times in nanoseconds).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report types serialise without failure")
    }

    /// Writes [`to_json`](Self::to_json) to `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Write`] naming the path when the file cannot be written.
    pub fn write_json(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json()).map_err(|source| Error::Write {
            what: "report",
            path: path.to_owned(),
            source,
        })
    }

    /// Writes an SVG flame graph of this report to `path`: each stage at the bottom, the
    /// profiled functions it called above it, each frame as wide as its total time.
    ///
    /// # Errors
    ///
    /// [`Error::Write`] naming the path when it cannot be written, or when there is nothing to
    /// draw (no stage or function ran while the profiler was on).
    ///
    /// Needs the `flamegraph` feature (on by default).
    #[cfg(feature = "flamegraph")]
    pub fn write_flamegraph(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let stacks = folded_stacks(&self.stages, &self.outside_stages);
        crate::flame::write_file(&stacks, "pipeline profile", path.as_ref())
    }

    /// One sentence naming the slowest stage, its share and its hottest function.
    pub fn diagnosis(&self) -> String {
        let Some(stage) = self.slowest_stage() else {
            return "No stage ran while the profiler was on.".to_owned();
        };
        let mut diagnosis = format!(
            "Slowest stage: {} ({} of stage time, {} per call on average)",
            stage.name,
            crate::format::percent(stage.share_of_stage_time),
            crate::format::duration_ns(stage.timing.mean_ns),
        );
        if let Some(hot) = stage.hottest_function() {
            diagnosis.push_str(&format!(
                "; its hot function is {} ({} of {}'s time, {} calls)",
                hot.name,
                crate::format::percent(hot.share_of_stage),
                stage.name,
                hot.timing.calls,
            ));
        }
        let sampled = self.cpu_samples.as_ref().and_then(|cpu| cpu.stage(&stage.name));
        // Named by the program's own code (a library function it spends its time in after it):
        // "risk_model (in libm's do_cos)", not libm's function alone.
        if let Some((sampled, hot)) = sampled.and_then(|s| Some((s, s.hot_spot()?))) {
            diagnosis.push_str(&format!(
                "; its CPU samples find {hot} on the CPU most ({} of {} samples)",
                crate::format::percent(hot.share),
                sampled.samples,
            ));
        }
        diagnosis.push('.');
        if let Some(waiting) = self.waiting_diagnosis(stage) {
            diagnosis.push(' ');
            diagnosis.push_str(&waiting);
        }
        diagnosis
    }

    /// When the slowest stage is slow because it awaits: how much of its time was waiting, and
    /// which stage holds a thread the longest instead (where more CPU or less work would help).
    fn waiting_diagnosis(&self, slowest: &StageStats) -> Option<String> {
        let timing = &slowest.timing;
        if timing.waiting_ns * 2 < timing.total_ns {
            return None; // mostly busy: the figures above say it
        }
        let mut text = format!(
            "{} of {}'s time is waiting between polls (awaiting I/O, timers or other tasks, or \
             woken and waiting for a runtime thread; not using a CPU): its latency is what it \
             waits for",
            crate::format::percent(timing.waiting_ns as f64 / timing.total_ns.max(1) as f64),
            slowest.name,
        );
        let busiest = self.stages.iter().max_by_key(|stage| stage.timing.busy_ns());
        if let Some(busiest) = busiest.filter(|busiest| busiest.name != slowest.name) {
            text.push_str(&format!(
                "; the busiest stage is {} ({} busy per call on average)",
                busiest.name,
                crate::format::duration_ns(
                    busiest.timing.busy_ns().checked_div(busiest.timing.calls).unwrap_or(0)
                ),
            ));
        }
        text.push('.');
        Some(text)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        table::write(self, f)
    }
}

pub(crate) use build::build;

/// The flame-graph stacks of a report's rows: each stage, each function under its stage, each
/// function called outside every stage, with their self time (rows without any left out).
pub(crate) fn folded_stacks(stages: &[StageStats], outside: &[FunctionStats]) -> Vec<FoldedStack> {
    let mut stacks = Vec::new();
    for stage in stages {
        stacks
            .push(FoldedStack { frames: vec![stage.name.clone()], self_ns: stage.timing.self_ns });
        for function in &stage.functions {
            stacks.push(FoldedStack {
                frames: vec![stage.name.clone(), function.name.clone()],
                self_ns: function.timing.self_ns,
            });
        }
    }
    for function in outside {
        stacks.push(FoldedStack {
            frames: vec![function.name.clone()],
            self_ns: function.timing.self_ns,
        });
    }
    stacks.retain(|stack| stack.self_ns > 0);
    stacks
}
