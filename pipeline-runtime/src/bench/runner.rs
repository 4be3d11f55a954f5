//! Running a benchmark: [`Bench`] times batches of events through a pipeline (with a
//! calibration workload after each sample, and a two-thread probe of the machine), and gives a
//! [`BenchResult`]; [`Bench::compare`] times two pipelines in the same run.

use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::baseline::Baseline;
use super::machine::{self, Machine};
use super::stats::{self, SampleSummary};
use super::verdict::{
    allocation_spread, allocation_verdict, time_verdict, Comparison, Metric, MetricVerdict,
};
use crate::alloc::{installed_allocator, AllocatorKind, ThreadRegion};
use crate::error::Error;
use crate::pipeline::Pipeline;
use crate::profiler::Profiler;

/// A benchmark: how many samples of how many events, and how to decide.
///
/// ```
/// use pipeline_runtime::{bench::Bench, Pipeline, Stage, StageResult};
///
/// struct Square;
/// impl Stage<u64> for Square {
///     type Out = u64;
///     fn name(&self) -> &str { "Square" }
///     fn process(&self, e: u64) -> StageResult<u64> { Ok(Some(e * e)) }
/// }
/// let pipeline = Pipeline::new().stage(Square);
/// let result = Bench::new("square").samples(10).batch(100).run(&pipeline, |i| i)?;
/// assert_eq!(result.per_event_ns.len(), 10);
/// assert!(result.summary.median_ns > 0.0);
/// # Ok::<(), pipeline_runtime::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Bench {
    pub(super) name: String,
    pub(super) samples: usize,
    pub(super) batch: u64,
    pub(super) warmup: usize,
    pub(super) tolerance: f64,
    pub(super) allocation_tolerance: f64,
    pub(super) seed: u64,
    pub(super) allow_inconclusive: bool,
}

/// How many times [`Bench::check`] measures before it answers "could not judge".
const CHECK_ATTEMPTS: usize = 3;

/// Calibration kernel rounds timed after each sample (about 27 µs here in release, 211 µs in
/// a debug build).
pub(super) const CALIBRATION_ROUNDS: u64 = 20_000;
/// The two-thread probe ratio may move this much before the machine counts as disturbed.
pub(super) const PROBE_TOLERANCE: f64 = 0.25;
/// A baseline comparison whose 95 % interval is wider than this many tolerances cannot decide.
pub(super) const NOISE_LIMIT: f64 = 3.0;

impl Bench {
    /// A benchmark called `name`: 30 samples of 200 events, 3 warm-up batches, 10 % tolerance.
    pub fn new(name: impl Into<String>) -> Self {
        Bench {
            name: name.into(),
            samples: 30,
            batch: 200,
            warmup: 3,
            tolerance: 0.10,
            allocation_tolerance: 0.0,
            seed: 0x5eed,
            allow_inconclusive: false,
        }
    }

    /// Number of timed samples (at least 5).
    #[must_use]
    pub fn samples(mut self, samples: usize) -> Self {
        self.samples = samples.max(5);
        self
    }

    /// Events per sample: each sample times a whole batch, so the clock's own cost is spread.
    #[must_use]
    pub fn batch(mut self, events: u64) -> Self {
        self.batch = events.max(1);
        self
    }

    /// Untimed batches run first (caches, lazy initialisation).
    #[must_use]
    pub fn warmup(mut self, batches: usize) -> Self {
        self.warmup = batches;
        self
    }

    /// The relative change in time a regression must exceed (default 0.10).
    #[must_use]
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance.max(0.0);
        self
    }

    /// The relative increase in allocations per event allowed (default 0: any increase fails).
    #[must_use]
    pub fn allocation_tolerance(mut self, tolerance: f64) -> Self {
        self.allocation_tolerance = tolerance.max(0.0);
        self
    }

    /// Lets [`assert_no_regression`](super::assert_no_regression) pass a comparison that could
    /// not judge, in CI too (default: in CI it fails, saying why). An explicit opt-in for a
    /// gate you would rather have silent than red.
    #[must_use]
    pub fn allow_inconclusive(mut self, allow: bool) -> Self {
        self.allow_inconclusive = allow;
        self
    }

    /// Seeds the random order of `compare` and the bootstrap (default: fixed, so reruns agree).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Times one batch of events through `pipeline`: the events are made first, outside the
    /// clock and outside the allocation count.
    fn time_batch<E, O>(
        &self,
        pipeline: &Pipeline<E, O>,
        workload: &impl Fn(u64) -> E,
        first: u64,
    ) -> f64 {
        self.measure_batch(pipeline, workload, first).0
    }

    /// [`time_batch`](Self::time_batch), also returning the allocations the runs made.
    pub(super) fn measure_batch<E, O>(
        &self,
        pipeline: &Pipeline<E, O>,
        workload: &impl Fn(u64) -> E,
        first: u64,
    ) -> (f64, u64) {
        let events: Vec<E> = (first..first + self.batch).map(workload).collect();
        let region = ThreadRegion::new();
        let started = Instant::now();
        for event in events {
            let _ = std::hint::black_box(pipeline.run(event));
        }
        let elapsed = started.elapsed().as_nanos() as f64;
        (elapsed / self.batch as f64, region.change().allocations as u64)
    }

    /// Measures `pipeline` on events made by `workload(i)`.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyProfiling`] if a profiler is running (the per-stage breakdown needs one).
    pub fn run<E, O>(
        &self,
        pipeline: &Pipeline<E, O>,
        workload: impl Fn(u64) -> E,
    ) -> Result<BenchResult, Error> {
        self.run_cycling(pipeline, &workload, self.samples)
    }

    /// [`run`](Self::run), sample `i` timing the events of sample `i % cycle`: a rerun with more
    /// samples feeds exactly the events the baseline saw, never others.
    fn run_cycling<E, O>(
        &self,
        pipeline: &Pipeline<E, O>,
        workload: &impl Fn(u64) -> E,
        cycle: usize,
    ) -> Result<BenchResult, Error> {
        let workload = |i: u64| workload(i);
        let mut batch_ns = 0.0;
        for round in 0..self.warmup {
            batch_ns =
                self.time_batch(pipeline, &workload, round as u64 * self.batch) * self.batch as f64;
        }
        let progress = Progress::new(&self.name, self.samples, batch_ns * 2.0);
        let probe_ratio = machine::two_thread_probe();
        let measure_allocations = installed_allocator() == AllocatorKind::Counting;
        let mut per_event_ns = Vec::with_capacity(self.samples);
        let mut calibration_ns = Vec::with_capacity(self.samples);
        let mut allocations_per_sample = Vec::with_capacity(self.samples);
        for sample in 0..self.samples {
            progress.tick();
            let first = (sample % cycle.max(1)) as u64 * self.batch;
            // Each sample is the fastest batch the scheduler did not interrupt (see
            // `fastest_uninterrupted`), its yardstick timed right after it.
            let mut allocated = None;
            per_event_ns.push(machine::fastest_uninterrupted(|| {
                let (time, count) = self.measure_batch(pipeline, &workload, first);
                allocated.get_or_insert(count);
                time
            }));
            if measure_allocations {
                let allocated = allocated.unwrap_or_default();
                allocations_per_sample.push(allocated as f64 / self.batch as f64);
            }
            calibration_ns.push(machine::time_yardstick(CALIBRATION_ROUNDS));
        }
        // Per set of events (sample `i` timed the events of `i % cycle`), so that a run with
        // more samples than the baseline weighs each of its sets of events once, as it did.
        let allocations_per_sample = per_event_set(&allocations_per_sample, cycle.max(1));
        let allocations_per_event = measure_allocations.then(|| {
            allocations_per_sample.iter().sum::<f64>() / allocations_per_sample.len().max(1) as f64
        });

        let stages = {
            let profiler = Profiler::new().start()?;
            self.time_batch(pipeline, &workload, 0);
            let report = profiler.finish()?;
            report.stages.iter().map(|s| (s.name.clone(), s.timing.mean_ns as f64)).collect()
        };
        let summary = SampleSummary::of(&per_event_ns);
        Ok(BenchResult {
            name: self.name.clone(),
            batch: self.batch,
            throughput_per_sec: 1e9 / summary.mean_ns.max(f64::MIN_POSITIVE),
            summary,
            per_event_ns,
            calibration_ns,
            allocations_per_event,
            allocations_per_sample,
            stages,
            probe_ratio,
            machine: Machine::current(),
            recorded_at: machine::utc_now(),
            tolerance: self.tolerance,
            allocation_tolerance: self.allocation_tolerance,
        })
    }

    /// Times `before` and `after` side by side: `samples` pairs, each pair measuring each side
    /// twice in alternation (order chosen at random) and keeping each side's faster batch,
    /// decided on the median of the per-pair time ratios (after / before).
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub fn compare<E, O>(
        &self,
        before: &Pipeline<E, O>,
        after: &Pipeline<E, O>,
        workload: impl Fn(u64) -> E,
    ) -> Result<Comparison, Error> {
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let mut pair_ns = 0.0;
        for round in 0..self.warmup {
            pair_ns = self.time_batch(before, &workload, round as u64 * self.batch)
                * self.batch as f64
                + self.time_batch(after, &workload, round as u64 * self.batch) * self.batch as f64;
        }
        let progress = Progress::new(&self.name, self.samples, pair_ns * 2.0);
        let mut pairs = PairedSamples::default();
        for sample in 0..self.samples {
            progress.tick();
            let first = sample as u64 * self.batch;
            // Each side twice, alternating (ABAB or BABA at random), keeping each side's faster
            // time: a batch the scheduler interrupted is never the faster one. Both sides time
            // the same events.
            let (mut b, mut a) = ((f64::INFINITY, 0), (f64::INFINITY, 0));
            let before_first = rng.bool();
            for turn in 0..4 {
                let faster = |(best, allocated): (f64, u64), (time, count): (f64, u64)| {
                    (best.min(time), if turn < 2 { count } else { allocated })
                };
                if (turn % 2 == 0) == before_first {
                    b = faster(b, self.measure_batch(before, &workload, first));
                } else {
                    a = faster(a, self.measure_batch(after, &workload, first));
                }
            }
            let per_event = |count: u64| count as f64 / self.batch as f64;
            pairs.push((b.0, per_event(b.1)), (a.0, per_event(a.1)));
        }
        let measured = installed_allocator() == AllocatorKind::Counting;
        Ok(pairs.judge(self, measured, &mut rng))
    }

    /// Runs the benchmark and compares it with `baseline`; when the time verdict is
    /// inconclusive, runs again with more samples before answering, and a regression is
    /// reported only when a second run finds it too.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub fn check<E, O>(
        &self,
        pipeline: &Pipeline<E, O>,
        workload: impl Fn(u64) -> E,
        baseline: &Baseline,
    ) -> Result<Comparison, Error> {
        // A baseline built in code rather than loaded is checked the same way.
        baseline.result.check_fields().map_err(|reason| Error::BaselineInvalid {
            path: std::path::PathBuf::from("(the baseline given to Bench::check)"),
            reason,
        })?;
        // The baseline's events, batch for batch: any rerun feeds exactly those again.
        let bench = self.clone().batch(baseline.result.batch);
        let cycle = baseline.result.per_event_ns.len();
        let mut comparison = bench.run_cycling(pipeline, &workload, cycle)?.compare(baseline);
        // As a careful person would: when it cannot judge, wait for the machine to be as it was
        // and measure again with more samples, a bounded number of times.
        for attempt in 2..=CHECK_ATTEMPTS {
            if !comparison.inconclusive() {
                break;
            }
            let waited = machine::wait_for_probe(baseline.result.probe_ratio, PROBE_TOLERANCE);
            let more = bench.clone().samples(bench.samples * attempt);
            comparison = more.run_cycling(pipeline, &workload, cycle)?.compare(baseline);
            comparison.notes.push(format!(
                "attempt {attempt} of {CHECK_ATTEMPTS}, {} samples{}",
                more.samples,
                if waited { ", after waiting for the machine to settle" } else { "" }
            ));
        }
        // A regression is confirmed before it fails anyone's build: the same measurement,
        // again, once the machine is as it was. A real slowdown shows twice; a burst of
        // interference (another VM on the host, a batch job) rarely lasts through both.
        if comparison.regressed() {
            let waited = machine::wait_for_probe(baseline.result.probe_ratio, PROBE_TOLERANCE);
            let again = bench.run_cycling(pipeline, &workload, cycle)?.compare(baseline);
            let settled = if waited { ", after waiting for the machine to settle" } else { "" };
            if again.regressed() {
                comparison.notes.push(format!("regression confirmed by a second run{settled}"));
            } else {
                let mut notes = std::mem::take(&mut comparison.notes);
                notes.push(format!(
                    "the first run found a regression that a second run{settled} did not: \
                     interference, not the code; this is the second run's result"
                ));
                comparison = again;
                comparison.notes.splice(0..0, notes);
            }
        }
        comparison.allow_inconclusive = self.allow_inconclusive;
        Ok(comparison)
    }
}

/// A progress bar on stderr for runs expected to take over a second (indicatif hides it when
/// stderr is not a terminal, as under `cargo test` or in CI logs). Without the `progress`
/// feature, runs draw nothing.
#[cfg(feature = "progress")]
struct Progress(Option<indicatif::ProgressBar>);

/// Without the `progress` feature: no bar.
#[cfg(not(feature = "progress"))]
struct Progress;

#[cfg(not(feature = "progress"))]
impl Progress {
    fn new(_: &str, _: usize, _: f64) -> Self {
        Progress
    }

    fn tick(&self) {}
}

#[cfg(feature = "progress")]
impl Progress {
    /// `sample_ns`: the expected time of one sample, from the warm-up.
    fn new(name: &str, samples: usize, sample_ns: f64) -> Self {
        if sample_ns * samples as f64 <= 1e9 {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new(samples as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} samples, {eta} left",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("benchmark `{name}`"));
        Progress(Some(bar))
    }

    fn tick(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }
}

#[cfg(feature = "progress")]
impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// What one benchmark run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BenchResult {
    /// The benchmark's name.
    pub name: String,
    /// Events per sample.
    pub batch: u64,
    /// Per-event time of each sample, nanoseconds.
    pub per_event_ns: Vec<f64>,
    /// The calibration workload's time after each sample, nanoseconds.
    pub calibration_ns: Vec<f64>,
    /// Mean, median, p99, standard deviation of `per_event_ns`.
    pub summary: SampleSummary,
    /// Events per second at the mean.
    pub throughput_per_sec: f64,
    /// Exact allocations per event (`None` without the counting allocator).
    pub allocations_per_event: Option<f64>,
    /// Allocations per event in each sample (empty without the counting allocator, and in
    /// baselines written before it was recorded): how much they vary with the events.
    #[serde(default)]
    pub allocations_per_sample: Vec<f64>,
    /// Mean time per call of each stage, nanoseconds (from a profiled batch).
    pub stages: Vec<(String, f64)>,
    /// Two-thread probe: ~1 on an idle machine, ~2 with a core taken.
    pub probe_ratio: f64,
    /// Where it ran.
    pub machine: Machine,
    /// When (UTC).
    pub recorded_at: String,
    /// The time tolerance its comparisons use.
    pub tolerance: f64,
    /// The allocation tolerance its comparisons use.
    pub allocation_tolerance: f64,
}

impl fmt::Display for BenchResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        writeln!(
            f,
            "benchmark `{}`: {} samples of {} events",
            self.name,
            self.per_event_ns.len(),
            self.batch
        )?;
        writeln!(
            f,
            "  per event: mean {:.0} ns, median {:.0} ns, p99 {:.0} ns, stddev {:.0} ns; {:.0} events/s",
            s.mean_ns, s.median_ns, s.p99_ns, s.stddev_ns, self.throughput_per_sec
        )?;
        match self.allocations_per_event {
            Some(n) => writeln!(f, "  allocations per event: {n:.4}")?,
            None => writeln!(
                f,
                "  allocations per event: not measured (install pipeline::CountingAllocator)"
            )?,
        }
        for (stage, mean) in &self.stages {
            writeln!(f, "  {stage}: {mean:.0} ns per call")?;
        }
        Ok(())
    }
}

/// Both sides' samples of a same-run comparison, in pairs: (time per event, allocations per
/// event) each.
#[derive(Default)]
pub(super) struct PairedSamples {
    before_ns: Vec<f64>,
    after_ns: Vec<f64>,
    before_allocations: Vec<f64>,
    after_allocations: Vec<f64>,
}

impl PairedSamples {
    /// Adds one pair, both sides having timed the same events.
    pub(super) fn push(&mut self, before: (f64, f64), after: (f64, f64)) {
        self.before_ns.push(before.0);
        self.after_ns.push(after.0);
        self.before_allocations.push(before.1);
        self.after_allocations.push(after.1);
    }

    /// Decides: time on the median of the per-pair ratios with a bootstrap interval;
    /// allocations (when `allocations_measured`) on their means, within their own spread.
    pub(super) fn judge(
        &self,
        bench: &Bench,
        allocations_measured: bool,
        rng: &mut fastrand::Rng,
    ) -> Comparison {
        let ratios: Vec<f64> =
            self.after_ns.iter().zip(&self.before_ns).map(|(a, b)| a / b).collect();
        let change = stats::paired_ratio_change(&ratios, rng);
        let before = stats::median(&self.before_ns);
        let mut metrics = vec![MetricVerdict {
            metric: Metric::TimePerEvent,
            before,
            // The after column is the before column moved by the change, so the two columns
            // and the change always agree (the change is the median of the pairs' ratios, not
            // the ratio of the two medians).
            after: before * (1.0 + change.estimate),
            change: Some(change),
            verdict: time_verdict(change, bench.tolerance),
        }];
        if allocations_measured {
            let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
            metrics.push(allocation_verdict(
                Some(mean(&self.before_allocations)),
                Some(mean(&self.after_allocations)),
                bench.allocation_tolerance,
                allocation_spread(&self.before_allocations, &self.after_allocations),
            ));
        }
        Comparison {
            name: bench.name.clone(),
            tolerance: bench.tolerance,
            metrics,
            notes: vec!["time: after = before × (1 + change), the change being the median of the \
                 per-pair ratios"
                .to_owned()],
            allow_inconclusive: bench.allow_inconclusive,
        }
    }
}

/// The mean of `values[i]`, `values[i + cycle]`, ... for each `i` below `cycle`: one value per
/// set of events.
fn per_event_set(values: &[f64], cycle: usize) -> Vec<f64> {
    (0..cycle.min(values.len()))
        .map(|set| {
            let same: Vec<f64> = values.iter().skip(set).step_by(cycle).copied().collect();
            same.iter().sum::<f64>() / same.len() as f64
        })
        .collect()
}
