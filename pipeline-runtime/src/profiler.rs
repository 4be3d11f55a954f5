//! [`Profiler`]: switches recording on, and turns what was recorded into a [`Report`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::alloc::{self, AllocatorKind, Heap};
use crate::clock::now_ns;
use crate::error::Error;
use crate::load::RunSummary;
use crate::recorder;
use crate::report::{self, HeapReadings, Report};

/// Whether a [`ProfilingSession`] exists; only one may at a time.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Concurrent runs that finished while a session was running, with that session's id.
static RUNS: Mutex<Vec<(u64, RunSummary)>> = Mutex::new(Vec::new());

/// Adds a finished concurrent run to the running session's report (if a session runs).
pub(crate) fn record_run(summary: &RunSummary) {
    if !RUNNING.load(Ordering::Acquire) {
        return;
    }
    let session = recorder::current_session();
    RUNS.lock().unwrap_or_else(PoisonError::into_inner).push((session, summary.clone()));
}

fn runs_of(session: u64) -> Vec<RunSummary> {
    let runs = RUNS.lock().unwrap_or_else(PoisonError::into_inner);
    runs.iter().filter(|(s, _)| *s == session).map(|(_, run)| run.clone()).collect()
}

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
        let allocator = alloc::installed_allocator();
        let heap_at_start = heap_now(allocator);
        if allocator == AllocatorKind::Counting {
            alloc::reset_peak(); // the run's peak, not the process's
        }
        let session = recorder::begin_session();
        Ok(ProfilingSession { session, started_ns: now_ns(), allocator, heap_at_start })
    }
}

/// A running profile. [`finish`](Self::finish) stops it and returns the [`Report`]; dropping it
/// stops it too.
#[derive(Debug)]
#[must_use = "dropping the session stops profiling at once"]
pub struct ProfilingSession {
    session: u64,
    started_ns: u64,
    allocator: AllocatorKind,
    heap_at_start: Option<Heap>,
}

/// The heap now, from whichever counting allocator is installed.
fn heap_now(allocator: AllocatorKind) -> Option<Heap> {
    match allocator {
        AllocatorKind::Counting => Some(alloc::heap()),
        AllocatorKind::StatsAllocInstrumentedSystem => {
            let stats = stats_alloc::INSTRUMENTED_SYSTEM.stats();
            let live = stats.bytes_allocated.saturating_sub(stats.bytes_deallocated) as u64;
            Some(Heap { live_bytes: live, peak_bytes: live, profiler_bytes: 0 })
        }
        AllocatorKind::None => None,
    }
}

impl ProfilingSession {
    /// The figures recorded so far, without stopping.
    pub fn report(&self) -> Report {
        let wall_time_ns = now_ns().saturating_sub(self.started_ns);
        let heap = HeapReadings {
            allocator: self.allocator,
            at_start: self.heap_at_start,
            at_end: heap_now(self.allocator),
        };
        let rows = recorder::collect(self.session);
        let mut report = report::build(rows, wall_time_ns, heap);
        report.runs = runs_of(self.session);
        report
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
        RUNS.lock().unwrap_or_else(PoisonError::into_inner).retain(|(s, _)| *s != self.session);
        RUNNING.store(false, Ordering::Release);
    }
}
