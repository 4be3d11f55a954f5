//! [`WorkerPool`]: a long-running pool of workers fed by `submit` / `try_submit`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;

use super::intake::{open, sample_depth, submit, sum_up, Envelope, Intake, Opened};
use super::live::LiveRun;
use super::spawn_error;
use super::worker::{
    new_load, slot_names, take_load, work, worker_name, Delivery, Seat, SharedLoad,
};
use super::WorkerConfig;
use crate::clock::now_ns;
use crate::error::Error;
use crate::pipeline::Pipeline;
use crate::queue::QueueSender as Sender;
use crate::run::RunSummary;
use crate::sink::Sink;

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
/// use pipeline_runtime::{Pipeline, Stage, StageResult, WorkerPool, WorkerConfig};
///
/// struct Upper;
/// impl Stage<String> for Upper {
///     type Out = String;
///     fn name(&self) -> &str { "Upper" }
///     fn process(&self, e: String) -> StageResult<String> { Ok(Some(e.to_uppercase())) }
/// }
/// let pool = WorkerPool::start(Arc::new(Pipeline::new().stage(Upper)), WorkerConfig::new(2))?;
/// for word in ["a", "b", "c"] {
///     pool.submit(word.to_owned()).expect("open");
/// }
/// let run = pool.join()?;
/// assert_eq!(run.completed, 3);
/// # Ok::<(), pipeline_runtime::Error>(())
/// ```
pub struct WorkerPool<In: Send + 'static> {
    sender: Option<Sender<Envelope<In>>>,
    workers: Vec<(JoinHandle<()>, SharedLoad)>,
    sampler: Option<JoinHandle<Vec<(u64, usize)>>>,
    intake: Arc<Intake>,
    /// Its live counters (registered for the metrics endpoint while the pool lives).
    live: Arc<LiveRun>,
    stage_names: Vec<String>,
    /// Every thread started: a pool that failed to start has no run to report.
    started: bool,
}

impl<In: Send + 'static> WorkerPool<In> {
    /// Starts `workers.count()` threads named `worker-0`, `worker-1`, ... (the arrival rate, if
    /// set, is ignored: events arrive when you submit them). The outputs are dropped: to keep
    /// them, use [`start_with_sink`](Self::start_with_sink).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for zero workers or capacity; [`Error::Spawn`] when a thread
    /// cannot be started (the threads already started are stopped).
    pub fn start<Out: 'static>(
        pipeline: Arc<Pipeline<In, Out>>,
        workers: WorkerConfig,
    ) -> Result<Self, Error> {
        Self::start_delivering(pipeline, workers, None)
    }

    /// [`start`](Self::start), handing the output of every event that made it through to
    /// `sink`, exactly once each, on the worker that ran it (see [`Sink`]). With a bounded
    /// channel as the sink, read its receiver on another thread than the one submitting: a
    /// full channel makes the workers wait, and a full queue then makes `submit` wait.
    ///
    /// ```
    /// use std::{sync::{mpsc, Arc}, thread};
    /// use pipeline_runtime::{Pipeline, Stage, StageResult, WorkerPool, WorkerConfig};
    ///
    /// struct Words;
    /// impl Stage<String> for Words {
    ///     type Out = usize;
    ///     fn name(&self) -> &str { "Words" }
    ///     fn process(&self, line: String) -> StageResult<usize> {
    ///         Ok(Some(line.split_whitespace().count()))
    ///     }
    /// }
    /// let (outputs, counts) = mpsc::sync_channel(16);
    /// let pool = WorkerPool::start_with_sink(Arc::new(Pipeline::new().stage(Words)), WorkerConfig::new(2), outputs)?;
    /// let reader = thread::spawn(move || counts.iter().sum::<usize>());
    /// for line in ["a b", "c d e"] {
    ///     pool.submit(line.to_owned()).expect("open");
    /// }
    /// let run = pool.join()?;
    /// assert_eq!((run.completed, reader.join().unwrap()), (2, 5));
    /// # Ok::<(), pipeline_runtime::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_with_sink<Out: 'static>(
        pipeline: Arc<Pipeline<In, Out>>,
        workers: WorkerConfig,
        sink: impl Sink<Out> + 'static,
    ) -> Result<Self, Error> {
        Self::start_delivering(pipeline, workers, Some(Arc::new(sink)))
    }

    fn start_delivering<Out: 'static>(
        pipeline: Arc<Pipeline<In, Out>>,
        workers: WorkerConfig,
        sink: Option<Arc<dyn Sink<Out>>>,
    ) -> Result<Self, Error> {
        let Opened { stage_names, sender, receiver, intake, live } =
            open(slot_names(&pipeline, sink.as_deref()), &workers)?;
        let mut pool = WorkerPool {
            sender: Some(sender),
            workers: Vec::new(),
            sampler: None,
            intake,
            live,
            stage_names,
            started: false,
        };
        let sampler = thread::Builder::new().name("queue-sampler".to_owned()).spawn({
            let (receiver, intake, every) =
                (receiver.clone(), Arc::clone(&pool.intake), workers.trace_one_in);
            move || sample_depth(|| receiver.len(), &intake, every)
        });
        pool.sampler = Some(sampler.map_err(spawn_error("the queue sampler".to_owned()))?);
        for index in 0..workers.count {
            let (pipeline, sink, queue) = (Arc::clone(&pipeline), sink.clone(), receiver.clone());
            let seat = Seat { run: Arc::clone(&pool.live), index };
            let load = new_load(index, &pool.stage_names);
            let shared = Arc::clone(&load);
            let handle = workers
                .thread(index)
                .spawn(move || {
                    let delivery = Delivery::new(sink.as_deref(), pipeline.len());
                    work(&pipeline, &delivery, &queue, &shared, &seat);
                })
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
    pub fn submit(&self, event: In) -> Result<(), In> {
        let Some(sender) = &self.sender else { return Err(event) };
        submit(&self.intake, event, now_ns(), |envelope| {
            sender.send(envelope).map(|()| sender.len()).map_err(|refused| refused.event)
        })
    }

    /// Queues an event if there is room now.
    ///
    /// # Errors
    ///
    /// [`TrySubmitError::Full`] or [`TrySubmitError::Closed`], with the event: nothing is dropped.
    pub fn try_submit(&self, event: In) -> Result<(), TrySubmitError<In>> {
        let Some(sender) = &self.sender else { return Err(TrySubmitError::Closed(event)) };
        submit(&self.intake, event, now_ns(), |envelope| match sender.try_send(envelope) {
            Ok(()) => Ok(sender.len()),
            Err(TrySendError::Full(envelope)) => {
                self.intake.accepted_full_attempt();
                Err(TrySubmitError::Full(envelope.event))
            }
            Err(TrySendError::Disconnected(envelope)) => {
                Err(TrySubmitError::Closed(envelope.event))
            }
        })
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
    /// queued or in a stage as `unfinished` (`submitted = completed + filtered + rejected +
    /// failed + unfinished`). Workers still running are left to finish on their own.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use pipeline_runtime::{Pipeline, Stage, StageResult, WorkerPool, WorkerConfig};
    ///
    /// struct Quick;
    /// impl Stage<u32> for Quick {
    ///     type Out = u32;
    ///     fn name(&self) -> &str { "Quick" }
    ///     fn process(&self, e: u32) -> StageResult<u32> { Ok(Some(e)) }
    /// }
    /// let pool = WorkerPool::start(Arc::new(Pipeline::new().stage(Quick)), WorkerConfig::new(2))?;
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
        let summary = sum_up(loads, &self.stage_names, &self.intake, samples, self.started);
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

impl<In: Send + 'static> Drop for WorkerPool<In> {
    fn drop(&mut self) {
        // Drain rather than drop accepted events: close, then wait for the workers. The run
        // still reaches the session's report (`join` already took the workers if it ran).
        if !self.workers.is_empty() {
            let _ = self.finish(None);
        }
    }
}
