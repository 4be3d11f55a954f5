//! The report's sampled CPU section ([`CpuProfile`]): per stage, the functions the samples found
//! running, annotated or not; the samples outside stages apart; the call paths for pictures.

use std::collections::HashMap;
#[cfg(feature = "cpu-sampling")]
use std::collections::HashSet;
use std::fmt;

use comfy_table::{CellAlignment, Table};
use serde::Serialize;

use crate::format::{duration_ns, percent, STYLE};

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
impl CpuProfile {
    /// Builds the figures from what the sampler gathered.
    pub(crate) fn from_samples(taken: &crate::sampler::Samples) -> CpuProfile {
        let mut groups: HashMap<Option<&str>, Group> = HashMap::new();
        let mut stacks = Vec::new();
        for stack in &taken.stacks {
            let (stage, frames, samples) = (stack.stage, &stack.frames, stack.samples);
            let group = groups.entry(stage).or_default();
            group.add(stage, stack.function, frames, samples);
            if let Some((own, library)) = &stack.own {
                let spot = group.hot_spots.entry(frames[*own].to_string()).or_default();
                spot.0 += samples;
                if let (Some(library), Some(function)) = (library, frames.last()) {
                    let key = (library.to_string(), function.to_string());
                    *spot.1.entry(key).or_default() += samples;
                }
            }
            stacks.push(SampledStack {
                stage: stage.unwrap_or(OUTSIDE_STAGES).to_owned(),
                frames: frames.iter().map(|frame| frame.to_string()).collect(),
                lines: stack
                    .lines
                    .iter()
                    .map(|at| SourceLine {
                        file: at.file.as_deref().map(str::to_owned),
                        line: at.line,
                        address: at.address,
                    })
                    .collect(),
                samples,
            });
        }
        stacks.sort_by(|a, b| b.samples.cmp(&a.samples).then_with(|| a.frames.cmp(&b.frames)));
        let kept: u64 = groups.values().map(|group| group.samples).sum();
        let outside = groups.remove(&None).unwrap_or_default().finish(OUTSIDE_STAGES, kept);
        let mut stages: Vec<SampledStage> = groups
            .into_iter()
            .map(|(name, group)| group.finish(name.unwrap_or(OUTSIDE_STAGES), kept))
            .collect();
        stages.sort_by(|a, b| b.samples.cmp(&a.samples).then_with(|| a.name.cmp(&b.name)));
        CpuProfile {
            hz: taken.hz,
            samples_taken: taken.taken,
            samples_in_stages: kept - outside.samples,
            samples_outside_stages: outside.samples,
            samples_dropped: taken.dropped,
            samples_not_unwound: taken.not_unwound,
            samples_truncated: taken.truncated,
            process_cpu_ns: taken.process_cpu_ns,
            started_unix_ns: taken.started_unix_ns,
            duration_ns: taken.duration_ns,
            sampler_cost_ns: taken.handler_ns,
            stages,
            outside_stages: outside,
            stacks,
        }
    }
}

/// (library, its function) → samples.
#[cfg(feature = "cpu-sampling")]
type InLibraries = HashMap<(String, String), u64>;

/// Samples of one stage while they are counted.
#[cfg(feature = "cpu-sampling")]
#[derive(Default)]
struct Group {
    samples: u64,
    /// name → (self, total)
    functions: HashMap<String, (u64, u64)>,
    profiled: HashMap<String, u64>,
    /// own function → (samples, samples per library function it called)
    hot_spots: HashMap<String, (u64, InLibraries)>,
}

#[cfg(feature = "cpu-sampling")]
impl Group {
    fn add(
        &mut self,
        stage: Option<&str>,
        function: Option<&str>,
        frames: &[std::sync::Arc<str>],
        samples: u64,
    ) {
        self.samples += samples;
        let mut seen = HashSet::new();
        for (depth, frame) in frames.iter().enumerate() {
            let leaf = depth + 1 == frames.len();
            let counts = self.functions.entry(frame.to_string()).or_default();
            if leaf {
                counts.0 += samples;
            }
            // Recursion: a function counts once per sample in `total`.
            if seen.insert(&**frame) {
                counts.1 += samples;
            }
        }
        if let Some(owner) = function.or(stage) {
            *self.profiled.entry(owner.to_owned()).or_default() += samples;
        }
    }

    fn finish(self, name: &str, all_samples: u64) -> SampledStage {
        let share = |n: u64| if self.samples == 0 { 0.0 } else { n as f64 / self.samples as f64 };
        let mut by_self: Vec<(String, (u64, u64))> = self.functions.into_iter().collect();
        by_self
            .sort_by(|a, b| (b.1).0.cmp(&(a.1).0).then((b.1).1.cmp(&(a.1).1)).then(a.0.cmp(&b.0)));
        let mut by_total = by_self.clone();
        by_total.sort_by(|a, b| (b.1).1.cmp(&(a.1).1).then(a.0.cmp(&b.0)));
        let top_total: HashSet<String> =
            by_total.into_iter().take(HOT_FUNCTIONS_KEPT).map(|(name, _)| name).collect();
        let functions = by_self
            .into_iter()
            .enumerate()
            .filter(|(rank, (name, _))| *rank < HOT_FUNCTIONS_KEPT || top_total.contains(name))
            .map(|(_, (name, (self_samples, total_samples)))| SampledFunction {
                name,
                self_samples,
                total_samples,
                self_share: share(self_samples),
                total_share: share(total_samples),
            })
            .collect();
        let mut profiled_functions: Vec<SampleCount> = self
            .profiled
            .into_iter()
            .map(|(name, samples)| SampleCount { name, samples })
            .collect();
        profiled_functions.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.name.cmp(&b.name)));
        let mut hot_spots: Vec<HotSpot> = self
            .hot_spots
            .into_iter()
            .map(|(function, (samples, in_libraries))| {
                let mut per_library: HashMap<String, u64> = HashMap::new();
                for ((library, _), n) in &in_libraries {
                    *per_library.entry(library.clone()).or_default() += n;
                }
                let top = per_library.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
                let inside = top.map(|(library, library_samples)| {
                    let function = in_libraries
                        .iter()
                        .filter(|((l, _), _)| *l == library)
                        .max_by(|a, b| a.1.cmp(b.1).then((b.0).1.cmp(&(a.0).1)))
                        .map(|((_, f), _)| f.clone())
                        .unwrap_or_default();
                    Inside { library, function, samples: library_samples }
                });
                HotSpot { function, samples, share: share(samples), inside }
            })
            .collect();
        hot_spots.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.function.cmp(&b.function)));
        hot_spots.truncate(HOT_FUNCTIONS_KEPT);
        SampledStage {
            name: name.to_owned(),
            samples: self.samples,
            share_of_samples: if all_samples == 0 {
                0.0
            } else {
                self.samples as f64 / all_samples as f64
            },
            functions,
            profiled_functions,
            hot_spots,
        }
    }
}

/// Names longer than this are shortened in the printed table (the JSON keeps them whole).
const NAME_WIDTH: usize = 72;

/// `name`, its middle replaced by `…` when it is longer than [`NAME_WIDTH`] characters.
fn shortened(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= NAME_WIDTH {
        return name.to_owned();
    }
    let head: String = chars[..NAME_WIDTH / 2].iter().collect();
    let tail: String = chars[chars.len() - (NAME_WIDTH / 2 - 1)..].iter().collect();
    format!("{head}…{tail}")
}

/// The printed section: the totals, then each stage's hottest functions by self samples.
pub(crate) fn write(cpu: &CpuProfile, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let per_cpu_second = if cpu.process_cpu_ns == 0 {
        0.0
    } else {
        cpu.samples_taken as f64 / (cpu.process_cpu_ns as f64 / 1e9)
    };
    writeln!(
        f,
        "CPU samples at {} Hz: {} taken over {} of process CPU ({per_cpu_second:.0} per CPU \
         second); {} in stages, {} outside stages, {} dropped; the sampler's own cost {}",
        cpu.hz,
        cpu.samples_taken,
        duration_ns(cpu.process_cpu_ns),
        cpu.samples_in_stages,
        cpu.samples_outside_stages,
        cpu.samples_dropped,
        duration_ns(cpu.sampler_cost_ns),
    )?;
    let mut table = Table::new();
    table.load_preset(STYLE).set_header(vec![
        "stage / sampled function",
        "samples",
        "self",
        "self %",
        "total",
        "total %",
    ]);
    let outside = (cpu.outside_stages.samples > 0).then_some(&cpu.outside_stages);
    for stage in cpu.stages.iter().chain(outside) {
        table.add_row(vec![
            stage.name.clone(),
            format!("{} ({})", stage.samples, percent(stage.share_of_samples)),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        let hot = stage.functions.iter().filter(|function| function.self_samples > 0);
        for function in hot.take(HOT_FUNCTIONS_SHOWN) {
            table.add_row(vec![
                format!("  {}", shortened(&function.name)),
                String::new(),
                function.self_samples.to_string(),
                percent(function.self_share),
                function.total_samples.to_string(),
                percent(function.total_share),
            ]);
        }
    }
    for index in 1..6 {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    write!(f, "{table}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "cpu-sampling")]
    fn path(names: &[&str]) -> Vec<std::sync::Arc<str>> {
        names.iter().map(|name| std::sync::Arc::from(*name)).collect()
    }

    /// One path as the sampler names it: (stage, innermost profiled function, frames, samples).
    #[cfg(feature = "cpu-sampling")]
    type Path<'a> = (Option<&'static str>, Option<&'static str>, &'a [&'a str], u64);

    /// What the sampler would hand over.
    #[cfg(feature = "cpu-sampling")]
    fn taken(taken: u64, dropped: u64, stacks: &[Path<'_>]) -> crate::sampler::Samples {
        crate::sampler::Samples {
            hz: 99,
            taken,
            dropped,
            stacks: stacks
                .iter()
                .map(|&(stage, function, frames, samples)| crate::sampler::NamedStack {
                    stage,
                    function,
                    frames: path(frames),
                    lines: vec![Default::default(); frames.len()],
                    samples,
                    own: (!frames.is_empty()).then(|| (frames.len() - 1, None)),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    #[cfg(feature = "cpu-sampling")]
    fn samples_split_into_stages_and_functions_and_add_up() {
        let hot: &[&str] = &["app::Fraud::process", "app::score", "app::mix"];
        let cold: &[&str] = &["app::Fraud::process", "app::lookup"];
        let producer: &[&str] = &["app::main", "app::orders"];
        let cpu = CpuProfile::from_samples(&taken(
            103,
            3,
            &[
                (Some("Fraud"), Some("app::score"), hot, 80),
                (Some("Fraud"), None, cold, 15),
                (None, None, producer, 5),
            ],
        ));
        assert_eq!(cpu.samples_in_stages, 95);
        assert_eq!(cpu.samples_outside_stages, 5);
        assert_eq!(
            cpu.samples_in_stages + cpu.samples_outside_stages + cpu.samples_dropped,
            cpu.samples_taken
        );
        let fraud = cpu.stage("Fraud").unwrap();
        let mix = fraud.hottest_function().unwrap();
        assert_eq!((mix.name.as_str(), mix.self_samples, mix.total_samples), ("app::mix", 80, 80));
        let process = fraud.function("app::Fraud::process").unwrap();
        assert_eq!((process.self_samples, process.total_samples), (0, 95));
        assert!((process.total_share - 1.0).abs() < 1e-9);
        assert_eq!(
            fraud.profiled_functions[0],
            SampleCount { name: "app::score".into(), samples: 80 }
        );
        assert_eq!(fraud.profiled_functions[1], SampleCount { name: "Fraud".into(), samples: 15 });
        assert_eq!(cpu.outside_stages.samples, 5);
        assert_eq!(cpu.folded()[0], "Fraud;app::Fraud::process;app::score;app::mix 80");
        assert!(cpu.folded().contains(&"(outside stages);app::main;app::orders 5".to_owned()));
    }

    #[test]
    fn long_names_are_shortened_in_the_middle() {
        let long = format!("<{} as Trait>::method", "a".repeat(100));
        let short = shortened(&long);
        assert_eq!(short.chars().count(), NAME_WIDTH);
        assert!(short.starts_with("<aaa") && short.ends_with("as Trait>::method"));
        assert!(short.contains('…'));
        assert_eq!(shortened("app::score"), "app::score");
    }

    #[test]
    #[cfg(feature = "cpu-sampling")]
    fn a_recursive_function_counts_once_per_sample_in_total() {
        let recursive: &[&str] = &["app::walk", "app::walk", "app::walk"];
        let cpu = CpuProfile::from_samples(&taken(4, 0, &[(Some("Tree"), None, recursive, 4)]));
        let walk = cpu.stage("Tree").unwrap().function("app::walk").unwrap();
        assert_eq!((walk.self_samples, walk.total_samples), (4, 4));
    }
}
