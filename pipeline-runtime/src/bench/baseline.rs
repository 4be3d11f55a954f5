//! Baselines: a [`BenchResult`] saved to a file (versioned, validated when read back) and
//! compared with a later run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::runner::{BenchResult, NOISE_LIMIT, PROBE_TOLERANCE};
use super::stats;
use super::verdict::{
    allocation_spread, allocation_verdict, time_verdict, Comparison, MetricVerdict, Verdict,
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
        // How much faster the yardstick runs now than then. Calibration bridges a few percent;
        // past that the yardstick and the workload need not move alike (a CI run saw the
        // yardstick 48 % faster and the workload 18 % faster: calibrated, a false +19 %).
        let scale = stats::median(&before.calibration_ns);
        let speed = scale / stats::median(&self.calibration_ns).max(f64::MIN_POSITIVE) - 1.0;
        let verdict = if probe_moved {
            Verdict::Inconclusive(format!(
                "the machine is not as it was when the baseline was recorded (two-thread probe {:.2} now, \
                 {:.2} then: another process holds a core, or did then); rerun on a quiet machine",
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
            time_verdict(change, self.tolerance)
        };
        // The columns are calibrated like the change: each side's median in units of the
        // calibration workload, shown in the baseline's nanoseconds. Raw, a machine running 5 %
        // faster today would print a 5 % gap beside "change -0.0 %".
        let time = MetricVerdict {
            metric: "time per event".to_owned(),
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
