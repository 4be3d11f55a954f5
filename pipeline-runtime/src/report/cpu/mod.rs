//! The report's sampled CPU section ([`CpuProfile`]): per stage, the functions the samples found
//! running, annotated or not; the samples outside stages apart; the call paths for pictures.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

pub use crate::callsite::OUTSIDE_STAGES;

/// How many functions each stage keeps: the top this many by self samples, and by total samples.
pub const HOT_FUNCTIONS_KEPT: usize = 20;

/// How many functions per stage the printed report shows.
const HOT_FUNCTIONS_SHOWN: usize = 5;

/// A sampled CPU profile: which functions were on the CPU inside each stage
/// (`Profiler::sample_cpu`, feature `cpu-sampling`).
///
/// Every sample is one look at one thread that was using the CPU, charged to the stage (and
/// `#[profiled]` function) the recorder says that thread was in. The counts add up:
/// `samples_taken == samples_in_stages + samples_outside_stages + samples_dropped`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CpuProfile {
    /// The rate asked for: samples per second of CPU time on each busy thread.
    pub hz: u32,
    /// Every sample the timer triggered.
    pub samples_taken: u64,
    /// Samples taken while a thread was inside a stage.
    pub samples_in_stages: u64,
    /// Samples taken outside every stage: the producer, queue hand-offs, the workers' loop,
    /// other threads of the program.
    pub samples_outside_stages: u64,
    /// Samples lost because the collector fell behind (the ring was full).
    pub samples_dropped: u64,
    /// Of the kept samples, those with no call path (taken inside the unwinder or the dynamic
    /// loader, which the signal handler does not unwind from): charged to their stage anyway.
    pub samples_not_unwound: u64,
    /// Of the kept samples, those whose stack was deeper than the 64 innermost frames kept, or
    /// that came after 100,000 distinct paths and kept only their innermost frame.
    pub samples_truncated: u64,
    /// CPU time of the whole process while sampling ran (getrusage, user + system).
    pub process_cpu_ns: u64,
    /// When sampling began, in nanoseconds since the Unix epoch (0 when unknown).
    pub started_unix_ns: u64,
    /// How long sampling ran (wall time), in nanoseconds.
    pub duration_ns: u64,
    /// Time the sampled threads spent in the sampler's signal handler: its own cost, which is
    /// also inside the figures of the calls it interrupted.
    pub sampler_cost_ns: u64,
    /// Stages by samples, most first.
    pub stages: Vec<SampledStage>,
    /// The samples outside every stage, by function.
    pub outside_stages: SampledStage,
    /// Every distinct call path (by function and source line) with its samples, most first
    /// (for flame graphs and pprof; not in the JSON, which would grow with every distinct path).
    #[serde(skip)]
    pub stacks: Vec<SampledStack>,
}

/// The samples of one stage (or of everything outside stages).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SampledStage {
    /// The stage's name, or [`OUTSIDE_STAGES`].
    pub name: String,
    /// Samples charged to it.
    pub samples: u64,
    /// `samples` as a fraction of all samples kept.
    pub share_of_samples: f64,
    /// Its hottest functions by self samples, then total samples (at most
    /// [`HOT_FUNCTIONS_KEPT`] by each).
    pub functions: Vec<SampledFunction>,
    /// Samples per innermost `#[profiled]` function running when they were taken (the stage's
    /// own code when none), most first.
    pub profiled_functions: Vec<SampleCount>,
    /// Where the stage's CPU went in the program's own code: samples per innermost function of
    /// the program (not a library's), with the library function they were in when they were
    /// in one (`risk_model` in libm's `do_cos`), most first (at most [`HOT_FUNCTIONS_KEPT`]).
    pub hot_spots: Vec<HotSpot>,
}

/// Samples charged to the nearest function of the program's own code on their path.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HotSpot {
    /// The innermost function of the program's own code.
    pub function: String,
    /// Samples in it or in a library it called.
    pub samples: u64,
    /// `samples` as a fraction of the stage's samples.
    pub share: f64,
    /// The library it spent the most of those samples in, if any.
    pub inside: Option<Inside>,
}

/// The library a hot spot spent its samples in.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Inside {
    /// The shared object's short name (`libm`) or the crate's.
    pub library: String,
    /// Its function with the most of those samples.
    pub function: String,
    /// The hot spot's samples inside this library.
    pub samples: u64,
}

impl fmt::Display for HotSpot {
    /// `risk_model (in libm's do_cos)` when most of its samples were in the library, else
    /// `risk_model`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inside {
            Some(inside) if inside.samples * 2 >= self.samples => {
                write!(f, "{} (in {}'s {})", self.function, inside.library, inside.function)
            }
            _ => f.write_str(&self.function),
        }
    }
}

/// A function the samples found inside a stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SampledFunction {
    /// The function's name (`crate::module::function`, as the symbol table has it).
    pub name: String,
    /// Samples with this function running its own code (the innermost frame).
    pub self_samples: u64,
    /// Samples with this function anywhere on the stack.
    pub total_samples: u64,
    /// `self_samples` as a fraction of the stage's samples.
    pub self_share: f64,
    /// `total_samples` as a fraction of the stage's samples.
    pub total_share: f64,
}

/// A name and how many samples it has.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SampleCount {
    /// A `#[profiled]` function's name, or the stage's own name for its own code.
    pub name: String,
    /// Samples.
    pub samples: u64,
}

/// One distinct call path and its samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SampledStack {
    /// The stage it ran in, or [`OUTSIDE_STAGES`].
    pub stage: String,
    /// Function names, outermost first. Inside a stage the path starts at the stage's own code
    /// (the toolkit's frames above it are cut); a sample inside the toolkit itself reads
    /// `(pipeline runtime)`.
    pub frames: Vec<String>,
    /// Where in its source each frame was, in the same order as `frames` (the same functions
    /// at other lines are another path).
    pub lines: Vec<SourceLine>,
    /// Samples that found this path.
    pub samples: u64,
}

/// Where a frame of a sampled path was: source file and line (when the binary has line
/// tables: Cargo's release profile has none unless `debug = "line-tables-only"` or more), and
/// the sampled address for the function it lies in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub struct SourceLine {
    /// The source file.
    pub file: Option<String>,
    /// The line (0 when unknown).
    pub line: u32,
    /// The address (0 for a function inlined at it: the address is its caller's).
    pub address: u64,
}

impl CpuProfile {
    /// The samples of the stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&SampledStage> {
        self.stages.iter().find(|stage| stage.name == name)
    }

    /// Writes an SVG flame graph of the sampled call paths to `path`: each stage at the bottom
    /// (and `(outside stages)`), the functions sampled inside it above, each as wide as the
    /// samples in it and what it called. The title says the rate asked for and the one achieved.
    ///
    /// # Errors
    ///
    /// [`Error::Write`](crate::error::Error::Write) naming the path when it cannot be written, or when
    /// no sample was taken.
    ///
    /// Needs the `flamegraph` feature (on by default).
    #[cfg(feature = "flamegraph")]
    pub fn write_flamegraph(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<(), crate::error::Error> {
        let title = format!("CPU samples: {}", self.rate_said());
        crate::flame::write_lines_file(
            &self.folded(),
            &title,
            crate::flame::CPU_SAMPLES,
            path.as_ref(),
        )
    }

    /// Folded-stack lines (`Stage;outer;inner samples`): the input of flame-graph tools
    /// (inferno, speedscope, flamegraph.pl). One line per path of functions (the same
    /// functions at different source lines are one).
    pub fn folded(&self) -> Vec<String> {
        let mut order: Vec<String> = Vec::new();
        let mut samples: HashMap<String, u64> = HashMap::new();
        for stack in &self.stacks {
            let mut line = stack.stage.replace(';', ":");
            for frame in &stack.frames {
                line.push(';');
                line.push_str(&frame.replace(';', ":"));
            }
            let count = samples.entry(line).or_insert_with_key(|line| {
                order.push(line.clone());
                0
            });
            *count += stack.samples;
        }
        order.into_iter().map(|line| format!("{line} {}", samples[&line])).collect()
    }
}

impl SampledStage {
    /// The function with the most self samples: where the stage's CPU went.
    pub fn hottest_function(&self) -> Option<&SampledFunction> {
        self.functions.first()
    }

    /// The program's own function the most samples were in or below (a library function it
    /// called counts for it): what to speed up, named by code the reader owns.
    pub fn hot_spot(&self) -> Option<&HotSpot> {
        self.hot_spots.first()
    }

    /// The function called `name`.
    pub fn function(&self, name: &str) -> Option<&SampledFunction> {
        self.functions.iter().find(|function| function.name == name)
    }

    /// The hottest function whose name ends with `suffix` (`"::score"`, or a bare `"score"`
    /// for a function inlined into its caller, which debug info names without its path).
    pub fn function_ending_with(&self, suffix: &str) -> Option<&SampledFunction> {
        self.functions.iter().find(|function| function.name.ends_with(suffix))
    }
}

#[cfg(feature = "cpu-sampling")]
mod build;
mod table;

pub(crate) use table::write;
