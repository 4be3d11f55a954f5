//! The concurrent pool: a bounded queue (crossbeam-channel) feeding `n` named worker threads, each
//! running the whole pipeline per event, as a service would. Panics are caught per event; shutdown
//! drains the queue; every event is accounted for in the [`RunSummary`](crate::run::RunSummary).
//!
//! - this module: [`WorkerConfig`], how many threads, how deep a queue, how fast events arrive;
//! - `intake`: what every way of running shares to open, feed and sum up a run: the envelope,
//!   the intake's figures, submitting one event, the queue sampler;
//! - `worker`: one worker's loop and how it books each event;
//! - `concurrent`: [`Pipeline::run_concurrent`](crate::Pipeline::run_concurrent), a finite batch
//!   on scoped threads;
//! - `pool`: [`WorkerPool`], a long-running pool fed by `submit`;
//! - `async_pool` (feature `tokio`): `AsyncWorkerPool` and `AsyncPipeline::run_concurrent`,
//!   worker tasks on the caller's tokio runtime.

#[cfg(feature = "tokio")]
mod async_pool;
mod concurrent;
mod intake;
// Read only by the metrics endpoint (feature `prometheus`); the workers keep it either way.
#[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
pub(crate) mod live;
mod pool;
mod worker;

use std::thread;
use std::time::Duration;

use crate::error::Error;
use crate::queue;

#[cfg(feature = "tokio")]
pub use async_pool::AsyncWorkerPool;
pub use pool::{TrySubmitError, WorkerPool};

/// How many workers, how deep a queue, and how fast events arrive.
///
/// ```
/// let workers = pipeline_runtime::WorkerConfig::new(4).queue(1024).arrival_rate(5_000.0);
/// assert_eq!(workers.count(), 4);
/// ```
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    count: usize,
    capacity: usize,
    arrival_rate: Option<f64>,
    trace_one_in: Duration,
    stack_size: Option<usize>,
}

impl WorkerConfig {
    /// `count` worker threads over a queue of 1024 events, events submitted as fast as the queue
    /// takes them.
    pub fn new(count: usize) -> Self {
        WorkerConfig {
            count,
            capacity: 1024,
            arrival_rate: None,
            trace_one_in: Duration::from_millis(5),
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
        let builder = thread::Builder::new().name(worker::worker_name(index));
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

    /// Paces [`Pipeline::run_concurrent`](crate::Pipeline::run_concurrent)'s events at a fixed rate (an open loop: arrivals do not
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
        self.trace_one_in = interval;
        self
    }

    /// The number of worker threads.
    pub fn count(&self) -> usize {
        self.count
    }

    fn validate(&self) -> Result<(), Error> {
        let problem = if self.count == 0 {
            "`WorkerConfig::new(0)`: at least one worker is needed"
        } else if self.count > MAX_WORKERS {
            "`WorkerConfig::new(..)` is above 4,096 threads: more workers than that only adds \
             switching; use a few per core"
        } else if self.capacity == 0 {
            "`.queue(0)`: the queue needs room for at least one event"
        } else if self.capacity > queue::MAX_CAPACITY {
            "`.queue(..)` is above 16,777,216 events: a backlog that deep is minutes of work at \
             any rate; bound it lower and let `submit` wait (or `try_submit` hand events back)"
        } else if self.arrival_rate.is_some_and(|rate| !(rate.is_finite() && rate > 0.0)) {
            "`.arrival_rate(..)` must be a positive, finite number of events per second"
        } else if self.trace_one_in.is_zero() {
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

/// The error for a worker (or sampler) thread the system would not start.
fn spawn_error(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Spawn { what, source }
}
