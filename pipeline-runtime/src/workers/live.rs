//! What a running pool shows while it runs (for the metrics endpoint): per-worker and per-stage
//! counters the workers keep with relaxed atomics, each worker on its own cache line, read
//! without any lock the workers take.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::intake::Intake;
use crate::stage::StopKind;

/// One running `run_concurrent` or `WorkerPool`.
pub(crate) struct LiveRun {
    /// Distinguishes runs in labels (`run="3"`).
    pub(crate) id: u64,
    intake: Arc<Intake>,
    workers: Vec<LiveWorker>,
    stages: Vec<LiveStage>,
}

/// One worker's counters; written only by that worker (a load and a store, no locked
/// instruction), read by scrapes.
#[repr(align(64))]
struct LiveWorker {
    name: String,
    picked: AtomicU64,
    events: AtomicU64,
    busy_ns: AtomicU64,
    in_stage_ns: AtomicU64,
    idle_ns: AtomicU64,
}

/// One stage's stopped events (shared by the workers: written only when an event stops).
#[derive(Default)]
struct LiveStage {
    name: String,
    rejected: AtomicU64,
    /// Panics included.
    failed: AtomicU64,
    filtered: AtomicU64,
}

/// A worker's figures as a scrape reads them.
#[derive(Clone, Debug, Default)]
pub(crate) struct WorkerFigures {
    pub(crate) name: String,
    pub(crate) events: u64,
    pub(crate) busy_ns: u64,
    pub(crate) in_stage_ns: u64,
    pub(crate) idle_ns: u64,
}

/// A stage's stopped events as a scrape reads them.
#[derive(Clone, Debug, Default)]
pub(crate) struct StageFigures {
    pub(crate) name: String,
    pub(crate) rejected: u64,
    pub(crate) failed: u64,
    pub(crate) filtered: u64,
}

/// A running run's figures as a scrape reads them.
#[derive(Clone, Debug, Default)]
pub(crate) struct RunFigures {
    pub(crate) id: u64,
    pub(crate) capacity: usize,
    pub(crate) submitted: u64,
    /// Events accepted and not yet taken by a worker.
    pub(crate) depth: u64,
    pub(crate) workers: Vec<WorkerFigures>,
    pub(crate) stages: Vec<StageFigures>,
}

/// Runs running now (weak: a run that ended disappears).
static RUNS: Mutex<Vec<Weak<LiveRun>>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Adds one to a counter only this thread writes.
#[inline]
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

impl LiveRun {
    /// A run's counters, registered for scrapes until the returned `Arc`'s last clone drops.
    pub(super) fn register(
        intake: Arc<Intake>,
        worker_names: impl Iterator<Item = String>,
        stage_names: &[String],
    ) -> Arc<LiveRun> {
        let run = Arc::new(LiveRun {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            intake,
            workers: worker_names
                .map(|name| LiveWorker {
                    name,
                    picked: AtomicU64::new(0),
                    events: AtomicU64::new(0),
                    busy_ns: AtomicU64::new(0),
                    in_stage_ns: AtomicU64::new(0),
                    idle_ns: AtomicU64::new(0),
                })
                .collect(),
            stages: stage_names
                .iter()
                .map(|name| LiveStage { name: name.clone(), ..LiveStage::default() })
                .collect(),
        });
        let mut runs = RUNS.lock().unwrap_or_else(PoisonError::into_inner);
        runs.retain(|run| run.strong_count() > 0);
        runs.push(Arc::downgrade(&run));
        run
    }

    /// Worker `index` took an event off the queue.
    #[inline]
    pub(crate) fn picked(&self, index: usize) {
        if let Some(worker) = self.workers.get(index) {
            bump(&worker.picked, 1);
        }
    }

    /// Worker `index` finished an event.
    #[inline]
    pub(crate) fn finished(&self, index: usize, busy_ns: u64, in_stage_ns: u64, idle_ns: u64) {
        if let Some(worker) = self.workers.get(index) {
            bump(&worker.events, 1);
            bump(&worker.busy_ns, busy_ns);
            bump(&worker.in_stage_ns, in_stage_ns);
            bump(&worker.idle_ns, idle_ns);
        }
    }

    /// An event stopped (or was filtered) in stage `index`.
    pub(crate) fn stopped(&self, index: usize, how: StopKind) {
        if let Some(stage) = self.stages.get(index) {
            let counter = match how {
                StopKind::Rejected => &stage.rejected,
                StopKind::Failed => &stage.failed,
                StopKind::Filtered => &stage.filtered,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn figures(&self) -> RunFigures {
        let submitted = self.intake.submitted();
        let picked: u64 = self.workers.iter().map(|w| w.picked.load(Ordering::Relaxed)).sum();
        RunFigures {
            id: self.id,
            capacity: self.intake.capacity(),
            submitted,
            depth: submitted.saturating_sub(picked),
            workers: self
                .workers
                .iter()
                .map(|w| WorkerFigures {
                    name: w.name.clone(),
                    events: w.events.load(Ordering::Relaxed),
                    busy_ns: w.busy_ns.load(Ordering::Relaxed),
                    in_stage_ns: w.in_stage_ns.load(Ordering::Relaxed),
                    idle_ns: w.idle_ns.load(Ordering::Relaxed),
                })
                .collect(),
            stages: self
                .stages
                .iter()
                .map(|s| StageFigures {
                    name: s.name.clone(),
                    rejected: s.rejected.load(Ordering::Relaxed),
                    failed: s.failed.load(Ordering::Relaxed),
                    filtered: s.filtered.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

/// The figures of every run running now.
pub(crate) fn running() -> Vec<RunFigures> {
    let runs: Vec<Arc<LiveRun>> = {
        let runs = RUNS.lock().unwrap_or_else(PoisonError::into_inner);
        runs.iter().filter_map(Weak::upgrade).collect()
    };
    runs.iter().map(|run| run.figures()).collect()
}
