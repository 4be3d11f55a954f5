//! One worker: the loop that takes events off the queue and runs each through the pipeline (and
//! hands its output to the sink), and how it books each event into its load and the trace.

use std::sync::{Arc, Mutex, PoisonError};

use super::intake::Envelope;
use super::live::LiveRun;
use crate::__private::run_stage;
use crate::callsite::Callsite;
use crate::clock::{now_ns, thread_cpu_ns};
use crate::pipeline::{panic_message, Outcome, Pipeline, Stop};
use crate::queue::QueueReceiver as Receiver;
pub(super) use crate::run::SlotTimes;
use crate::run::{BookedStop, Failure, WorkerLoad, WorkerTimes};
use crate::sink::Sink;
use crate::stage::{StageError, StopKind};
use crate::trace_records::{self, EventSlice, StopMark};

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

/// A new worker's load for `stage_names`, shared between the worker and whoever sums up the run.
pub(super) fn new_load(index: usize, stage_names: &[String]) -> SharedLoad {
    Arc::new(Mutex::new(WorkerLoad::new(worker_name(index), stage_names)))
}
