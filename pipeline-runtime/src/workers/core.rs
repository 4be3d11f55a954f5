//! What both ways of running share: the envelope an event travels in, the intake's figures,
//! submitting one event, the worker loop, the queue sampler, and summing up a run.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use super::live::LiveRun;
use super::WorkerConfig;
use crate::__private::run_stage;
use crate::callsite::Callsite;
use crate::clock::{machine_cpu_ticks, now_ns, process_cpu_ns, thread_cpu_ns};
use crate::error::Error;
use crate::pipeline::{panic_message, Outcome, Pipeline, Stop};
use crate::queue::{self, QueueReceiver as Receiver, QueueSender as Sender};
pub(super) use crate::run::SlotTimes;
use crate::run::{
    self, BookedStop, Failure, QueueStats, RunSummary, RunTotals, WorkerLoad, WorkerTimes,
};
use crate::sink::Sink;
use crate::stage::{StageError, StopKind};
use crate::trace_records::{self, CounterTrack, EventSlice, StopMark, Submission};

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
}

pub(super) fn worker_name(index: usize) -> String {
    format!("worker-{index}")
}

/// Where a worker hands each completed event's output: a [`Sink`], measured like a stage in the
/// slot after the pipeline's stages, or nowhere (the output is dropped, under a guard).
pub(super) struct Delivery<'a, Out> {
    /// The sink, its call site, and its name for stops.
    sink: Option<(&'a (dyn Sink<Out> + 'a), &'static Callsite, Arc<str>)>,
    /// The sink's slot: the number of stages.
    index: usize,
}

impl<'a, Out> Delivery<'a, Out> {
    /// Outputs of a pipeline of `stages` stages go to `sink` (or are dropped without one).
    pub(super) fn new(sink: Option<&'a (dyn Sink<Out> + 'a)>, stages: usize) -> Self {
        let sink =
            sink.map(|sink| (sink, Callsite::named_stage(sink.name()), Arc::from(sink.name())));
        Delivery { sink, index: stages }
    }

    /// The slots a worker times: the stages, and the sink if there is one.
    pub(super) fn slots(&self) -> usize {
        self.index + usize::from(self.sink.is_some())
    }

    /// The sink's slot, if there is a sink.
    #[cfg(feature = "tokio")]
    pub(super) fn sink_slot(&self) -> Option<usize> {
        self.sink.is_some().then_some(self.index)
    }

    /// Hands `output` over: to the sink (timed into its slot, a panic caught), or dropped.
    pub(super) fn deliver(&self, output: Out, stage_ns: &mut [u64]) -> Outcome<()> {
        let Some((sink, site, name)) = &self.sink else {
            // What the stages hand back is dropped under a guard: an event whose `Drop` panics
            // must not take the worker (and the events behind it) down.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(output)));
            return Outcome::Passed(());
        };
        let started = now_ns();
        let accepted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_stage(site, tracing::Span::none, || sink.accept(output))
        }))
        .unwrap_or_else(|payload| Err(StageError::Panicked { message: panic_message(&*payload) }));
        stage_ns[self.index] = now_ns().saturating_sub(started);
        match accepted {
            Ok(_) => Outcome::Passed(()),
            Err(error) => Outcome::Stopped(Stop::new(self.index, Arc::clone(name), error)),
        }
    }
}

/// Names of a run's slots: the pipeline's stages, then the sink's.
pub(super) fn slot_names<In, Out>(
    pipeline: &Pipeline<In, Out>,
    sink: Option<&dyn Sink<Out>>,
) -> Vec<String> {
    let stages = pipeline.stage_names().map(str::to_owned);
    stages.chain(sink.map(|sink| sink.name().to_owned())).collect()
}

/// One worker: pull events until the queue is closed and empty, run each through the pipeline
/// and hand its output over. Each event is booked in `load` (its own lock, taken once per event
/// and by nobody else while the worker runs), so what a worker did is never lost: not if it
/// dies, not if `join_timeout` gives up on it.
pub(super) fn work<In, Out>(
    pipeline: &Pipeline<In, Out>,
    delivery: &Delivery<'_, Out>,
    queue: &Receiver<Envelope<In>>,
    load: &Mutex<WorkerLoad>,
    seat: &Seat,
) {
    let cpu_at_start_ns = thread_cpu_ns();
    let mut stage_ns = vec![0; delivery.slots()];
    let mut clock = WorkerClock::default();
    while let Some((Envelope { id, event, arrived_ns, flow, parent }, waited_ns)) = queue.next() {
        let picked = clock.picked(seat, arrived_ns, waited_ns);
        // The event's slice in the trace: its stages are nested inside. Sampling: only one
        // event in N goes into the trace (whole).
        let slice = EventSlice::begin(id, picked.wait_ns, flow, picked.at_ns, parent.as_ref());
        stage_ns.fill(0);
        let outcome = match pipeline.run_isolated(event, &mut stage_ns).stopped() {
            Ok(output) => delivery.deliver(output, &mut stage_ns),
            Err(stop) => stop,
        };
        let done_ns = now_ns();
        mark_outcome(id, &outcome, pipeline.stage_names());
        drop(slice);
        // Synchronous stages hold their thread throughout: busy time is wall time.
        let times = SlotTimes { wall_ns: &stage_ns, busy_ns: &stage_ns, ready_ns: None };
        book(outcome, &picked, done_ns, times, load, seat);
    }
    // Once per worker, not per event: reading a thread's CPU clock is a system call.
    let cpu_ns = thread_cpu_ns().saturating_sub(cpu_at_start_ns);
    load.lock().unwrap_or_else(PoisonError::into_inner).thread_cpu_ns = Some(cpu_ns);
}

/// A worker's clock: its time counts from its first event, since waiting for the run to begin
/// (the other threads starting, a pool with no traffic yet) is not idleness under load.
#[derive(Default)]
pub(super) struct WorkerClock {
    first_picked_ns: Option<u64>,
}

/// An event a worker just took from the queue.
pub(super) struct Picked {
    /// When the worker took it.
    pub(super) at_ns: u64,
    /// How long it waited in the queue.
    pub(super) wait_ns: u64,
    /// How long the worker waited for it on an empty queue (0 for its first event).
    idle_ns: u64,
    /// When the worker took its first event.
    started_ns: u64,
}

impl WorkerClock {
    /// Worker `seat` took an event that arrived at `arrived_ns`, after waiting `waited_ns` on an
    /// empty queue.
    pub(super) fn picked(&mut self, seat: &Seat, arrived_ns: u64, waited_ns: u64) -> Picked {
        let at_ns = now_ns();
        let started_ns = *self.first_picked_ns.get_or_insert(at_ns);
        let idle_ns = if started_ns == at_ns { 0 } else { waited_ns };
        seat.run.picked(seat.index);
        Picked { at_ns, wait_ns: at_ns.saturating_sub(arrived_ns), idle_ns, started_ns }
    }
}

/// An instant event in the trace where event `id` was stopped (none when it passed).
pub(super) fn mark_outcome<'a>(
    id: u64,
    outcome: &Outcome<()>,
    mut stage_names: impl Iterator<Item = &'a str>,
) {
    match outcome {
        Outcome::Passed(()) => {}
        Outcome::Filtered { stage_index } => {
            let stage = stage_names.nth(*stage_index).unwrap_or_default();
            trace_records::mark_stop(id, stage, &StopMark::Filtered);
        }
        Outcome::Stopped(stop) => mark_stop(id, stop),
    }
}

/// Books a processed event into the worker's load and the run's live counters: how it ended,
/// its queue wait, each slot's times, the worker's time.
pub(super) fn book(
    outcome: Outcome<()>,
    picked: &Picked,
    done_ns: u64,
    stage: SlotTimes<'_>,
    load: &Mutex<WorkerLoad>,
    seat: &Seat,
) {
    let stopped = match outcome {
        Outcome::Passed(()) => None,
        Outcome::Filtered { stage_index } => {
            Some(BookedStop { stage_index, kind: StopKind::Filtered, failure: None })
        }
        Outcome::Stopped(stop) => Some(stopped_by(stop)),
    };
    if let Some(stopped) = &stopped {
        seat.run.stopped(stopped.stage_index, stopped.kind);
    }
    let in_stage_ns: u64 = stage.wall_ns.iter().sum();
    let service_ns = done_ns.saturating_sub(picked.at_ns);
    seat.run.finished(seat.index, service_ns, in_stage_ns, picked.idle_ns);
    let mut load = load.lock().unwrap_or_else(PoisonError::into_inner);
    let times = WorkerTimes {
        service_ns,
        in_stage_ns,
        in_stage_busy_ns: stage.busy_ns.iter().sum(),
        idle_ns: picked.idle_ns,
        running_ns: done_ns.saturating_sub(picked.started_ns),
    };
    load.record(picked.wait_ns, &stage, times, stopped);
}

/// How a stopped event is booked: where, how, and for failures the message (rendered under a
/// guard, since it runs the stage's own `Display`); the stop itself is dropped under a guard.
fn stopped_by(stop: Stop) -> BookedStop {
    let failure = match stop.error() {
        StageError::Rejected { .. } => None,
        StageError::Panicked { message } => Some(Failure {
            panicked: true,
            message: trace_records::bounded_text(message).into_owned(),
        }),
        error => Some(Failure {
            panicked: false,
            message: trace_records::guarded_text(|| error.to_string()),
        }),
    };
    let stopped =
        BookedStop { stage_index: stop.stage_index(), kind: stop.error().kind(), failure };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(stop)));
    stopped
}

/// A worker's place in its run's live counters.
pub(super) struct Seat {
    pub(super) run: Arc<LiveRun>,
    pub(super) index: usize,
}

/// A worker's load, shared with the pool that reads it at the end.
pub(super) type SharedLoad = Arc<Mutex<WorkerLoad>>;

/// Takes what a worker booked so far, leaving it an empty load for the same stages (a worker
/// that `join_timeout` gave up on may still finish its event later).
pub(super) fn take_load(load: &SharedLoad, stage_names: &[String]) -> WorkerLoad {
    let mut load = load.lock().unwrap_or_else(PoisonError::into_inner);
    let empty = WorkerLoad::new(load.name.clone(), stage_names);
    std::mem::replace(&mut *load, empty)
}

/// An instant event in the trace where an event was stopped.
fn mark_stop(id: u64, stop: &Stop) {
    let mark = match stop.error() {
        StageError::Rejected { reason } => StopMark::Rejected { reason },
        StageError::Panicked { message } => {
            crate::incidents::stage_panicked(stop.stage());
            StopMark::Panicked { message }
        }
        error => StopMark::Failed { error },
    };
    trace_records::mark_stop(id, stop.stage(), &mark);
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

pub(super) fn spawn_error(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Spawn { what, source }
}

impl Intake {
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

/// A new worker's load for `stage_names`, shared between the worker and whoever sums up the run.
pub(super) fn new_load(index: usize, stage_names: &[String]) -> SharedLoad {
    Arc::new(Mutex::new(WorkerLoad::new(worker_name(index), stage_names)))
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
