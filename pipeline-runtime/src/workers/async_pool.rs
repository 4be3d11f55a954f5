//! The async runner (feature `tokio`): [`AsyncWorkerPool`], worker tasks on the caller's tokio
//! runtime behind a bounded queue, and [`AsyncPipeline::run_concurrent`] for a finite batch.
//! The same intake figures, booking and [`RunSummary`] as the thread pool's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::Mutex as TaskMutex;
use tokio::task::JoinHandle as TaskHandle;

use super::intake::{open_run, sample_depth, submit, sum_up, Envelope, Intake};
use super::live::LiveRun;
use super::spawn_error;
use super::worker::{
    book, mark_outcome, new_load, take_load, worker_name, Delivery, Seat, SharedLoad, SlotTimes,
    WorkerClock,
};
use super::{TrySubmitError, WorkerConfig};
use crate::async_pipeline::{set_poll_delay, AsyncPipeline, StageClocks};
use crate::clock::now_ns;
use crate::error::Error;
use crate::run::RunSummary;
use crate::sink::Sink;
use crate::trace_records::AsyncEventSlice;

/// The worker tasks' shared end of the queue: tokio's channel has one receiver, so the worker
/// that waits for the next event holds it (the others queue behind, in order).
type SharedReceiver<In> = Arc<TaskMutex<mpsc::Receiver<Envelope<In>>>>;

/// A long-running pool of worker tasks on the caller's tokio runtime, behind a bounded queue:
/// `submit(event).await` waits while the queue is full (backpressure), `finish().await` drains
/// it and sums up the run in the same [`RunSummary`] the thread pool gives (submitted =
/// completed + filtered + rejected + failed, queue wait against time in stages, queue depth,
/// diagnosis).
///
/// Each worker task runs the whole pipeline per event, one event at a time: `WorkerConfig::new(n)` is
/// how many events are in flight at once. A panicking stage fails that event only.
///
/// ```
/// use std::sync::Arc;
/// use pipeline_runtime::{AsyncPipeline, AsyncStage, AsyncWorkerPool, StageResult, WorkerConfig};
///
/// struct Lookup;
/// impl AsyncStage<u64> for Lookup {
///     type Out = u64;
///     fn name(&self) -> &str { "Lookup" }
///     async fn process(&self, id: u64) -> StageResult<u64> { Ok(Some(id * 10)) }
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let pipeline = Arc::new(AsyncPipeline::new().stage_async(Lookup));
/// let pool = AsyncWorkerPool::start(pipeline, WorkerConfig::new(8).queue(64))?;
/// for id in 0..100 {
///     pool.submit(id).await.expect("open");
/// }
/// let run = pool.finish().await?;
/// assert_eq!(run.completed, 100);
/// # Ok::<(), pipeline_runtime::Error>(())
/// # }).unwrap();
/// ```
pub struct AsyncWorkerPool<In: Send + 'static> {
    sender: Option<mpsc::Sender<Envelope<In>>>,
    workers: Vec<(TaskHandle<()>, SharedLoad)>,
    sampler: Option<JoinHandle<Vec<(u64, usize)>>>,
    intake: Arc<Intake>,
    /// Its live counters (registered for the metrics endpoint while the pool lives).
    _live: Arc<LiveRun>,
    stage_names: Vec<String>,
}

impl<In: Send + 'static> AsyncWorkerPool<In> {
    /// Spawns `workers.count()` worker tasks on the current tokio runtime (the arrival rate
    /// and stack size, if set, are ignored). The outputs are dropped: to keep them, use
    /// [`start_with_sink`](Self::start_with_sink).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for zero workers or capacity, or when called outside a tokio
    /// runtime; [`Error::Spawn`] when the queue sampler's thread cannot be started.
    pub fn start<Out: Send + 'static>(
        pipeline: Arc<AsyncPipeline<In, Out>>,
        workers: WorkerConfig,
    ) -> Result<Self, Error> {
        Self::start_delivering(pipeline, workers, None)
    }

    /// [`start`](Self::start), handing the output of every event that made it through to
    /// `sink`, exactly once each, on the worker task that ran it (see [`Sink`]; it is called
    /// synchronously, so a sink that blocks holds a runtime thread: hand outputs to a channel).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_with_sink<Out: Send + 'static>(
        pipeline: Arc<AsyncPipeline<In, Out>>,
        workers: WorkerConfig,
        sink: impl Sink<Out> + 'static,
    ) -> Result<Self, Error> {
        Self::start_delivering(pipeline, workers, Some(Arc::new(sink)))
    }

    fn start_delivering<Out: Send + 'static>(
        pipeline: Arc<AsyncPipeline<In, Out>>,
        workers: WorkerConfig,
        sink: Option<Arc<dyn Sink<Out>>>,
    ) -> Result<Self, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::InvalidConfig(
                "`AsyncWorkerPool::start` runs its workers on the current tokio runtime: call \
                 it from inside one (an async fn run by the runtime, or `Runtime::enter`)",
            )
        })?;
        let stage_names = async_slot_names(&pipeline, sink.as_deref());
        let (intake, live) = open_run(&stage_names, &workers)?;
        let (sender, receiver) = mpsc::channel::<Envelope<In>>(workers.capacity);
        let sampler = thread::Builder::new().name("queue-sampler".to_owned()).spawn({
            let (depth, intake, every) =
                (sender.downgrade(), Arc::clone(&intake), workers.trace_one_in);
            move || {
                let depth = || depth.upgrade().map_or(0, |s| s.max_capacity() - s.capacity());
                sample_depth(depth, &intake, every)
            }
        });
        let sampler = sampler.map_err(spawn_error("the queue sampler".to_owned()))?;
        let receiver: SharedReceiver<In> = Arc::new(TaskMutex::new(receiver));
        let workers = (0..workers.count)
            .map(|index| {
                let (pipeline, sink, queue) =
                    (Arc::clone(&pipeline), sink.clone(), Arc::clone(&receiver));
                let seat = Seat { run: Arc::clone(&live), index };
                let load = new_load(index, &stage_names);
                let shared = Arc::clone(&load);
                let task = runtime.spawn(async move {
                    let delivery = Delivery::new(sink.as_deref(), pipeline.len());
                    work(&pipeline, &delivery, &queue, &shared, &seat).await;
                });
                (task, load)
            })
            .collect();
        Ok(AsyncWorkerPool {
            sender: Some(sender),
            workers,
            sampler: Some(sampler),
            intake,
            _live: live,
            stage_names,
        })
    }

    /// Queues an event, waiting (asynchronously) while the queue is full.
    ///
    /// # Errors
    ///
    /// Hands the event back if the pool was closed.
    pub async fn submit(&self, event: In) -> Result<(), In> {
        let Some(sender) = &self.sender else { return Err(event) };
        let arrived_ns = now_ns();
        // Waiting for room comes first, outside the submission's bookkeeping: a full queue
        // must not hold the trace's submission slice open, nor number events out of order.
        let permit = match sender.reserve().await {
            Ok(permit) => permit,
            Err(_) => return Err(event),
        };
        submit(&self.intake, event, arrived_ns, |envelope| {
            permit.send(envelope);
            Ok::<_, In>(sender.max_capacity() - sender.capacity())
        })
    }

    /// Queues an event if there is room now.
    ///
    /// # Errors
    ///
    /// [`TrySubmitError::Full`] or [`TrySubmitError::Closed`], with the event: nothing is dropped.
    pub fn try_submit(&self, event: In) -> Result<(), TrySubmitError<In>> {
        let Some(sender) = &self.sender else { return Err(TrySubmitError::Closed(event)) };
        let permit = match sender.try_reserve() {
            Ok(permit) => permit,
            Err(TrySendError::Full(())) => {
                self.intake.accepted_full_attempt();
                return Err(TrySubmitError::Full(event));
            }
            Err(TrySendError::Closed(())) => return Err(TrySubmitError::Closed(event)),
        };
        submit(&self.intake, event, now_ns(), |envelope| {
            permit.send(envelope);
            Ok::<_, TrySubmitError<In>>(sender.max_capacity() - sender.capacity())
        })
    }

    /// Events currently waiting in the queue.
    pub fn queue_len(&self) -> usize {
        self.sender.as_ref().map_or(0, |sender| sender.max_capacity() - sender.capacity())
    }

    /// Stops accepting events. Those already accepted are still processed.
    pub fn close(&mut self) {
        self.sender = None;
    }

    /// Closes the pool, waits until every accepted event is processed, and sums up the run
    /// (which goes to the running profiling session's report, if any).
    ///
    /// # Errors
    ///
    /// [`Error::WorkerPanicked`] if a worker task died outside any stage (stage panics are
    /// caught and counted, never reach here).
    pub async fn finish(mut self) -> Result<RunSummary, Error> {
        self.close();
        let mut first_error = None;
        let mut loads = Vec::with_capacity(self.workers.len());
        for (index, (task, load)) in std::mem::take(&mut self.workers).into_iter().enumerate() {
            if task.await.is_err() {
                first_error.get_or_insert(Error::WorkerPanicked { worker: worker_name(index) });
            }
            loads.push(take_load(&load, &self.stage_names));
        }
        let samples = self.stop_sampler();
        let summary = sum_up(loads, &self.stage_names, &self.intake, samples, true);
        match first_error {
            Some(error) => Err(error),
            None => Ok(summary),
        }
    }

    fn stop_sampler(&mut self) -> Vec<(u64, usize)> {
        self.intake.stop_sampling.store(true, Ordering::Relaxed);
        self.sampler.take().map(|sampler| sampler.join().unwrap_or_default()).unwrap_or_default()
    }
}

impl<In: Send + 'static> Drop for AsyncWorkerPool<In> {
    /// A pool dropped without `finish` closes its queue; its tasks drain what was accepted on
    /// their own (a drop cannot await them), and its run is not reported.
    fn drop(&mut self) {
        self.close();
        if self.sampler.is_some() {
            let _ = self.stop_sampler();
        }
    }
}

/// Names of a run's slots: the pipeline's stages, then the sink's.
fn async_slot_names<In, Out>(
    pipeline: &AsyncPipeline<In, Out>,
    sink: Option<&dyn Sink<Out>>,
) -> Vec<String> {
    let stages = pipeline.stage_names().map(str::to_owned);
    stages.chain(sink.map(|sink| sink.name().to_owned())).collect()
}

/// One worker task: take events until the queue is closed and empty, run each through the
/// pipeline and hand its output over, booking each event as the thread pool's workers do.
async fn work<In: Send, Out: Send>(
    pipeline: &AsyncPipeline<In, Out>,
    delivery: &Delivery<'_, Out>,
    queue: &SharedReceiver<In>,
    load: &std::sync::Mutex<crate::run::WorkerLoad>,
    seat: &Seat,
) {
    let mut clocks = StageClocks::new(delivery.slots());
    let mut clock = WorkerClock::default();
    let wakes = Arc::new(WakeStamp::default());
    let waker = std::task::Waker::from(Arc::clone(&wakes));
    while let Some((Envelope { id, event, arrived_ns, flow, parent }, waited_ns)) =
        next(queue).await
    {
        let picked = clock.picked(seat, arrived_ns, waited_ns);
        // The event's async slice in the trace, its stages nested on its track, each poll of
        // it drawn on the thread that ran it. Sampling: one event in N goes in (whole).
        let slice = AsyncEventSlice::begin(id, picked.wait_ns, flow, picked.at_ns, parent.as_ref());
        clocks.clear();
        wakes.forget(); // a late wake meant for the event before
        let through = {
            let stages = std::pin::pin!(pipeline.run_isolated(event, &mut clocks));
            InEvent { slice: &slice, future: stages, wakes: &wakes, waker: &waker }.await.stopped()
        };
        let outcome = match through {
            Ok(output) => {
                let _in_event = slice.enter(false);
                let delivered = delivery.deliver(output, &mut clocks.wall_ns);
                if let Some(sink) = delivery.sink_slot() {
                    // The sink is synchronous: its busy time is its wall time.
                    clocks.busy_ns[sink] = clocks.wall_ns[sink];
                }
                delivered
            }
            Err(stop) => stop,
        };
        let done_ns = now_ns();
        {
            let _in_event = slice.enter(false);
            mark_outcome(id, &outcome, pipeline.stage_names());
        }
        drop(slice);
        let times = SlotTimes {
            wall_ns: &clocks.wall_ns,
            busy_ns: &clocks.busy_ns,
            ready_ns: Some(&clocks.ready_ns),
        };
        book(outcome, &picked, done_ns, times, load, seat);
    }
}

/// An event's future, each poll of it run as a poll of the event (see [`AsyncEventSlice`]),
/// woken through the worker's [`WakeStamp`], so each poll knows how long the event was
/// runnable before it.
struct InEvent<'a, F> {
    slice: &'a AsyncEventSlice,
    future: std::pin::Pin<&'a mut F>,
    wakes: &'a WakeStamp,
    /// The worker's waker: the stamp's.
    waker: &'a std::task::Waker,
}

impl<F: std::future::Future> std::future::Future for InEvent<'_, F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = &mut *self;
        this.wakes.forward_to(cx.waker());
        set_poll_delay(this.wakes.take_delay(now_ns()));
        let mut stamped = std::task::Context::from_waker(this.waker);
        let poll = this.slice.poll(|| this.future.as_mut().poll(&mut stamped));
        this.wakes.polled(now_ns());
        poll
    }
}

/// A worker's waker: stamps when its event was woken, then wakes the worker's task.
#[derive(Default)]
struct WakeStamp {
    /// When the event was first woken since its last poll (0: not woken).
    woke_at_ns: AtomicU64,
    /// The task's own waker.
    task: std::sync::Mutex<Option<std::task::Waker>>,
}

impl WakeStamp {
    /// Wakes go to `task` (kept until the runtime hands a different one).
    fn forward_to(&self, task: &std::task::Waker) {
        let mut kept = self.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !kept.as_ref().is_some_and(|kept| kept.will_wake(task)) {
            *kept = Some(task.clone());
        }
    }

    /// Forgets a wake that came after the last event ended.
    fn forget(&self) {
        self.woke_at_ns.store(0, Ordering::Release);
    }

    /// How long ago (before `now_ns`) the event was woken for the poll starting now.
    fn take_delay(&self, now_ns: u64) -> u64 {
        match self.woke_at_ns.swap(0, Ordering::AcqRel) {
            0 => 0,
            woke => now_ns.saturating_sub(woke),
        }
    }

    /// A poll ended at `now_ns`: a wake during it counts from its end (the task was running).
    fn polled(&self, now_ns: u64) {
        let _ = self.woke_at_ns.fetch_update(Ordering::AcqRel, Ordering::Acquire, |woke| {
            (woke != 0 && woke < now_ns).then_some(now_ns)
        });
    }
}

impl std::task::Wake for WakeStamp {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.woke_at_ns.compare_exchange(0, now_ns(), Ordering::AcqRel, Ordering::Acquire);
        let task = self.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// The next event, with how long this worker waited for it on an empty queue (0 when one was
/// waiting already); `None` once the pool is closed and the queue empty.
///
/// Waiting for the receiver counts as waiting for an event: another worker holds it while it
/// waits on an empty queue (while events are queued, each holds it only to take one).
async fn next<In>(queue: &SharedReceiver<In>) -> Option<(Envelope<In>, u64)> {
    if let Ok(mut receiver) = queue.try_lock() {
        if let Ok(envelope) = receiver.try_recv() {
            return Some((envelope, 0));
        }
    }
    let from = now_ns();
    let envelope = queue.lock().await.recv().await?;
    Some((envelope, now_ns().saturating_sub(from)))
}

impl<In: Send + 'static, Out: Send + 'static> AsyncPipeline<In, Out> {
    /// Runs `events` through `workers.count()` worker tasks on the current tokio runtime, fed
    /// by a bounded queue, as a service would, and returns when every event has been
    /// processed; the outputs are dropped. See [`AsyncWorkerPool`] to submit events as they
    /// come or keep the outputs.
    ///
    /// # Errors
    ///
    /// As [`AsyncWorkerPool::start`] and [`AsyncWorkerPool::finish`].
    pub async fn run_concurrent(
        self: &Arc<Self>,
        events: impl IntoIterator<Item = In>,
        workers: WorkerConfig,
    ) -> Result<RunSummary, Error> {
        let pool = AsyncWorkerPool::start(Arc::clone(self), workers)?;
        for event in events {
            if pool.submit(event).await.is_err() {
                break; // closed: cannot happen while `pool` is ours
            }
        }
        pool.finish().await
    }
}
