//! The runs that finished while a profiling session recorded: how a run reaches the session's
//! report without the worker pool knowing of the profiler.

use std::sync::{Mutex, PoisonError};

use super::RunSummary;

/// Concurrent runs that finished while a profiling session recorded, with that session's id:
/// how a run reaches the session's report without the worker pool knowing of the profiler.
static FINISHED: Mutex<Vec<(u64, RunSummary)>> = Mutex::new(Vec::new());

/// Hands a finished run (`run_concurrent`, `WorkerPool`) to the profiling session recording
/// now, if one is.
pub(crate) fn finished(summary: &RunSummary) {
    if !crate::mode::is_enabled() {
        return;
    }
    let session = crate::mode::current_session();
    FINISHED.lock().unwrap_or_else(PoisonError::into_inner).push((session, summary.clone()));
}

/// The runs that finished during `session`.
pub(crate) fn finished_in(session: u64) -> Vec<RunSummary> {
    let runs = FINISHED.lock().unwrap_or_else(PoisonError::into_inner);
    runs.iter().filter(|(s, _)| *s == session).map(|(_, run)| run.clone()).collect()
}

/// Forgets the runs of `session` (its report has been taken, or it was dropped).
pub(crate) fn forget_finished(session: u64) {
    FINISHED.lock().unwrap_or_else(PoisonError::into_inner).retain(|(s, _)| *s != session);
}
