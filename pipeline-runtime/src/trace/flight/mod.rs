//! The flight recorder: the trace of the last seconds, kept in bounded memory while the program
//! runs, and written as a Chrome trace when something happens (a stage too slow, a panic, a
//! queue full too long, a signal, a call from the program).
//!
//! The native writer keeps whole record chunks in its window instead of formatting them
//! ([`super::native`]). This module holds the settings ([`FlightRecorder`]) and what a dump
//! is ([`DumpTrigger`], [`FlightDump`], [`FlightSummary`]); `session` runs one and writes its
//! dumps, `watch` is the trigger thread, `pacing` keeps a dump from starving the workers, and
//! `signal` (Linux) is the `SIGUSR2` trigger.

mod pacing;
mod session;
#[cfg(target_os = "linux")]
mod signal;
mod watch;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::error::Error;
pub(crate) use session::FlightSession;

/// Trace memory a flight recorder may use unless told otherwise: 64 MiB.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// How a flight recorder keeps the last seconds of trace and when it writes them
/// ([`Profiler::flight_recorder`](crate::Profiler::flight_recorder)).
///
/// The window is kept in memory (trace records as the threads wrote them, nothing formatted):
/// at most `max_bytes` in all, about half of which holds the window and the rest the buffers
/// threads are filling. Nothing is written until a trigger fires; then the window, and a short
/// `tail` after the trigger, go to `dir` as a Chrome trace named with the time and the trigger
/// (`flight-2026-12-05T11-45-12.345Z-latency-FraudStage.json`), and recording goes on. A dump
/// takes the window with it: the next dump holds what came after.
///
/// ```
/// use std::time::Duration;
/// use pipeline_runtime::trace::FlightRecorder;
///
/// let flight = FlightRecorder::new(Duration::from_secs(2))
///     .dir("target/flight")
///     .when_p99_over("FraudStage", Duration::from_millis(5))
///     .when_queue_full_for(Duration::from_millis(500))
///     .on_stage_panic(true);
/// let session = pipeline_runtime::Profiler::new().flight_recorder(flight).start()?;
/// // ... run the pipeline; a dump is written when a trigger fires ...
/// let report = session.finish()?;
/// assert!(report.flight.expect("armed").dumps.is_empty());
/// # Ok::<(), pipeline_runtime::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a flight recorder does nothing until given to `Profiler::flight_recorder`"]
pub struct FlightRecorder {
    window: Duration,
    max_bytes: usize,
    dir: PathBuf,
    tail: Duration,
    cooldown: Duration,
    latency: Vec<LatencyTrigger>,
    latency_over: Duration,
    queue_full_for: Option<Duration>,
    on_panic: bool,
    on_signal: bool,
    on_exit: bool,
}

/// A stage's latency quantile above which a dump is written.
#[derive(Clone, Debug)]
struct LatencyTrigger {
    stage: String,
    quantile: f64,
    threshold_ns: u64,
}

impl FlightRecorder {
    /// Keeps at least the last `window` of trace. Defaults: [`DEFAULT_MAX_BYTES`], dumps into
    /// `flight/`, a 500 ms tail, a 60 s cooldown between dumps, no trigger but
    /// [`ProfilingSession::dump`](crate::ProfilingSession::dump).
    pub fn new(window: Duration) -> Self {
        FlightRecorder {
            window,
            max_bytes: DEFAULT_MAX_BYTES,
            dir: PathBuf::from("flight"),
            tail: Duration::from_millis(500),
            cooldown: Duration::from_secs(60),
            latency: Vec::new(),
            latency_over: Duration::from_secs(1),
            queue_full_for: None,
            on_panic: false,
            on_signal: false,
            on_exit: false,
        }
    }

    /// All the flight recorder's trace memory, in bytes (at least 1 MiB). When the window does
    /// not fit, the oldest part goes first and the dump says how far back it is complete.
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Where dumps go (created when the first is written).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// How long recording goes on after a trigger before the dump is written, so the end of
    /// the incident is in it too (default 500 ms; kept in memory besides the window).
    pub fn tail(mut self, tail: Duration) -> Self {
        self.tail = tail;
        self
    }

    /// The least time between two dumps written by triggers (default 60 s): a long incident
    /// writes a few files, not thousands. Triggers that fire meanwhile are counted.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Dumps when stage `stage`'s 99th percentile call time, over the last second (see
    /// [`Self::latency_over`]), is above `threshold`.
    pub fn when_p99_over(self, stage: impl Into<String>, threshold: Duration) -> Self {
        self.when_quantile_over(stage, 0.99, threshold)
    }

    /// Dumps when stage `stage`'s call time at `quantile` (0 to 1) over the last second is
    /// above `threshold`. At least 20 calls in that second are needed to judge, so a single
    /// slow call among few is not an incident.
    pub fn when_quantile_over(
        mut self,
        stage: impl Into<String>,
        quantile: f64,
        threshold: Duration,
    ) -> Self {
        self.latency.push(LatencyTrigger {
            stage: stage.into(),
            quantile,
            threshold_ns: u64::try_from(threshold.as_nanos()).unwrap_or(u64::MAX),
        });
        self
    }

    /// The sliding window latency triggers judge over (default 1 s).
    pub fn latency_over(mut self, over: Duration) -> Self {
        self.latency_over = over;
        self
    }

    /// Dumps when a worker queue stays backed up for `duration`: it reached its capacity and
    /// has not drained to half of it since (producers wait at capacity; the dips between are
    /// the same incident).
    pub fn when_queue_full_for(mut self, duration: Duration) -> Self {
        self.queue_full_for = Some(duration);
        self
    }

    /// Dumps when a stage panics (the runner catches and counts the panic).
    pub fn on_stage_panic(mut self, on: bool) -> Self {
        self.on_panic = on;
        self
    }

    /// Dumps when the process receives `SIGUSR2` (`kill -USR2 <pid>`; Linux). The signal's
    /// previous disposition comes back when the session ends.
    pub fn on_signal(mut self, on: bool) -> Self {
        self.on_signal = on;
        self
    }

    /// Also dumps when the session finishes.
    pub fn on_exit(mut self, on: bool) -> Self {
        self.on_exit = on;
        self
    }

    /// The window asked for.
    pub fn window(&self) -> Duration {
        self.window
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.window.is_zero() {
            return Err(Error::InvalidConfig("the flight recorder's window must be longer than 0"));
        }
        if self.max_bytes < 1 << 20 {
            return Err(Error::InvalidConfig(
                "the flight recorder needs at least 1 MiB (`max_bytes`)",
            ));
        }
        if self.latency.iter().any(|t| !(t.quantile > 0.0 && t.quantile <= 1.0)) {
            return Err(Error::InvalidConfig(
                "a latency trigger's quantile must be above 0 and at most 1",
            ));
        }
        if self.on_signal && !cfg!(target_os = "linux") {
            return Err(Error::InvalidConfig("dumping on SIGUSR2 is supported on Linux only"));
        }
        Ok(())
    }
}

/// Why a flight recorder dump was written.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub enum DumpTrigger {
    /// The program asked ([`ProfilingSession::dump`](crate::ProfilingSession::dump)).
    OnDemand {
        /// The reason it gave.
        reason: String,
    },
    /// The process received `SIGUSR2`.
    Signal,
    /// A stage's call time at a quantile was above its threshold.
    Latency {
        /// The stage.
        stage: String,
        /// The quantile judged (0.99 for p99).
        quantile: f64,
        /// What it was over the sliding window, in nanoseconds.
        observed_ns: u64,
        /// The threshold, in nanoseconds.
        threshold_ns: u64,
    },
    /// A stage panicked.
    StagePanicked {
        /// The stage.
        stage: String,
    },
    /// A worker queue stayed full this long.
    QueueFull {
        /// How long it had been full, in nanoseconds.
        for_ns: u64,
    },
    /// The session finished.
    Exit,
}

impl DumpTrigger {
    /// The trigger as the dump's file name says it: `latency-FraudStage`, `queue-full`...
    pub fn slug(&self) -> String {
        let text = match self {
            DumpTrigger::OnDemand { reason } if reason.is_empty() => "on-demand".to_owned(),
            DumpTrigger::OnDemand { reason } => format!("on-demand-{reason}"),
            DumpTrigger::Signal => "signal".to_owned(),
            DumpTrigger::Latency { stage, .. } => format!("latency-{stage}"),
            DumpTrigger::StagePanicked { stage } => format!("panic-{stage}"),
            DumpTrigger::QueueFull { .. } => "queue-full".to_owned(),
            DumpTrigger::Exit => "exit".to_owned(),
        };
        // Safe in a file name everywhere; at most 60 characters.
        text.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .take(60)
            .collect()
    }
}

impl std::fmt::Display for DumpTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |ns: u64| ns as f64 / 1e6;
        match self {
            DumpTrigger::OnDemand { reason } if reason.is_empty() => write!(f, "asked for"),
            DumpTrigger::OnDemand { reason } => write!(f, "asked for: {reason}"),
            DumpTrigger::Signal => write!(f, "SIGUSR2"),
            DumpTrigger::Latency { stage, quantile, observed_ns, threshold_ns } => write!(
                f,
                "{stage} p{} {:.2} ms > {:.2} ms",
                quantile * 100.0,
                ms(*observed_ns),
                ms(*threshold_ns)
            ),
            DumpTrigger::StagePanicked { stage } => write!(f, "{stage} panicked"),
            DumpTrigger::QueueFull { for_ns } => write!(f, "queue full for {:.0} ms", ms(*for_ns)),
            DumpTrigger::Exit => write!(f, "session finished"),
        }
    }
}

/// A flight recorder dump that was written.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct FlightDump {
    /// The Chrome trace file.
    pub path: PathBuf,
    /// Why.
    pub trigger: DumpTrigger,
    /// When the trigger fired.
    pub triggered_at: SystemTime,
    /// How far before the trigger the file holds everything recorded (the window, or less
    /// when `max_bytes` could not hold it, or since the session or the last dump began).
    pub complete_before_trigger: Duration,
    /// How far after the trigger it goes (the tail).
    pub after_trigger: Duration,
    /// Slices and instants in it.
    pub slices: u64,
    /// How long writing it took.
    pub write_time: Duration,
    /// The CPU time writing it took (formatting and the system's file writes): what it cost
    /// the workers on a machine they keep busy.
    pub cpu_time: Duration,
}

/// What the report says about the flight recorder.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct FlightSummary {
    /// The window asked for.
    pub window: Duration,
    /// Its memory bound, in bytes.
    pub max_bytes: usize,
    /// The dumps written, in order.
    pub dumps: Vec<FlightDump>,
    /// Triggers that fired during a cooldown (or while a dump was being written): no file.
    pub triggers_in_cooldown: u64,
    /// Dumps that could not be written, with why.
    pub failed: Vec<String>,
    /// Spans (and instants, counter samples) the recorder could not keep because no buffer was
    /// free: 0 unless the writer stalled or `max_bytes` is far too small for the rate.
    pub spans_left_out: u64,
}

/// The dumps of the running (or last) session, for the metrics endpoint.
static PUBLISHED: Mutex<Vec<FlightDump>> = Mutex::new(Vec::new());

/// The dumps the flight recorder of the running (or last) session wrote, in order.
#[cfg(feature = "prometheus")]
pub(crate) fn dumps_written() -> Vec<FlightDump> {
    PUBLISHED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_a_safe_trigger() {
        let trigger = DumpTrigger::Latency {
            stage: "my crate::Fraud<Stage>".into(),
            quantile: 0.99,
            observed_ns: 7_000_000,
            threshold_ns: 5_000_000,
        };
        assert_eq!(trigger.slug(), "latency-my_crate__Fraud_Stage_");
        assert_eq!(trigger.to_string(), "my crate::Fraud<Stage> p99 7.00 ms > 5.00 ms");
    }

    #[test]
    fn nonsense_settings_are_errors_naming_the_setting() {
        let zero = FlightRecorder::new(Duration::ZERO).validate().unwrap_err();
        assert!(zero.to_string().contains("window"), "{zero}");
        let small = FlightRecorder::new(Duration::from_secs(1)).max_bytes(1000).validate();
        assert!(small.unwrap_err().to_string().contains("max_bytes"));
        let quantile = FlightRecorder::new(Duration::from_secs(1))
            .when_quantile_over("S", 1.5, Duration::from_millis(1))
            .validate();
        assert!(quantile.unwrap_err().to_string().contains("quantile"));
    }
}
