//! Building a [`CpuProfile`] from what the sampler gathered: samples grouped per stage, self and
//! total counts per function, hot spots inside libraries, and the call paths.

use std::collections::{HashMap, HashSet};

use super::{
    CpuProfile, HotSpot, Inside, SampleCount, SampledFunction, SampledStack, SampledStage,
    SourceLine, HOT_FUNCTIONS_KEPT, OUTSIDE_STAGES,
};

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
type InLibraries = HashMap<(String, String), u64>;

/// Samples of one stage while they are counted.
#[derive(Default)]
struct Group {
    samples: u64,
    /// name → (self, total)
    functions: HashMap<String, (u64, u64)>,
    profiled: HashMap<String, u64>,
    /// own function → (samples, samples per library function it called)
    hot_spots: HashMap<String, (u64, InLibraries)>,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn path(names: &[&str]) -> Vec<std::sync::Arc<str>> {
        names.iter().map(|name| std::sync::Arc::from(*name)).collect()
    }

    /// One path as the sampler names it: (stage, innermost profiled function, frames, samples).
    type Path<'a> = (Option<&'static str>, Option<&'static str>, &'a [&'a str], u64);

    /// What the sampler would hand over.
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
    fn a_recursive_function_counts_once_per_sample_in_total() {
        let recursive: &[&str] = &["app::walk", "app::walk", "app::walk"];
        let cpu = CpuProfile::from_samples(&taken(4, 0, &[(Some("Tree"), None, recursive, 4)]));
        let walk = cpu.stage("Tree").unwrap().function("app::walk").unwrap();
        assert_eq!((walk.self_samples, walk.total_samples), (4, 4));
    }
}
