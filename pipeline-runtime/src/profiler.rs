//! [`Profiler`]: switches recording on, and turns what was recorded into a [`Report`].

use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock::now_ns;
use crate::error::Error;
use crate::recorder;
use crate::report::{self, Report};

/// Whether a [`ProfilingSession`] exists; only one may at a time.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Configures a profiling session; [`start`](Profiler::start) begins it.
///
/// Until a session starts, instrumented stages and functions cost one relaxed atomic load per
/// call and record nothing.
///
/// ```
/// let session = pipeline_runtime::Profiler::new().start()?;
/// // ... run the pipeline ...
/// let report = session.finish()?;
/// assert!(report.stages.is_empty());
/// # Ok::<(), pipeline_runtime::Error>(())
/// ```
#[derive(Debug, Default)]
#[must_use = "a profiler records nothing until `start()` is called"]
pub struct Profiler {
    _private: (),
}

impl Profiler {
    /// A profiler with the default settings.
    pub fn new() -> Self {
        Profiler::default()
    }

    /// Starts recording every instrumented call, on every thread.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyProfiling`] if another session is running in this process.
    pub fn start(self) -> Result<ProfilingSession, Error> {
        if RUNNING.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyProfiling);
        }
        let session = recorder::begin_session();
        Ok(ProfilingSession {
            session,
            started_ns: now_ns(),
        })
    }
}

/// A running profile. [`finish`](Self::finish) stops it and returns the [`Report`]; dropping it
/// stops it too.
#[derive(Debug)]
#[must_use = "dropping the session stops profiling at once"]
pub struct ProfilingSession {
    session: u64,
    started_ns: u64,
}

impl ProfilingSession {
    /// The figures recorded so far, without stopping.
    pub fn report(&self) -> Report {
        let rows = recorder::collect(self.session);
        report::build(rows, now_ns().saturating_sub(self.started_ns))
    }

    /// Stops recording and returns what was measured.
    ///
    /// # Errors
    ///
    /// None yet; later outputs (trace files) report their write errors here.
    pub fn finish(self) -> Result<Report, Error> {
        recorder::end_session();
        Ok(self.report())
    }
}

impl Drop for ProfilingSession {
    fn drop(&mut self) {
        recorder::end_session();
        RUNNING.store(false, Ordering::Release);
    }
}
