//! The concurrent pool: a bounded queue (crossbeam-channel) feeding `n` named worker threads, each
//! running the whole pipeline per event, as a service would. Panics are caught per event; shutdown
//! drains the queue; every event is accounted for in the [`RunSummary`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle, Scope};
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;

use crate::clock::now_ns;
use crate::error::Error;
use crate::pipeline::{Halt, Pipeline};
use crate::queue::{self, QueueReceiver as Receiver, QueueSender as Sender};
use crate::records::{self, CounterTrack, EventSlice, Stop, Submission};
use crate::run::{self, Failure, QueueStats, RunSummary, RunTotals, Stopped, WorkerLoad};
use crate::stage::StageError;

/// How many workers, how deep a queue, and how fast events arrive.
///
/// ```
/// let workers = pipeline_runtime::Workers::new(4).queue(1024).arrival_rate(5_000.0);
/// assert_eq!(workers.count(), 4);
/// ```
#[derive(Clone, Debug)]
pub struct Workers {
    count: usize,
    capacity: usize,
    arrival_rate: Option<f64>,
    sample_every: Duration,
    stack_size: Option<usize>,
}

impl Workers {
    /// `count` worker threads over a queue of 1024 events, events submitted as fast as the queue
    /// takes them.
    pub fn new(count: usize) -> Self {
        Workers {
            count,
            capacity: 1024,
            arrival_rate: None,
            sample_every: Duration::from_millis(5),
            stack_size: None,
        }
    }

    /// Each worker thread's stack size in bytes (default: the standard library's, 2 MiB), for
    /// stages that recurse deeply. A size the system cannot give is an [`Error::Spawn`] from
    /// `run_concurrent` / `WorkerPool::start`.
    #[must_use]
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// A builder for worker thread `index`.
    fn thread(&self, index: usize) -> thread::Builder {
        let builder = thread::Builder::new().name(worker_name(index));
        match self.stack_size {
            Some(bytes) => builder.stack_size(bytes),
            None => builder,
        }
    }

    /// The queue's capacity: `submit` blocks (and `try_submit` hands the event back) when full.
    /// At most 16,777,216; a queue above 65,536 takes memory only for the events in it.
    #[must_use]
    pub fn queue(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Paces [`Pipeline::run_concurrent`]'s events at a fixed rate (an open loop: arrivals do not
    /// wait for the workers, so a backlog shows up as queue wait). Each event's latency counts
    /// from its scheduled arrival, so a producer held up by a full queue does not hide latency.
    #[must_use]
    pub fn arrival_rate(mut self, events_per_second: f64) -> Self {
        self.arrival_rate = Some(events_per_second);
        self
    }

    /// How often the queue's depth is sampled (default 5 ms).
    #[must_use]
    pub fn sample_queue_every(mut self, interval: Duration) -> Self {
        self.sample_every = interval;
        self
    }

    /// The number of worker threads.
    pub fn count(&self) -> usize {
        self.count
    }

    fn validate(&self) -> Result<(), Error> {
        let problem = if self.count == 0 {
            "`Workers::new(0)`: at least one worker is needed"
        } else if self.count > MAX_WORKERS {
            "`Workers::new(..)` is above 4,096 threads: more workers than that only adds \
             switching; use a few per core"
        } else if self.capacity == 0 {
            "`.queue(0)`: the queue needs room for at least one event"
        } else if self.capacity > queue::MAX_CAPACITY {
            "`.queue(..)` is above 16,777,216 events: a backlog that deep is minutes of work at \
             any rate; bound it lower and let `submit` wait (or `try_submit` hand events back)"
        } else if self.arrival_rate.is_some_and(|rate| !(rate.is_finite() && rate > 0.0)) {
            "`.arrival_rate(..)` must be a positive, finite number of events per second"
        } else if self.sample_every.is_zero() {
            "`.sample_queue_every(..)` must be longer than zero"
        } else if self.stack_size.is_some_and(|bytes| bytes < 64 * 1024) {
            "`.stack_size(..)` must be at least 64 KiB"
        } else {
            return Ok(());
        };
        Err(Error::InvalidConfig(problem))
    }
}

/// The most worker threads a pool may have.
const MAX_WORKERS: usize = 4096;

/// An event in the queue, numbered and stamped when it arrived.
struct Envelope<E> {
    id: u64,
    event: E,
    arrived_ns: u64,
    /// The trace's arrow from its submission to its slice (0: not traced).
    flow: u64,
}

/// What producers and the sampler share: the queue's figures (atomics, one update per submission).
struct Intake {
    started_ns: u64,
    capacity: usize,
    submitted: AtomicU64,
    next_id: AtomicU64,
    last_arrival_ns: AtomicU64,
    max_depth: AtomicUsize,
    /// 0 until the queue first fills; then the time, plus one.
    first_full: AtomicU64,
    stop_sampling: AtomicBool,
}

impl Intake {
    fn new(capacity: usize) -> Self {
        Intake {
            started_ns: now_ns(),
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
    fn accepted(&self, arrived_ns: u64, depth: usize) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
        self.last_arrival_ns.fetch_max(arrived_ns, Ordering::Relaxed);
        self.max_depth.fetch_max(depth, Ordering::Relaxed);
        if depth >= self.capacity {
            self.reached_capacity();
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Marks the first moment the queue was full (an instant event in the trace).
    fn reached_capacity(&self) {
        let at = now_ns().saturating_sub(self.started_ns) + 1;
        if self.first_full.compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            records::queue_full(self.capacity);
        }
    }

    fn totals(&self, samples: Vec<(u64, usize)>) -> RunTotals {
        let wall_time_ns = now_ns().saturating_sub(self.started_ns);
        let feed_time_ns =
            self.last_arrival_ns.load(Ordering::Relaxed).saturating_sub(self.started_ns);
        let (trend, trend_per_sec) = run::trend(&samples, feed_time_ns, self.capacity);
        RunTotals {
            submitted: self.submitted.load(Ordering::Relaxed),
            wall_time_ns,
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

fn worker_name(index: usize) -> String {
    format!("worker-{index}")
}

/// One worker: pull events until the queue is closed and empty, run each through the pipeline.
/// Each event is booked in `load` (its own lock, taken once per event and by nobody else while
/// the worker runs), so what a worker did is never lost: not if it dies, not if `join_timeout`
/// gives up on it.
fn work<E>(pipeline: &Pipeline<E>, queue: &Receiver<Envelope<E>>, load: &Mutex<WorkerLoad>) {
    let mut stage_ns = vec![0; pipeline.len()];
    for Envelope { id, event, arrived_ns, flow } in queue.iter() {
        let picked_ns = now_ns();
        let wait_ns = picked_ns.saturating_sub(arrived_ns);
        // The event's slice in the trace: its stages are nested inside. Sampling: only one
        // event in N goes into the trace (whole).
        let slice = EventSlice::begin(id, wait_ns, flow, picked_ns);
        stage_ns.fill(0);
        let result = pipeline.run_isolated(event, &mut stage_ns);
        let done_ns = now_ns();
        if let Err(halt) = &result {
            mark_stop(id, halt);
        }
        drop(slice);
        let stopped = match result {
            // What a stage hands back is dropped under a guard too: an event whose `Drop`
            // panics must not take the worker (and the events behind it) down.
            Ok(completed) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(completed)));
                None
            }
            Err(halt) => {
                let failure = match halt.error() {
                    StageError::Rejected { .. } => None,
                    StageError::Panicked { message } => Some(Failure {
                        panicked: true,
                        message: records::bounded_text(message).into_owned(),
                    }),
                    // Formatting the error runs the stage's own `Display`: guarded like the stage.
                    error => Some(Failure {
                        panicked: false,
                        message: records::guarded_text(|| error.to_string()),
                    }),
                };
                let stopped =
                    Stopped { stage_index: halt.stage_index(), kind: halt.error().kind(), failure };
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(halt)));
                Some(stopped)
            }
        };
        let mut load = load.lock().unwrap_or_else(PoisonError::into_inner);
        load.record(wait_ns, &stage_ns, done_ns - picked_ns, stopped);
    }
}

/// A worker's load, shared with the pool that reads it at the end.
type SharedLoad = Arc<Mutex<WorkerLoad>>;

/// Takes what a worker booked so far, leaving it an empty load for the same stages (a worker
/// that `join_timeout` gave up on may still finish its event later).
fn take_load(load: &SharedLoad, stage_names: &[String]) -> WorkerLoad {
    let mut load = load.lock().unwrap_or_else(PoisonError::into_inner);
    let empty = WorkerLoad::new(load.name.clone(), stage_names);
    std::mem::replace(&mut *load, empty)
}

/// An instant event in the trace where an event was stopped.
fn mark_stop(id: u64, halt: &Halt) {
    let stop = match halt.error() {
        StageError::Rejected { reason } => Stop::Rejected { reason },
        StageError::Panicked { message } => Stop::Panicked { message },
        error => Stop::Failed { error },
    };
    records::mark_stop(id, halt.stage(), &stop);
}

/// Samples the queue's depth until told to stop.
fn sample_depth<E>(
    queue: Receiver<Envelope<E>>,
    intake: &Intake,
    every: Duration,
) -> Vec<(u64, usize)> {
    let mut samples = Vec::new();
    while !intake.stop_sampling.load(Ordering::Relaxed) {
        let depth = queue.len();
        samples.push((now_ns().saturating_sub(intake.started_ns), depth));
        records::mark_counter(CounterTrack::QueueDepth, depth as f64);
        thread::sleep(every);
    }
    // Its samples outlive it (they go into the run's summary): its batched live-bytes change
    // must reach the heap figure.
    crate::alloc::flush_thread();
    samples
}

fn spawn_error(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Spawn { what, source }
}

impl<E: Send> Pipeline<E> {
    /// Runs `events` through `workers.count()` worker threads fed by a bounded queue, as a
    /// service would, and returns when every event has been processed.
    ///
    /// Each worker runs the whole pipeline per event. A panicking stage fails that event only
    /// (counted with its message); the worker goes on. If a profiler is running, the run's load
    /// section is added to its report.
    ///
    /// ```
    /// use pipeline_runtime::{Pipeline, Stage, StageError, Workers};
    ///
    /// struct Double;
    /// impl Stage<u64> for Double {
    ///     fn name(&self) -> &str { "Double" }
    ///     fn process(&self, e: u64) -> Result<u64, StageError> { Ok(e * 2) }
    /// }
    /// let run = Pipeline::new().stage(Double).run_concurrent(0..1000, Workers::new(2).queue(64))?;
    /// assert_eq!(run.completed, 1000);
    /// # Ok::<(), pipeline_runtime::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for zero workers or capacity; [`Error::Spawn`] when a thread
    /// cannot be started (the run stops after draining what was queued).
    pub fn run_concurrent(
        &self,
        events: impl IntoIterator<Item = E>,
        workers: Workers,
    ) -> Result<RunSummary, Error> {
        workers.validate()?;
        let stage_names: Vec<String> = self.stage_names().map(str::to_owned).collect();
        let (sender, receiver) = queue::bounded::<Envelope<E>>(workers.capacity);
        let intake = Intake::new(workers.capacity);
        let (loads, samples) = thread::scope(|scope| -> Result<_, Error> {
            let sampler = thread::Builder::new()
                .name("queue-sampler".to_owned())
                .spawn_scoped(scope, {
                    let (receiver, intake) = (receiver.clone(), &intake);
                    move || sample_depth(receiver, intake, workers.sample_every)
                })
                .map_err(spawn_error("the queue sampler".to_owned()));
            let handles = spawn_scoped_workers(scope, self, &receiver, &stage_names, &workers);
            drop(receiver);
            if let (Ok(_), Ok(_)) = (&sampler, &handles) {
                feed(&sender, &intake, events, workers.arrival_rate);
            }
            drop(sender); // closes the queue: workers drain it and stop
            let loads: Result<Vec<WorkerLoad>, Error> = handles.and_then(|handles| {
                handles
                    .into_iter()
                    .map(|(handle, load)| {
                        join_worker(handle).map(|()| take_load(&load, &stage_names))
                    })
                    .collect()
            });
            // Whatever failed, the sampler stops: the scope waits for every thread it started.
            intake.stop_sampling.store(true, Ordering::Relaxed);
            let samples = sampler?.join().unwrap_or_default();
            Ok((loads?, samples))
        })?;
        let summary = RunSummary::merge(loads, &stage_names, intake.totals(samples));
        run::finished(&summary);
        Ok(summary)
    }
}

fn spawn_scoped_workers<'scope, 'env, E: Send>(
    scope: &'scope Scope<'scope, 'env>,
    pipeline: &'env Pipeline<E>,
    receiver: &Receiver<Envelope<E>>,
    stage_names: &[String],
    workers: &Workers,
) -> Result<Vec<(thread::ScopedJoinHandle<'scope, ()>, SharedLoad)>, Error> {
    (0..workers.count)
        .map(|index| {
            let queue = receiver.clone();
            let load = Arc::new(Mutex::new(WorkerLoad::new(worker_name(index), stage_names)));
            let shared = Arc::clone(&load);
            workers
                .thread(index)
                .spawn_scoped(scope, move || work(pipeline, &queue, &shared))
                .map(|handle| (handle, load))
                .map_err(spawn_error(worker_name(index)))
        })
        .collect()
}

fn join_worker(handle: thread::ScopedJoinHandle<'_, ()>) -> Result<(), Error> {
    let name = handle.thread().name().unwrap_or("worker").to_owned();
    handle.join().map_err(|_| Error::WorkerPanicked { worker: name })
}

/// Submits every event, paced at `rate` per second when given.
fn feed<E>(
    sender: &Sender<Envelope<E>>,
    intake: &Intake,
    events: impl IntoIterator<Item = E>,
    rate: Option<f64>,
) {
    let interval_ns = rate.map(|rate| 1e9 / rate);
    let start_ns = now_ns();
    for (index, event) in events.into_iter().enumerate() {
        let arrived_ns = match interval_ns {
            Some(interval) => {
                let due_ns = start_ns + (index as f64 * interval) as u64;
                let now = now_ns();
                if due_ns > now {
                    thread::sleep(Duration::from_nanos(due_ns - now));
                }
                due_ns
            }
            None => now_ns(),
        };
        let id = intake.next_id();
        let submission = Submission::begin(id);
        let flow = submission.flow;
        if sender.send(Envelope { id, event, arrived_ns, flow }).is_err() {
            return; // every worker is gone; `run_concurrent` reports why
        }
        submission.end();
        intake.accepted(arrived_ns, sender.len());
    }
}

/// Why [`WorkerPool::try_submit`] handed an event back.
#[derive(Debug, thiserror::Error)]
pub enum TrySubmitError<E> {
    /// The queue is full; the event is returned untouched.
    #[error("the queue is full")]
    Full(E),
    /// The pool was closed; the event is returned untouched.
    #[error("the pool is closed")]
    Closed(E),
}

impl<E> TrySubmitError<E> {
    /// The event that was not accepted.
    pub fn into_event(self) -> E {
        match self {
            TrySubmitError::Full(event) | TrySubmitError::Closed(event) => event,
        }
    }
}

/// A long-running pool of workers behind a bounded queue: `submit` events as they come, `close`
/// the queue, `join` for the [`RunSummary`]. Dropping the pool closes it, drains the queue
/// (waiting for the workers) and hands the run to the running session's report; when a stage
/// might block forever, end with [`join_timeout`](Self::join_timeout) instead, which bounds
/// the wait.
///
/// ```
/// use std::sync::Arc;
/// use pipeline_runtime::{Pipeline, Stage, StageError, WorkerPool, Workers};
///
/// struct Upper;
/// impl Stage<String> for Upper {
///     fn name(&self) -> &str { "Upper" }
///     fn process(&self, e: String) -> Result<String, StageError> { Ok(e.to_uppercase()) }
/// }
/// let pool = WorkerPool::start(Arc::new(Pipeline::new().stage(Upper)), Workers::new(2))?;
/// for word in ["a", "b", "c"] {
///     pool.submit(word.to_owned()).expect("open");
/// }
/// let run = pool.join()?;
/// assert_eq!(run.completed, 3);
/// # Ok::<(), pipeline_runtime::Error>(())
/// ```
pub struct WorkerPool<E: Send + 'static> {
    sender: Option<Sender<Envelope<E>>>,
    workers: Vec<(JoinHandle<()>, SharedLoad)>,
    sampler: Option<JoinHandle<Vec<(u64, usize)>>>,
    intake: Arc<Intake>,
    stage_names: Vec<String>,
    /// Every thread started: a pool that failed to start has no run to report.
    started: bool,
}

impl<E: Send + 'static> WorkerPool<E> {
    /// Starts `workers.count()` threads named `worker-0`, `worker-1`, ... (the arrival rate, if
    /// set, is ignored: events arrive when you submit them).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for zero workers or capacity; [`Error::Spawn`] when a thread
    /// cannot be started (the threads already started are stopped).
    pub fn start(pipeline: Arc<Pipeline<E>>, workers: Workers) -> Result<Self, Error> {
        workers.validate()?;
        let stage_names: Vec<String> = pipeline.stage_names().map(str::to_owned).collect();
        let (sender, receiver) = queue::bounded::<Envelope<E>>(workers.capacity);
        let intake = Arc::new(Intake::new(workers.capacity));
        let mut pool = WorkerPool {
            sender: Some(sender),
            workers: Vec::new(),
            sampler: None,
            intake,
            stage_names,
            started: false,
        };
        let sampler = thread::Builder::new().name("queue-sampler".to_owned()).spawn({
            let (receiver, intake, every) =
                (receiver.clone(), Arc::clone(&pool.intake), workers.sample_every);
            move || sample_depth(receiver, &intake, every)
        });
        pool.sampler = Some(sampler.map_err(spawn_error("the queue sampler".to_owned()))?);
        for index in 0..workers.count {
            let (pipeline, queue) = (Arc::clone(&pipeline), receiver.clone());
            let load = Arc::new(Mutex::new(WorkerLoad::new(worker_name(index), &pool.stage_names)));
            let shared = Arc::clone(&load);
            let handle = workers
                .thread(index)
                .spawn(move || work(&pipeline, &queue, &shared))
                .map_err(spawn_error(worker_name(index)))?; // dropping `pool` stops the others
            pool.workers.push((handle, load));
        }
        pool.started = true;
        Ok(pool)
    }

    /// Queues an event, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// Hands the event back if the pool was closed.
    pub fn submit(&self, event: E) -> Result<(), E> {
        let Some(sender) = &self.sender else { return Err(event) };
        let arrived_ns = now_ns();
        let id = self.intake.next_id();
        let submission = Submission::begin(id);
        let flow = submission.flow;
        match sender.send(Envelope { id, event, arrived_ns, flow }) {
            Ok(()) => {
                submission.end();
                self.intake.accepted(arrived_ns, sender.len());
                Ok(())
            }
            Err(returned) => Err(returned.event),
        }
    }

    /// Queues an event if there is room now.
    ///
    /// # Errors
    ///
    /// [`TrySubmitError::Full`] or [`TrySubmitError::Closed`], with the event: nothing is dropped.
    pub fn try_submit(&self, event: E) -> Result<(), TrySubmitError<E>> {
        let Some(sender) = &self.sender else { return Err(TrySubmitError::Closed(event)) };
        let arrived_ns = now_ns();
        let id = self.intake.next_id();
        let submission = Submission::begin(id);
        let flow = submission.flow;
        match sender.try_send(Envelope { id, event, arrived_ns, flow }) {
            Ok(()) => {
                submission.end();
                self.intake.accepted(arrived_ns, sender.len());
                Ok(())
            }
            Err(TrySendError::Full(envelope)) => {
                self.intake.accepted_full_attempt();
                Err(TrySubmitError::Full(envelope.event))
            }
            Err(TrySendError::Disconnected(envelope)) => {
                Err(TrySubmitError::Closed(envelope.event))
            }
        }
    }

    /// Events currently waiting in the queue.
    pub fn queue_len(&self) -> usize {
        self.sender.as_ref().map_or(0, |sender| sender.len())
    }

    /// Stops accepting events. Those already accepted are still processed.
    pub fn close(&mut self) {
        self.sender = None;
    }

    /// Closes the pool, waits until every accepted event is processed, and sums up the run.
    ///
    /// # Errors
    ///
    /// [`Error::WorkerPanicked`] if a worker thread died outside any stage (stage panics are
    /// caught and counted, never reach here).
    pub fn join(mut self) -> Result<RunSummary, Error> {
        self.finish(None)
    }

    /// Like [`join`](Self::join), but waits at most `timeout` for the workers: a stage that
    /// blocks forever (a lost lock, a network call with no deadline) cannot hold the caller.
    /// The summary then accounts for what was done, and counts the accepted events still
    /// queued or in a stage as `unfinished` (`submitted = completed + rejected + failed +
    /// unfinished`). Workers still running are left to finish on their own.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use pipeline_runtime::{Pipeline, Stage, StageError, WorkerPool, Workers};
    ///
    /// struct Quick;
    /// impl Stage<u32> for Quick {
    ///     fn name(&self) -> &str { "Quick" }
    ///     fn process(&self, e: u32) -> Result<u32, StageError> { Ok(e) }
    /// }
    /// let pool = WorkerPool::start(Arc::new(Pipeline::new().stage(Quick)), Workers::new(2))?;
    /// pool.submit(1).expect("open");
    /// let run = pool.join_timeout(Duration::from_secs(5))?;
    /// assert_eq!((run.completed, run.unfinished), (1, 0));
    /// # Ok::<(), pipeline_runtime::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WorkerPanicked`] as for `join`.
    pub fn join_timeout(mut self, timeout: Duration) -> Result<RunSummary, Error> {
        self.finish(Some(Instant::now() + timeout))
    }

    /// Closes the queue, waits for the workers (until `deadline`, if given), and sums up what
    /// they did; the run goes to the running session's report.
    fn finish(&mut self, deadline: Option<Instant>) -> Result<RunSummary, Error> {
        self.close();
        let mut first_error = None;
        let mut loads = Vec::with_capacity(self.workers.len());
        for (handle, load) in self.workers.drain(..) {
            let finished = match deadline {
                None => true,
                Some(deadline) => wait_until_finished(&handle, deadline),
            };
            if finished {
                let name = handle.thread().name().unwrap_or("worker").to_owned();
                if handle.join().is_err() {
                    first_error.get_or_insert(Error::WorkerPanicked { worker: name });
                }
            } // else: detached; it keeps its own handle on the load and the queue
            loads.push(take_load(&load, &self.stage_names));
        }
        self.intake.stop_sampling.store(true, Ordering::Relaxed);
        let samples = match self.sampler.take() {
            Some(sampler) if deadline.is_none_or(|d| wait_until_finished(&sampler, d)) => {
                sampler.join().unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let summary = RunSummary::merge(loads, &self.stage_names, self.intake.totals(samples));
        if self.started {
            run::finished(&summary);
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(summary),
        }
    }
}

/// Waits (polling) until `handle`'s thread has finished or `deadline` passes; whether it did.
fn wait_until_finished<T>(handle: &JoinHandle<T>, deadline: Instant) -> bool {
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

impl Intake {
    /// A `try_submit` found the queue full: it has reached capacity.
    fn accepted_full_attempt(&self) {
        self.max_depth.fetch_max(self.capacity, Ordering::Relaxed);
        self.reached_capacity();
    }
}

impl<E: Send + 'static> Drop for WorkerPool<E> {
    fn drop(&mut self) {
        // Drain rather than drop accepted events: close, then wait for the workers. The run
        // still reaches the session's report (`join` already took the workers if it ran).
        if !self.workers.is_empty() {
            let _ = self.finish(None);
        }
    }
}
