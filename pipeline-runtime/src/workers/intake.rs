//! A run's intake, the same for every way of running: opening it (settings, queue, figures,
//! live counters), submitting one event, sampling the queue's depth, and summing the run up.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::live::LiveRun;
use super::worker::worker_name;
use super::WorkerConfig;
use crate::clock::{machine_cpu_ticks, now_ns, process_cpu_ns};
use crate::error::Error;
use crate::queue::{self, QueueReceiver as Receiver, QueueSender as Sender};
use crate::run::{self, QueueStats, RunSummary, RunTotals, WorkerLoad};
use crate::trace_records::{self, CounterTrack, Submission};

/// An event in the queue, numbered and stamped when it arrived.
pub(super) struct Envelope<In> {
    pub(super) id: u64,
    pub(super) event: In,
    pub(super) arrived_ns: u64,
    /// The trace's arrow from its submission to its slice (0: not traced).
    pub(super) flow: u64,
    /// The span current where it was submitted, when spans are emitted: the worker's `event`
    /// span is its child, so one request is one trace across threads.
    pub(super) parent: Option<tracing::Span>,
}

/// What producers and the sampler share: the queue's figures (atomics, one update per submission).
pub(super) struct Intake {
    started_ns: u64,
    /// The process's CPU time when the run began.
    cpu_at_start_ns: u64,
    /// The whole machine's CPU ticks (busy, total) when the run began, where the system says.
    machine_at_start: Option<(u64, u64)>,
    capacity: usize,
    submitted: AtomicU64,
    next_id: AtomicU64,
    last_arrival_ns: AtomicU64,
    max_depth: AtomicUsize,
    /// 0 until the queue first fills; then the time, plus one.
    first_full: AtomicU64,
    pub(super) stop_sampling: AtomicBool,
}

impl Intake {
    pub(super) fn new(capacity: usize) -> Self {
        Intake {
            started_ns: now_ns(),
            cpu_at_start_ns: process_cpu_ns(),
            machine_at_start: machine_cpu_ticks(),
            capacity,
            submitted: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            last_arrival_ns: AtomicU64::new(0),
            max_depth: AtomicUsize::new(0),
            first_full: AtomicU64::new(0),
            stop_sampling: AtomicBool::new(false),
        }
    }

    /// Books an accepted event; `depth` is the queue's length just after it went in.
    pub(super) fn accepted(&self, arrived_ns: u64, depth: usize) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
        self.last_arrival_ns.fetch_max(arrived_ns, Ordering::Relaxed);
        self.max_depth.fetch_max(depth, Ordering::Relaxed);
        if depth >= self.capacity {
            self.reached_capacity();
        }
    }

    /// Events accepted so far.
    pub(super) fn submitted(&self) -> u64 {
        self.submitted.load(Ordering::Relaxed)
    }

    /// The queue's capacity.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Marks the first moment the queue was full (an instant event in the trace).
    pub(super) fn reached_capacity(&self) {
        let at = now_ns().saturating_sub(self.started_ns) + 1;
        if self.first_full.compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            trace_records::queue_full(self.capacity);
        }
    }

    pub(super) fn totals(&self, samples: Vec<(u64, usize)>) -> RunTotals {
        let wall_time_ns = now_ns().saturating_sub(self.started_ns);
        let feed_time_ns =
            self.last_arrival_ns.load(Ordering::Relaxed).saturating_sub(self.started_ns);
        let (trend, trend_per_sec) = run::trend(&samples, feed_time_ns, self.capacity);
        RunTotals {
            submitted: self.submitted.load(Ordering::Relaxed),
            wall_time_ns,
            process_cpu_ns: process_cpu_ns().saturating_sub(self.cpu_at_start_ns),
            machine_cpu_busy: self.machine_at_start.zip(machine_cpu_ticks()).and_then(
                |((busy_then, total_then), (busy, total))| {
                    let elapsed = total.saturating_sub(total_then);
                    (elapsed > 0).then(|| busy.saturating_sub(busy_then) as f64 / elapsed as f64)
                },
            ),
            feed_time_ns,
            queue: QueueStats {
                capacity: self.capacity,
                max_depth: self.max_depth.load(Ordering::Relaxed),
                first_full_at_ns: match self.first_full.load(Ordering::Relaxed) {
                    0 => None,
                    at => Some(at - 1),
                },
                samples,
                trend,
                trend_per_sec,
            },
        }
    }

    /// A `try_submit` found the queue full: it has reached capacity.
    pub(super) fn accepted_full_attempt(&self) {
        self.max_depth.fetch_max(self.capacity, Ordering::Relaxed);
        self.reached_capacity();
    }
}

/// What a run opens before its threads start, the same for both ways of running.
pub(super) struct Opened<In> {
    /// The pipeline's stages, then the sink (if any).
    pub(super) stage_names: Vec<String>,
    pub(super) sender: Sender<Envelope<In>>,
    pub(super) receiver: Receiver<Envelope<In>>,
    pub(super) intake: Arc<Intake>,
    /// Registered for the metrics endpoint until the last clone drops.
    pub(super) live: Arc<LiveRun>,
}

/// Checks the settings, then opens the queue, the intake's figures and the live counters for a
/// run whose slots (stages, then the sink) are `stage_names`.
pub(super) fn open<In>(
    stage_names: Vec<String>,
    workers: &WorkerConfig,
) -> Result<Opened<In>, Error> {
    let (intake, live) = open_run(&stage_names, workers)?;
    let (sender, receiver) = queue::bounded::<Envelope<In>>(workers.capacity);
    Ok(Opened { stage_names, sender, receiver, intake, live })
}

/// Checks the settings, then opens a run's intake figures and live counters (the queue is the
/// caller's: a thread pool's or an async one's).
pub(super) fn open_run(
    stage_names: &[String],
    workers: &WorkerConfig,
) -> Result<(Arc<Intake>, Arc<LiveRun>), Error> {
    workers.validate()?;
    let intake = Arc::new(Intake::new(workers.capacity));
    let live =
        LiveRun::register(Arc::clone(&intake), (0..workers.count).map(worker_name), stage_names);
    Ok((intake, live))
}

/// Offers one event to the queue through `send` (blocking or not): numbers it, opens its
/// submission slice (and the flow arrow to where it will run) in the trace, and books it once
/// the queue took it. What `send` refused comes back as its error, with the event.
pub(super) fn submit<In, R>(
    intake: &Intake,
    event: In,
    arrived_ns: u64,
    send: impl FnOnce(Envelope<In>) -> Result<usize, R>,
) -> Result<(), R> {
    let id = intake.next_id();
    let submission = Submission::begin(id);
    let flow = submission.flow;
    let parent = crate::mode::wants_spans().then(tracing::Span::current);
    let depth = send(Envelope { id, event, arrived_ns, flow, parent })?;
    submission.end();
    intake.accepted(arrived_ns, depth);
    Ok(())
}

/// Samples the queue's depth (`depth()` reads it) until told to stop.
pub(super) fn sample_depth(
    depth: impl Fn() -> usize,
    intake: &Intake,
    every: Duration,
) -> Vec<(u64, usize)> {
    let mut samples = Vec::new();
    while !intake.stop_sampling.load(Ordering::Relaxed) {
        let depth = depth();
        samples.push((now_ns().saturating_sub(intake.started_ns), depth));
        trace_records::mark_counter(CounterTrack::QueueDepth, depth as f64);
        crate::incidents::queue_sampled(depth, intake.capacity, now_ns());
        thread::sleep(every);
    }
    // Its samples outlive it (they go into the run's summary): its batched live-bytes change
    // must reach the heap figure.
    crate::alloc::flush_thread();
    samples
}

/// Sums up a run from its workers' loads and the queue's figures; `publish` hands it to the
/// profiling session recording now (a run that never started has nothing to report).
pub(super) fn sum_up(
    loads: Vec<WorkerLoad>,
    stage_names: &[String],
    intake: &Intake,
    queue_samples: Vec<(u64, usize)>,
    publish: bool,
) -> RunSummary {
    let summary = RunSummary::merge(loads, stage_names, intake.totals(queue_samples));
    if publish {
        run::finished(&summary);
    }
    summary
}
