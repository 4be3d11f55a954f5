//! [`Pipeline::run_concurrent`]: a finite batch of events through scoped worker threads.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, Scope};
use std::time::Duration;

use super::core::{
    new_load, open, sample_depth, spawn_error, submit, sum_up, take_load, work, worker_name,
    Envelope, Intake, Opened, Seat, SharedLoad,
};
use super::live::LiveRun;
use super::Workers;
use crate::clock::now_ns;
use crate::error::Error;
use crate::pipeline::Pipeline;
use crate::queue::{QueueReceiver as Receiver, QueueSender as Sender};
use crate::run::{RunSummary, WorkerLoad};

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
        let Opened { stage_names, sender, receiver, intake, live } = open(self, &workers)?;
        let (loads, samples) = thread::scope(|scope| -> Result<_, Error> {
            let sampler = thread::Builder::new()
                .name("queue-sampler".to_owned())
                .spawn_scoped(scope, {
                    let (receiver, intake) = (receiver.clone(), &*intake);
                    move || sample_depth(receiver, intake, workers.sample_every)
                })
                .map_err(spawn_error("the queue sampler".to_owned()));
            let handles =
                spawn_scoped_workers(scope, self, &receiver, &stage_names, &workers, &live);
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

fn spawn_scoped_workers<'scope, 'env, E: Send>(
    scope: &'scope Scope<'scope, 'env>,
    pipeline: &'env Pipeline<E>,
    receiver: &Receiver<Envelope<E>>,
    stage_names: &[String],
    workers: &Workers,
    live: &Arc<LiveRun>,
) -> Result<Vec<(thread::ScopedJoinHandle<'scope, ()>, SharedLoad)>, Error> {
    (0..workers.count)
        .map(|index| {
            let queue = receiver.clone();
            let seat = Seat { run: Arc::clone(live), index };
            let load = new_load(index, stage_names);
            let shared = Arc::clone(&load);
            workers
                .thread(index)
                .spawn_scoped(scope, move || work(pipeline, &queue, &shared, &seat))
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
        let sent = submit(intake, event, arrived_ns, |envelope| {
            sender.send(envelope).map(|()| sender.len())
        });
        if sent.is_err() {
            return; // every worker is gone; `run_concurrent` reports why
        }
    }
}
