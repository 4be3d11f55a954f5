//! The toolkit's own errors (a stage's errors are [`StageError`](crate::StageError)s).

use std::io;
use std::path::PathBuf;

/// What can go wrong while setting up, running or reporting a profile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `Profiler::start` was called while another profiling session was still running.
    #[error("a profiler is already running in this process: call `finish()` on it (or drop it) before starting another")]
    AlreadyProfiling,
    /// A setting makes no sense; the message says which and why.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The metrics endpoint (`Profiler::serve_metrics`) could not listen on its address.
    #[error("cannot serve metrics on `{address}`: {reason}")]
    Metrics {
        /// The address asked for.
        address: String,
        /// Why (the address is taken, malformed, not allowed...).
        reason: String,
    },
    /// CPU sampling (`Profiler::sample_cpu`) could not start: the rate is out of range, the
    /// platform has no sampler, or the SIGPROF handler or timer could not be set up.
    #[error("cannot sample the CPU: {0}")]
    CpuSampling(String),
    /// A thread could not be started.
    #[error("cannot start a thread for {what}: {source}")]
    Spawn {
        /// Which thread.
        what: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A worker thread died outside any stage (stage panics are caught and counted instead).
    #[error("worker thread `{worker}` panicked outside any stage")]
    WorkerPanicked {
        /// The worker's thread name.
        worker: String,
    },
    /// `trace::layer()` was called twice: tracing-chrome supports one layer per process.
    #[error("the Chrome trace layer already exists in this process: call `pipeline::trace::layer()` once and keep that layer in your subscriber")]
    TraceLayerExists,
    /// `chrome_trace` needs to install a tracing subscriber, but the program already set one.
    #[error("a global tracing subscriber is already set, so the Chrome trace layer cannot be installed: add `pipeline::trace::layer()` to your subscriber (`registry().with(pipeline::trace::layer()?)`) before starting the profiler")]
    SubscriberTaken,
    /// No baseline file where one was expected.
    #[error("no benchmark baseline at `{}`: record one first (on main) with `result.save_baseline(\"{}\")`", path.display(), path.display())]
    BaselineMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A baseline file that cannot be read as one.
    #[error("`{}` is not a usable benchmark baseline: {reason}", path.display())]
    BaselineInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A baseline written by another version of the format.
    #[error("benchmark baseline `{}` has format version {found}, this build reads version {supported}: record it again with `replace_baseline`", path.display())]
    BaselineVersion {
        /// The file.
        path: PathBuf,
        /// The version it has.
        found: String,
        /// The version this build reads.
        supported: u32,
    },
    /// `save_baseline` would have replaced a file.
    #[error("benchmark baseline `{}` already exists: nothing was overwritten; call `replace_baseline` to replace it", path.display())]
    BaselineExists {
        /// The file.
        path: PathBuf,
    },
    /// A benchmark build given to a paired comparison (`Bench::paired`, `pipeline-prof
    /// paired`) could not be run or did not answer as a benchmark built with `Bench::main` does.
    #[error("paired benchmark: `{program}` {reason}")]
    PairedBench {
        /// The program, as it was started.
        program: String,
        /// What went wrong, and what to do.
        reason: String,
    },
    /// A file could not be written.
    #[error("cannot write the {what} to `{}`: {source}", path.display())]
    Write {
        /// What was being written ("report", "trace", ...).
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A file could not be read.
    #[error("cannot read the {what} `{}`: {source}", path.display())]
    Read {
        /// What was being read ("trace or report", ...).
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A file that holds neither a Chrome trace nor a saved report.
    #[error("`{}` is not a Chrome trace or a pipeline report: {reason}", path.display())]
    NotAProfile {
        /// The file.
        path: PathBuf,
        /// What it holds instead.
        reason: String,
    },
}
