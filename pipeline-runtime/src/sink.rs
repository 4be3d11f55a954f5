//! [`Sink`]: where a concurrent run hands each completed event's output.

use std::sync::mpsc::SyncSender;

use crate::stage::StageError;

/// Where [`Pipeline::run_concurrent_into`](crate::Pipeline::run_concurrent_into) and
/// [`WorkerPool::start_with_sink`](crate::WorkerPool::start_with_sink) hand the output of every
/// event that made it through the stages, exactly once each.
///
/// The worker that ran the event calls the sink, so a slow sink slows the workers (and, through
/// the bounded queue, the producers) instead of piling outputs up in memory. Its calls are
/// measured like a stage's, in a row named after it (`sink` unless [`name`](Sink::name) says
/// otherwise): a slow sink is visible, and named by the run's diagnosis. A sink that panics or
/// returns an error fails that event, counted against the sink.
///
/// Implemented for closures `Fn(T)` (aggregate with atomics or a `Mutex`) and for
/// `std::sync::mpsc::SyncSender<T>`, a bounded channel: read its receiver as an iterator of
/// outputs on another thread. An unbounded `Sender` is deliberately not a sink.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use pipeline_runtime::{Pipeline, Stage, StageResult, WorkerConfig};
///
/// struct Square;
/// impl Stage<u64> for Square {
///     type Out = u64;
///     fn name(&self) -> &str { "Square" }
///     fn process(&self, n: u64) -> StageResult<u64> { Ok(Some(n * n)) }
/// }
/// let total = AtomicU64::new(0);
/// let sink = |square: u64| { total.fetch_add(square, Ordering::Relaxed); };
/// let run = Pipeline::new().stage(Square).run_concurrent_into(0..10, WorkerConfig::new(2), &sink)?;
/// assert_eq!((run.completed, total.into_inner()), (10, 285));
/// # Ok::<(), pipeline_runtime::Error>(())
/// ```
pub trait Sink<T>: Send + Sync {
    /// The sink's row in reports and its place in traces and stops.
    fn name(&self) -> &str {
        "sink"
    }

    /// Takes one output.
    ///
    /// # Errors
    ///
    /// A [`StageError`] when the output could not be delivered (the receiver is gone, a write
    /// failed): the event then counts as failed at the sink.
    fn accept(&self, output: T) -> Result<(), StageError>;
}

impl<T, F: Fn(T) + Send + Sync> Sink<T> for F {
    #[inline]
    fn accept(&self, output: T) -> Result<(), StageError> {
        self(output);
        Ok(())
    }
}

/// A bounded channel: a full channel makes the worker wait (backpressure); a dropped receiver
/// fails the event (`the sink's receiver is gone`), which is counted, never silent.
impl<T: Send> Sink<T> for SyncSender<T> {
    #[inline]
    fn accept(&self, output: T) -> Result<(), StageError> {
        self.send(output).map_err(|_| {
            StageError::failed("the sink's receiver is gone: the output could not be delivered")
        })
    }
}
