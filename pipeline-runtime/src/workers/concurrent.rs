//! [`Pipeline::run_concurrent`]: a finite batch of events through scoped worker threads.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, Scope};
use std::time::Duration;

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
use crate::queue::{QueueReceiver as Receiver, QueueSender as Sender};
use crate::run::{RunSummary, WorkerLoad};
use crate::sink::Sink;

impl<In: Send + 'static, Out: 'static> Pipeline<In, Out> {
    /// Runs `events` through `workers.count()` worker threads fed by a bounded queue, as a
    /// service would, and returns when every event has been processed. The outputs are
    /// dropped: to keep them, use [`run_concurrent_into`](Self::run_concurrent_into).
    ///
    /// Each worker runs the whole pipeline per event. A panicking stage fails that event only
    /// (counted with its message); the worker goes on. If a profiler is running, the run's load
    /// section is added to its report.
    ///
    /// ```
    /// use pipeline_runtime::{Pipeline, Stage, StageResult, WorkerConfig};
    ///
    /// struct Double;
    /// impl Stage<u64> for Double {
    ///     type Out = u64;
    ///     fn name(&self) -> &str { "Double" }
    ///     fn process(&self, e: u64) -> StageResult<u64> { Ok(Some(e * 2)) }
    /// }
    /// let run = Pipeline::new().stage(Double).run_concurrent(0..1000, WorkerConfig::new(2).queue(64))?;
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
        events: impl IntoIterator<Item = In>,
        workers: WorkerConfig,
    ) -> Result<RunSummary, Error> {
        self.run_on_workers(events, workers, None)
    }

    /// [`run_concurrent`](Self::run_concurrent), handing the output of every event that made it
    /// through to `sink`, exactly once each, on the worker that ran it (see [`Sink`]): a slow
    /// sink slows the workers instead of growing memory, and its time is its own row in the
    /// report and slot in the run's latency split.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use pipeline_runtime::{Pipeline, Stage, StageResult, WorkerConfig};
    ///
    /// struct Len;
    /// impl Stage<String> for Len {
    ///     type Out = usize;
    ///     fn name(&self) -> &str { "Len" }
    ///     fn process(&self, s: String) -> StageResult<usize> { Ok(Some(s.len())) }
    /// }
    /// let pipeline = Pipeline::new().stage(Len);
    /// let (outputs, received) = mpsc::sync_channel(64); // bounded: a full channel waits
    /// let reader = std::thread::spawn(move || received.iter().sum::<usize>());
    /// let words = ["a", "bb", "ccc"].map(String::from);
    /// let run = pipeline.run_concurrent_into(words, WorkerConfig::new(2), outputs)?;
    /// assert_eq!((run.completed, reader.join().unwrap()), (3, 6));
    /// # Ok::<(), pipeline_runtime::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`run_concurrent`](Self::run_concurrent).
    pub fn run_concurrent_into(
        &self,
        events: impl IntoIterator<Item = In>,
        workers: WorkerConfig,
        sink: impl Sink<Out>,
    ) -> Result<RunSummary, Error> {
        self.run_on_workers(events, workers, Some(&sink))
    }

    fn run_on_workers(
        &self,
        events: impl IntoIterator<Item = In>,
        workers: WorkerConfig,
        sink: Option<&dyn Sink<Out>>,
    ) -> Result<RunSummary, Error> {
        let delivery = Delivery::new(sink, self.len());
        let Opened { stage_names, sender, receiver, intake, live } =
            open(slot_names(self, sink), &workers)?;
        let (loads, samples) = thread::scope(|scope| -> Result<_, Error> {
            let sampler = thread::Builder::new()
                .name("queue-sampler".to_owned())
                .spawn_scoped(scope, {
                    let (receiver, intake) = (receiver.clone(), &*intake);
                    move || sample_depth(|| receiver.len(), intake, workers.trace_one_in)
                })
                .map_err(spawn_error("the queue sampler".to_owned()));
            let handles = spawn_scoped_workers(
                scope,
                (self, &delivery),
                &receiver,
                &stage_names,
                &workers,
                &live,
            );
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
        Ok(sum_up(loads, &stage_names, &intake, samples, true))
    }
}

type WorkerHandles<'scope> = Vec<(thread::ScopedJoinHandle<'scope, ()>, SharedLoad)>;

fn spawn_scoped_workers<'scope, 'env, In: Send + 'static, Out: 'static>(
    scope: &'scope Scope<'scope, 'env>,
    (pipeline, delivery): (&'env Pipeline<In, Out>, &'env Delivery<'env, Out>),
    receiver: &Receiver<Envelope<In>>,
    stage_names: &[String],
    workers: &WorkerConfig,
    live: &Arc<LiveRun>,
) -> Result<WorkerHandles<'scope>, Error> {
    (0..workers.count)
        .map(|index| {
            let queue = receiver.clone();
            let seat = Seat { run: Arc::clone(live), index };
            let load = new_load(index, stage_names);
            let shared = Arc::clone(&load);
            workers
                .thread(index)
                .spawn_scoped(scope, move || work(pipeline, delivery, &queue, &shared, &seat))
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
fn feed<In>(
    sender: &Sender<Envelope<In>>,
    intake: &Intake,
    events: impl IntoIterator<Item = In>,
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
        let sent = submit(intake, event, arrived_ns, |envelope| {
            sender.send(envelope).map(|()| sender.len())
        });
        if sent.is_err() {
            return; // every worker is gone; `run_concurrent` reports why
        }
    }
}
