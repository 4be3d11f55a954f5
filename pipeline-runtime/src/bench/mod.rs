//! Benchmarks that make performance testable: "it got slower" becomes a failing test, without
//! false alarms on a noisy shared machine.
//!
//! Two ways to decide, in order of trust:
//!
//! - [`Bench::compare`]: the old and the new pipeline timed in the same run, in pairs, in random
//!   order, decided on the median of the per-pair ratios with a bootstrap interval. Whatever
//!   the machine is doing affects both sides of each pair alike. Use it to verify an
//!   optimisation, or to gate a change against the code it replaces.
//! - [`BenchResult::compare`] against a stored [`Baseline`]: each sample is divided by a fixed
//!   calibration workload timed right after it (so a slower or faster machine cancels out), and
//!   a two-thread probe recorded with the baseline tells whether a core is now taken by
//!   something else; if so the answer is [`Verdict::Inconclusive`], never a false alarm.
//!
//! Allocations per event are exact (with the counting allocator), so their gate has no
//! tolerance: one more allocation per event is a regression.

mod machine;
mod stats;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use machine::Machine;
pub use stats::{Change, Summary};

use crate::alloc::{installed_allocator, AllocatorKind, ThreadRegion};
use crate::error::Error;
use crate::pipeline::Pipeline;
use crate::profiler::Profiler;

/// How a metric moved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Better by more than the tolerance, and significantly so.
    Improved,
    /// Within the tolerance, or not significantly different.
    Unchanged,
    /// Worse by more than the tolerance, and significantly so.
    Regressed,
    /// The measurement cannot decide; the reason says why and what to do.
    Inconclusive(String),
}

/// One metric's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricVerdict {
    /// "time per event", "allocations per event".
    pub metric: String,
    /// Before (baseline or old pipeline).
    pub before: f64,
    /// After (now or new pipeline).
    pub after: f64,
    /// The estimated relative change with its 95 % interval, where statistics apply.
    pub change: Option<Change>,
    /// The decision.
    pub verdict: Verdict,
}

/// The outcome of a comparison: a verdict per metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The benchmark's name.
    pub name: String,
    /// The relative change a time regression must exceed.
    pub tolerance: f64,
    /// One verdict per metric.
    pub metrics: Vec<MetricVerdict>,
}

impl Comparison {
    /// Whether any metric regressed.
    pub fn regressed(&self) -> bool {
        self.metrics.iter().any(|m| m.verdict == Verdict::Regressed)
    }

    /// Whether any metric could not be decided.
    pub fn inconclusive(&self) -> bool {
        self.metrics.iter().any(|m| matches!(m.verdict, Verdict::Inconclusive(_)))
    }

    /// The verdict on `metric`.
    pub fn verdict(&self, metric: &str) -> Option<&Verdict> {
        self.metrics.iter().find(|m| m.metric == metric).map(|m| &m.verdict)
    }
}

/// Panics, printing the comparison as a table, if any metric regressed. For `#[test]`s.
///
/// An inconclusive comparison does not fail: it prints why, so a noisy machine cannot fail a
/// build at random.
pub fn assert_no_regression(comparison: &Comparison) {
    if comparison.regressed() {
        panic!("performance regression\n{comparison}");
    }
    if comparison.inconclusive() {
        eprintln!("performance comparison inconclusive (not failing)\n{comparison}");
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "benchmark `{}` (tolerance {:.0} %)", self.name, self.tolerance * 100.0)?;
        writeln!(
            f,
            "  {:<24}{:>14}{:>14}{:>26}  verdict",
            "metric", "before", "after", "change (95 % interval)"
        )?;
        for m in &self.metrics {
            let change = m.change.map_or_else(
                || "-".to_owned(),
                |c| {
                    format!(
                        "{:+.1} % [{:+.1}, {:+.1}]",
                        c.estimate * 100.0,
                        c.low * 100.0,
                        c.high * 100.0
                    )
                },
            );
            let verdict = match &m.verdict {
                Verdict::Improved => "improved".to_owned(),
                Verdict::Unchanged => "unchanged".to_owned(),
                Verdict::Regressed => "REGRESSED".to_owned(),
                Verdict::Inconclusive(why) => format!("inconclusive: {why}"),
            };
            writeln!(
                f,
                "  {:<24}{:>14.1}{:>14.1}{change:>26}  {verdict}",
                m.metric, m.before, m.after
            )?;
        }
        Ok(())
    }
}

/// Decides a time metric from its change: both beyond the tolerance and significant.
fn time_verdict(change: Change, tolerance: f64) -> Verdict {
    if change.estimate > tolerance && change.low > 0.0 {
        Verdict::Regressed
    } else if change.estimate < -tolerance && change.high < 0.0 {
        Verdict::Improved
    } else {
        Verdict::Unchanged
    }
}

/// Decides allocations per event: exact counts, so any change beyond `tolerance` counts.
fn allocation_verdict(before: Option<f64>, after: Option<f64>, tolerance: f64) -> MetricVerdict {
    let verdict = match (before, after) {
        (Some(b), Some(a)) if a > b * (1.0 + tolerance) + 1e-9 => Verdict::Regressed,
        (Some(b), Some(a)) if a < b * (1.0 - tolerance) - 1e-9 => Verdict::Improved,
        (Some(_), Some(_)) => Verdict::Unchanged,
        _ => Verdict::Inconclusive(
            "allocations were not measured on both sides: install pipeline::CountingAllocator"
                .to_owned(),
        ),
    };
    MetricVerdict {
        metric: "allocations per event".to_owned(),
        before: before.unwrap_or(f64::NAN),
        after: after.unwrap_or(f64::NAN),
        change: None,
        verdict,
    }
}

/// A benchmark: how many samples of how many events, and how to decide.
///
/// ```
/// use pipeline_runtime::{bench::Bench, Pipeline, Stage, StageError};
///
/// struct Square;
/// impl Stage<u64> for Square {
///     fn name(&self) -> &str { "Square" }
///     fn process(&self, e: u64) -> Result<u64, StageError> { Ok(e * e) }
/// }
/// let pipeline = Pipeline::new().stage(Square);
/// let result = Bench::new("square").samples(10).batch(100).run(&pipeline, |i| i)?;
/// assert_eq!(result.per_event_ns.len(), 10);
/// assert!(result.summary.median_ns > 0.0);
/// # Ok::<(), pipeline_runtime::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Bench {
    name: String,
    samples: usize,
    batch: u64,
    warmup: usize,
    tolerance: f64,
    allocation_tolerance: f64,
    seed: u64,
}

/// Calibration kernel rounds timed after each sample (about 50 µs here).
const CALIBRATION_ROUNDS: u64 = 20_000;
/// The two-thread probe ratio may move this much before the machine counts as disturbed.
const PROBE_TOLERANCE: f64 = 0.25;
/// A baseline comparison whose 95 % interval is wider than this many tolerances cannot decide.
const NOISE_LIMIT: f64 = 3.0;

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

    /// Seeds the random order of `compare` and the bootstrap (default: fixed, so reruns agree).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Times one batch of events through `pipeline`: the events are made first, outside the
    /// clock and outside the allocation count.
    fn time_batch<E>(
        &self,
        pipeline: &Pipeline<E>,
        workload: &impl Fn(u64) -> E,
        first: u64,
    ) -> f64 {
        self.measure_batch(pipeline, workload, first).0
    }

    /// [`time_batch`](Self::time_batch), also returning the allocations the runs made.
    fn measure_batch<E>(
        &self,
        pipeline: &Pipeline<E>,
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
    pub fn run<E>(
        &self,
        pipeline: &Pipeline<E>,
        workload: impl Fn(u64) -> E,
    ) -> Result<BenchResult, Error> {
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
        let mut allocations = 0u64;
        for sample in 0..self.samples {
            progress.tick();
            let first = sample as u64 * self.batch;
            // Each sample is the faster of two batches (an interrupted batch is never the
            // faster), and likewise the calibration timed right after it.
            let (time, allocated) = self.measure_batch(pipeline, &workload, first);
            allocations += allocated;
            per_event_ns.push(time.min(self.time_batch(pipeline, &workload, first)));
            let calibration = machine::time_calibration(CALIBRATION_ROUNDS);
            calibration_ns.push(calibration.min(machine::time_calibration(CALIBRATION_ROUNDS)));
        }
        let events = self.samples as u64 * self.batch;
        let allocations_per_event = measure_allocations.then(|| allocations as f64 / events as f64);

        let stages = {
            let profiler = Profiler::new().start()?;
            self.time_batch(pipeline, &workload, 0);
            let report = profiler.finish()?;
            report.stages.iter().map(|s| (s.name.clone(), s.timing.mean_ns as f64)).collect()
        };
        let summary = Summary::of(&per_event_ns);
        Ok(BenchResult {
            name: self.name.clone(),
            batch: self.batch,
            throughput_per_sec: 1e9 / summary.mean_ns.max(f64::MIN_POSITIVE),
            summary,
            per_event_ns,
            calibration_ns,
            allocations_per_event,
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
    pub fn compare<E>(
        &self,
        before: &Pipeline<E>,
        after: &Pipeline<E>,
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
        let (mut before_ns, mut after_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for sample in 0..self.samples {
            progress.tick();
            let first = sample as u64 * self.batch;
            // Each side twice, alternating (ABAB or BABA at random), keeping each side's faster
            // time: a batch the scheduler interrupted is never the faster one.
            let (mut b, mut a) = (f64::INFINITY, f64::INFINITY);
            let before_first = rng.bool();
            for turn in 0..4 {
                if (turn % 2 == 0) == before_first {
                    b = b.min(self.time_batch(before, &workload, first));
                } else {
                    a = a.min(self.time_batch(after, &workload, first));
                }
            }
            before_ns.push(b);
            after_ns.push(a);
            ratios.push(a / b);
        }
        let change = stats::paired_ratio_change(&ratios, &mut rng);
        let mut metrics = vec![MetricVerdict {
            metric: "time per event".to_owned(),
            before: stats::median(&before_ns),
            after: stats::median(&after_ns),
            change: Some(change),
            verdict: time_verdict(change, self.tolerance),
        }];
        if installed_allocator() == AllocatorKind::Counting {
            let count = |pipeline: &Pipeline<E>| {
                self.measure_batch(pipeline, &workload, 0).1 as f64 / self.batch as f64
            };
            metrics.push(allocation_verdict(
                Some(count(before)),
                Some(count(after)),
                self.allocation_tolerance,
            ));
        }
        Ok(Comparison { name: self.name.clone(), tolerance: self.tolerance, metrics })
    }

    /// Runs the benchmark and compares it with `baseline`; when the time verdict is
    /// inconclusive, runs once more with twice the samples before answering.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub fn check<E>(
        &self,
        pipeline: &Pipeline<E>,
        workload: impl Fn(u64) -> E,
        baseline: &Baseline,
    ) -> Result<Comparison, Error> {
        // A baseline built in code rather than loaded is checked the same way.
        baseline.result.check_fields().map_err(|reason| Error::BaselineInvalid {
            path: std::path::PathBuf::from("(the baseline given to Bench::check)"),
            reason,
        })?;
        let first = self.run(pipeline, &workload)?.compare(baseline);
        if !first.inconclusive() {
            return Ok(first);
        }
        let again = self.clone().samples(self.samples * 2);
        Ok(again.run(pipeline, &workload)?.compare(baseline))
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
    pub summary: Summary,
    /// Events per second at the mean.
    pub throughput_per_sec: f64,
    /// Exact allocations per event (`None` without the counting allocator).
    pub allocations_per_event: Option<f64>,
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

/// The baseline file format's version; older or newer files are refused with a clear error.
pub const BASELINE_VERSION: u32 = 1;

/// A stored result to compare against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Always `"pipeline-bench-baseline"`.
    pub format: String,
    /// [`BASELINE_VERSION`] when written.
    pub version: u32,
    /// The recorded result.
    pub result: BenchResult,
}

const BASELINE_FORMAT: &str = "pipeline-bench-baseline";

impl Baseline {
    /// Reads a baseline written by [`BenchResult::save_baseline`].
    ///
    /// # Errors
    ///
    /// [`Error::BaselineMissing`] (with how to create one), [`Error::BaselineInvalid`] for a file
    /// that is not a baseline or is malformed, [`Error::BaselineVersion`] for another version;
    /// each names the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let invalid = |reason: String| Error::BaselineInvalid { path: path.to_owned(), reason };
        // A baseline is a few KiB: anything far larger is not one, and is not read whole.
        if let Ok(metadata) = std::fs::metadata(path) {
            if metadata.len() > MAX_BASELINE_BYTES {
                return Err(invalid(format!(
                    "it is {} bytes, and a baseline is a few KiB (at most {MAX_BASELINE_BYTES}): \
                     not a baseline file",
                    metadata.len()
                )));
            }
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::BaselineMissing { path: path.to_owned() })
            }
            Err(error) => {
                return Err(Error::BaselineInvalid {
                    path: path.to_owned(),
                    reason: error.to_string(),
                })
            }
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::BaselineInvalid { path: path.to_owned(), reason: format!("not JSON: {e}") }
        })?;
        if value.get("format").and_then(|f| f.as_str()) != Some(BASELINE_FORMAT) {
            return Err(Error::BaselineInvalid {
                path: path.to_owned(),
                reason: format!(
                    "no `\"format\": \"{BASELINE_FORMAT}\"` field: not a baseline file"
                ),
            });
        }
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(BASELINE_VERSION) => {}
            found => {
                return Err(Error::BaselineVersion {
                    path: path.to_owned(),
                    found: found.map_or_else(|| "none".to_owned(), |v| v.to_string()),
                    supported: BASELINE_VERSION,
                })
            }
        }
        let baseline: Baseline = serde_json::from_value(value)
            .map_err(|e| Error::BaselineInvalid { path: path.to_owned(), reason: e.to_string() })?;
        baseline.result.check_fields().map_err(invalid)?;
        Ok(baseline)
    }
}

/// The largest file [`Baseline::load`] reads.
const MAX_BASELINE_BYTES: u64 = 16 << 20;

impl BenchResult {
    /// Checks what a baseline file said: a comparison with nonsense would panic or mislead.
    /// The error names the field.
    fn check_fields(&self) -> Result<(), String> {
        let finite = |field: &str, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(())
            } else {
                Err(format!("`result.{field}` is {value}: it must be a finite number, 0 or more"))
            }
        };
        if self.batch == 0 {
            return Err("`result.batch` is 0: a sample times at least one event".to_owned());
        }
        if self.per_event_ns.is_empty() {
            return Err("`result.per_event_ns` is empty: a baseline needs its samples".to_owned());
        }
        if self.calibration_ns.len() != self.per_event_ns.len() {
            return Err(format!(
                "`result.calibration_ns` has {} values for {} samples: one per sample",
                self.calibration_ns.len(),
                self.per_event_ns.len()
            ));
        }
        for (i, value) in self.per_event_ns.iter().enumerate() {
            if !(value.is_finite() && *value > 0.0) {
                return Err(format!("`result.per_event_ns[{i}]` is {value}: a time above 0"));
            }
        }
        for (i, value) in self.calibration_ns.iter().enumerate() {
            finite(&format!("calibration_ns[{i}]"), *value)?;
        }
        let summary = &self.summary;
        for (field, value) in [
            ("summary.mean_ns", summary.mean_ns),
            ("summary.median_ns", summary.median_ns),
            ("summary.p99_ns", summary.p99_ns),
            ("summary.stddev_ns", summary.stddev_ns),
            ("summary.min_ns", summary.min_ns),
            ("throughput_per_sec", self.throughput_per_sec),
            ("probe_ratio", self.probe_ratio),
            ("allocation_tolerance", self.allocation_tolerance),
        ] {
            finite(field, value)?;
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0 && self.tolerance <= 10.0) {
            return Err(format!(
                "`result.tolerance` is {}: a fraction above 0 (0.1 is 10 %)",
                self.tolerance
            ));
        }
        if let Some(allocations) = self.allocations_per_event {
            finite("allocations_per_event", allocations)?;
        }
        for (name, value) in &self.stages {
            finite(&format!("stages[{name:?}]"), *value)?;
        }
        Ok(())
    }
}

impl BenchResult {
    /// Writes this result as a baseline. Refuses to replace an existing file: use
    /// [`replace_baseline`](Self::replace_baseline) to say that you mean it.
    ///
    /// # Errors
    ///
    /// [`Error::BaselineExists`] or [`Error::Write`], naming the file.
    pub fn save_baseline(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        if path.exists() {
            return Err(Error::BaselineExists { path: path.to_owned() });
        }
        self.replace_baseline(path)
    }

    /// Writes this result as a baseline, replacing any file at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Write`] naming the file.
    pub fn replace_baseline(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path: PathBuf = path.as_ref().to_owned();
        let baseline = Baseline {
            format: BASELINE_FORMAT.to_owned(),
            version: BASELINE_VERSION,
            result: self.clone(),
        };
        let json = serde_json::to_string_pretty(&baseline).expect("baseline types serialise");
        std::fs::write(&path, json).map_err(|source| Error::Write {
            what: "baseline",
            path,
            source,
        })
    }

    /// Compares with a stored baseline: time normalised by the calibration workload, decided by
    /// a bootstrap on the medians; allocations exactly. Inconclusive if the two-thread probe
    /// says the machine is busier or quieter than when the baseline was recorded.
    pub fn compare(&self, baseline: &Baseline) -> Comparison {
        let before = &baseline.result;
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let normalised = |r: &BenchResult| -> Vec<f64> {
            r.per_event_ns.iter().zip(&r.calibration_ns).map(|(t, c)| t / c).collect()
        };
        let change = stats::median_ratio_change(&normalised(before), &normalised(self), &mut rng);
        let probe_moved = (self.probe_ratio / before.probe_ratio - 1.0).abs() > PROBE_TOLERANCE;
        let too_noisy = change.high - change.low > NOISE_LIMIT * self.tolerance;
        let verdict = if probe_moved {
            Verdict::Inconclusive(format!(
                "the machine is not as it was when the baseline was recorded (two-thread probe {:.2} now, \
                 {:.2} then: another process holds a core, or did then); rerun on a quiet machine",
                self.probe_ratio, before.probe_ratio
            ))
        } else if too_noisy {
            Verdict::Inconclusive(format!(
                "too noisy to decide: the 95 % interval [{:+.1} %, {:+.1} %] is wider than {:.0}× the \
                 tolerance; rerun with more samples or on a quieter machine",
                change.low * 100.0,
                change.high * 100.0,
                NOISE_LIMIT
            ))
        } else {
            time_verdict(change, self.tolerance)
        };
        let time = MetricVerdict {
            metric: "time per event".to_owned(),
            before: before.summary.median_ns,
            after: self.summary.median_ns,
            change: Some(change),
            verdict,
        };
        let allocations = allocation_verdict(
            before.allocations_per_event,
            self.allocations_per_event,
            self.allocation_tolerance,
        );
        Comparison {
            name: self.name.clone(),
            tolerance: self.tolerance,
            metrics: vec![time, allocations],
        }
    }
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
            Some(n) => writeln!(f, "  allocations per event: {n:.2}")?,
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
