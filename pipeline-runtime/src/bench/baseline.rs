//! Baselines: a [`BenchResult`] saved to a file (versioned, validated when read back) and
//! compared with a later run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::runner::{BenchResult, NOISE_LIMIT, PROBE_TOLERANCE};
use super::stats;
use super::verdict::{
    allocation_spread, allocation_verdict, time_verdict, Comparison, Metric, MetricVerdict, Verdict,
};
use crate::error::Error;

/// The baseline file format's version; older or newer files are refused with a clear error.
pub const BASELINE_VERSION: u32 = 1;

/// A stored result to compare against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
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

/// How far the calibration workload's speed may move from the baseline's before a comparison
/// cannot judge (25 %: a different CPU, or a frequency governor, not a busy moment).
const SPEED_TOLERANCE: f64 = 0.25;

/// The two-thread probe past which the machine was busy (another process held a core): quiet it
/// reads ~1.1 on the project's machine, with one or two spinning processes beside it ~2.1.
const BUSY_PROBE: f64 = 1.5;

/// The largest file [`Baseline::load`] reads.
const MAX_BASELINE_BYTES: u64 = 16 << 20;

impl BenchResult {
    /// Checks what a baseline file said: a comparison with nonsense would panic or mislead.
    /// The error names the field.
    pub(super) fn check_fields(&self) -> Result<(), String> {
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

    /// This run's yardstick: the fastest its calibration workload ran, nanoseconds (positive).
    fn machine_speed(&self) -> f64 {
        let fastest = self.calibration_ns.iter().copied().fold(f64::INFINITY, f64::min);
        if fastest.is_finite() {
            fastest.max(f64::MIN_POSITIVE)
        } else {
            1.0
        }
    }

    /// Compares with a stored baseline: time in units of the machine's speed (the fastest the
    /// calibration workload ran in each run), decided by a bootstrap on the medians; allocations
    /// exactly. Inconclusive if the two-thread probe says the machine is busier or quieter than
    /// when the baseline was recorded.
    pub fn compare(&self, baseline: &Baseline) -> Comparison {
        let before = &baseline.result;
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        // One scale per run, not one per sample: the yardstick settles into a fast or a slow
        // mode from sample to sample (174 or 211 µs here in a debug build, clean of preemption,
        // in every run), unrelated to the workload's own, so dividing sample by sample adds
        // its noise and the median of a run sits on either mode: a false ±20 %. Its fastest
        // reading is the same run after run, and moves with the machine.
        let normalised = |r: &BenchResult| -> Vec<f64> {
            let speed = r.machine_speed();
            r.per_event_ns.iter().map(|t| t / speed).collect()
        };
        let change = stats::median_ratio_change(&normalised(before), &normalised(self), &mut rng);
        let probe_moved = (self.probe_ratio / before.probe_ratio - 1.0).abs() > PROBE_TOLERANCE;
        let too_noisy = change.high - change.low > NOISE_LIMIT * self.tolerance;
        // How much faster the yardstick runs now than then. Calibration bridges a few percent;
        // past that the yardstick and the workload need not move alike (a CI run saw the
        // yardstick 48 % faster and the workload 18 % faster: calibrated, a false +19 %).
        let scale = before.machine_speed();
        let speed = scale / self.machine_speed() - 1.0;
        let verdict = if probe_moved {
            Verdict::Inconclusive(format!(
                "the machine is not as it was when the baseline was recorded (two-thread probe {:.2} now, \
                 {:.2} then: another process holds a core, or did then); rerun on a quiet machine",
                self.probe_ratio, before.probe_ratio
            ))
        } else if self.probe_ratio.max(before.probe_ratio) > BUSY_PROBE {
            Verdict::Inconclusive(format!(
                "the machine was busy (two-thread probe {:.2} now, {:.2} then; about 1 with two \
                 cores free): times taken beside other work drift between runs by more than the \
                 tolerance (unchanged code read +11 % against its own baseline in a loaded CI \
                 run), so a stored baseline cannot judge them; check on a quiet machine, or \
                 compare two builds in one run (`Bench::compare`, `pipeline-prof paired`)",
                self.probe_ratio, before.probe_ratio
            ))
        } else if speed.abs() > SPEED_TOLERANCE {
            Verdict::Inconclusive(format!(
                "the machine runs {:.0} % {} than when the baseline was recorded (its \
                 calibration workload): too far for calibration to compare the two; rerun where \
                 the baseline was recorded, record a new one here, or compare two builds in one \
                 run (`pipeline-prof paired`)",
                speed.abs() * 100.0,
                if speed > 0.0 { "faster" } else { "slower" }
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
            // Calibration never decides alone: a regression (or improvement) must show in the raw
            // times too (while a calibrated "unchanged" stands: bridging a machine that runs
            // uniformly slower or faster is what calibration is for). The yardstick and
            // a workload need not move alike: a loaded CI run saw the yardstick 18 % faster and
            // unchanged code 7 % faster (calibrated, a false +10.8 %), another the yardstick
            // 3.6 % faster and unchanged code 7.2 % slower (calibrated, a false +11.0 %).
            let calibrated = time_verdict(change, self.tolerance);
            let raw_change =
                stats::median_ratio_change(&before.per_event_ns, &self.per_event_ns, &mut rng);
            let raw = time_verdict(raw_change, self.tolerance);
            let decided = matches!(calibrated, Verdict::Regressed | Verdict::Improved);
            if decided && raw != calibrated {
                Verdict::Inconclusive(format!(
                    "the machine runs {:.0} % {} than when the baseline was recorded, and the \
                     times disagree: {:+.1} % calibrated to its speed, {:+.1} % as measured; \
                     rerun on a quieter machine, record the baseline here, or compare two builds \
                     in one run (`pipeline-prof paired`)",
                    speed.abs() * 100.0,
                    if speed > 0.0 { "faster" } else { "slower" },
                    change.estimate * 100.0,
                    raw_change.estimate * 100.0
                ))
            } else {
                calibrated
            }
        };
        // The columns are calibrated like the change: each side's median in units of its
        // machine speed, shown in the baseline's nanoseconds. Raw, a machine running 5 %
        // faster today would print a 5 % gap beside "change -0.0 %".
        let time = MetricVerdict {
            metric: Metric::TimePerEvent,
            before: stats::median(&normalised(before)) * scale,
            after: stats::median(&normalised(self)) * scale,
            change: Some(change),
            verdict,
        };
        let allocations = allocation_verdict(
            before.allocations_per_event,
            self.allocations_per_event,
            self.allocation_tolerance,
            allocation_spread(&before.allocations_per_sample, &self.allocations_per_sample),
        );
        Comparison {
            name: self.name.clone(),
            tolerance: self.tolerance,
            metrics: vec![time, allocations],
            notes: vec![format!(
                "time calibrated to the baseline's machine: its yardstick runs {:+.1} % faster \
                 now; raw medians {:.1} ns then, {:.1} ns now",
                speed * 100.0,
                before.summary.median_ns,
                self.summary.median_ns
            )],
            allow_inconclusive: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::machine::Machine;
    use crate::bench::stats::SampleSummary;

    /// A result of 40 samples: `per_event(i)` and `yardstick(i)` nanoseconds for sample `i`.
    fn result(per_event: impl Fn(usize) -> f64, yardstick: impl Fn(usize) -> f64) -> BenchResult {
        let per_event_ns: Vec<f64> = (0..40).map(&per_event).collect();
        BenchResult {
            name: "work".to_owned(),
            batch: 10,
            summary: SampleSummary::of(&per_event_ns),
            throughput_per_sec: 1.0,
            per_event_ns,
            calibration_ns: (0..40).map(yardstick).collect(),
            allocations_per_event: None,
            allocations_per_sample: Vec::new(),
            stages: Vec::new(),
            probe_ratio: 1.0,
            machine: Machine::current(),
            recorded_at: "2026-12-04T00:00:00Z".to_owned(),
            tolerance: 0.10,
            allocation_tolerance: 0.0,
        }
    }

    fn comparison(then: BenchResult, now: &BenchResult) -> Comparison {
        let baseline = Baseline {
            format: BASELINE_FORMAT.to_owned(),
            version: BASELINE_VERSION,
            result: then,
        };
        now.compare(&baseline)
    }

    fn time_verdict(then: BenchResult, now: &BenchResult) -> Verdict {
        comparison(then, now).metrics[0].verdict.clone()
    }

    /// A little jitter, the same in both runs.
    fn jitter(i: usize) -> f64 {
        1.0 + (i % 7) as f64 * 0.002
    }

    #[test]
    fn a_yardstick_switching_modes_sample_by_sample_moves_nothing() {
        // The same code; the yardstick ran fast in 60 % of the baseline's samples and in 40 %
        // of today's, each sample's mode unrelated to the workload's time (as measured in a
        // debug build: 174 or 211 µs). Divided sample by sample this read as +20 %.
        let then = result(|i| 86_000.0 * jitter(i), |i| if i % 5 < 3 { 174e3 } else { 211e3 });
        let now = result(|i| 86_000.0 * jitter(i), |i| if i % 5 < 2 { 174e3 } else { 211e3 });
        assert_eq!(time_verdict(then, &now), Verdict::Unchanged);
    }

    #[test]
    fn a_uniformly_slower_machine_cancels_out_and_a_slower_workload_does_not() {
        let then = result(|i| 86_000.0 * jitter(i), |_| 174e3);
        let slower_machine = result(|i| 86_000.0 * 1.15 * jitter(i), |_| 174e3 * 1.15);
        assert_eq!(time_verdict(then.clone(), &slower_machine), Verdict::Unchanged);
        let slower_code = result(|i| 86_000.0 * 1.3 * jitter(i), |_| 174e3);
        assert_eq!(time_verdict(then.clone(), &slower_code), Verdict::Regressed);
        let faster_code = result(|i| 86_000.0 / 1.3 * jitter(i), |_| 174e3);
        assert_eq!(time_verdict(then, &faster_code), Verdict::Improved);
    }

    #[test]
    fn a_yardstick_that_moved_more_than_the_workload_cannot_make_a_regression_alone() {
        // As a loaded CI run measured: the yardstick 18 % faster, the same code ~5 % faster.
        // Calibrated, that reads as +12 %; the raw times say it got faster.
        let then = result(|i| 22_495.0 * jitter(i), |_| 174e3);
        let now = result(|i| 21_400.0 * jitter(i), |_| 174e3 / 1.182);
        let verdict = time_verdict(then.clone(), &now);
        assert!(
            matches!(&verdict, Verdict::Inconclusive(why) if why.contains("disagree")),
            "{verdict:?}"
        );
        // A real slowdown on a faster machine shows in both, and is one.
        let slower_code = result(|i| 22_495.0 * 1.4 * jitter(i), |_| 174e3 / 1.1);
        assert_eq!(time_verdict(then, &slower_code), Verdict::Regressed);
    }

    #[test]
    fn a_busy_machine_cannot_judge_time_against_a_baseline_even_as_busy_as_then() {
        let busy = |per_event: f64| BenchResult {
            probe_ratio: 2.2,
            ..result(move |i| per_event * jitter(i), |_| 174e3)
        };
        for now in [busy(18_000.0), busy(20_000.0), busy(30_000.0)] {
            let verdict = time_verdict(busy(18_000.0), &now);
            assert!(
                matches!(&verdict, Verdict::Inconclusive(why) if why.contains("busy")),
                "{verdict:?}"
            );
        }
        // Allocations are counted, not timed: they are still judged.
        let mut then = busy(18_000.0);
        then.allocations_per_event = Some(1.0);
        let mut now = busy(18_000.0);
        now.allocations_per_event = Some(2.0);
        assert_eq!(comparison(then, &now).metrics[1].verdict, Verdict::Regressed);
    }

    #[test]
    fn a_small_yardstick_move_cannot_tip_a_change_over_the_tolerance_either() {
        // As a loaded CI run measured (2026-12-06): the yardstick 3.6 % faster, the same code
        // 7.2 % slower (two busy threads beside it). Calibrated, +11.0 %: over the 10 %
        // tolerance; the raw times are within it.
        let then = result(|i| 18_062.0 * jitter(i), |_| 174e3);
        let now = result(|i| 19_364.0 * jitter(i), |_| 174e3 / 1.036);
        let verdict = time_verdict(then.clone(), &now);
        assert!(
            matches!(&verdict, Verdict::Inconclusive(why) if why.contains("disagree")),
            "{verdict:?}"
        );
        // Where both agree, they decide.
        let slower_code = result(|i| 18_062.0 * 1.3 * jitter(i), |_| 174e3 / 1.036);
        assert_eq!(time_verdict(then, &slower_code), Verdict::Regressed);
    }
}
