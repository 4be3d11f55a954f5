//! [`Pipeline`]: stages in order, one event at a time.

use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use crate::stage::{Stage, StageError};

/// An ordered list of stages that every event passes through.
///
/// ```
/// use pipeline_runtime::{Pipeline, Stage, StageError};
///
/// struct AddOne;
/// impl Stage<u32> for AddOne {
///     fn name(&self) -> &str { "AddOne" }
///     fn process(&self, e: u32) -> Result<u32, StageError> { Ok(e + 1) }
/// }
/// struct RejectOdd;
/// impl Stage<u32> for RejectOdd {
///     fn name(&self) -> &str { "RejectOdd" }
///     fn process(&self, e: u32) -> Result<u32, StageError> {
///         if e % 2 == 1 { Err(StageError::rejected("odd")) } else { Ok(e) }
///     }
/// }
///
/// let pipeline = Pipeline::new().stage(AddOne).stage(RejectOdd);
/// assert_eq!(pipeline.run(1).unwrap(), 2);
/// let halt = pipeline.run(2).unwrap_err();
/// assert_eq!(halt.stage(), "RejectOdd");
/// ```
pub struct Pipeline<E> {
    stages: Vec<Box<dyn Stage<E>>>,
}

impl<E> Pipeline<E> {
    /// An empty pipeline: `run` hands every event back unchanged.
    pub fn new() -> Self {
        Pipeline { stages: Vec::new() }
    }

    /// Appends a stage; events reach it after every stage added before.
    #[must_use]
    pub fn stage(mut self, stage: impl Stage<E> + 'static) -> Self {
        self.stages.push(Box::new(stage));
        self
    }

    /// The stages' names, in order.
    pub fn stage_names(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().map(|s| s.name())
    }

    /// How many stages there are.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// Whether there are no stages.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Threads one event through every stage in order.
    ///
    /// # Errors
    ///
    /// Stops at the first stage that rejects or fails the event, and says which one in the
    /// returned [`Halt`].
    pub fn run(&self, event: E) -> Result<E, Halt> {
        let mut event = event;
        for (index, stage) in self.stages.iter().enumerate() {
            event = stage.process(event).map_err(|error| Halt {
                stage_index: index,
                stage: stage.name().to_owned(),
                error,
            })?;
        }
        Ok(event)
    }
}

impl<E> Pipeline<E> {
    /// [`run`](Self::run) for a worker: times each stage into `stage_ns` (one slot per stage) and
    /// turns a panicking stage into [`StageError::Panicked`] attributed to it, so one bad event
    /// cannot take its worker down.
    pub(crate) fn run_isolated(&self, event: E, stage_ns: &mut [u64]) -> Result<E, Halt> {
        let mut event = event;
        let mut started = crate::clock::now_ns();
        for (index, stage) in self.stages.iter().enumerate() {
            let result = panic::catch_unwind(AssertUnwindSafe(|| stage.process(event)))
                .unwrap_or_else(|payload| {
                    Err(StageError::Panicked { message: panic_message(&*payload) })
                });
            let finished = crate::clock::now_ns();
            stage_ns[index] = finished.saturating_sub(started);
            started = finished;
            event = result.map_err(|error| Halt {
                stage_index: index,
                stage: stage.name().to_owned(),
                error,
            })?;
        }
        Ok(event)
    }
}

/// The text of a panic's payload (`panic!("...")` gives `&str` or `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

impl<E> Default for Pipeline<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> fmt::Debug for Pipeline<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.stage_names()).finish()
    }
}

/// An event that did not make it through: which stage stopped it, and why.
#[derive(Debug, thiserror::Error)]
#[error("stage `{stage}` stopped the event: {error}")]
pub struct Halt {
    stage_index: usize,
    stage: String,
    #[source]
    error: StageError,
}

impl Halt {
    /// The name of the stage that stopped the event.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// The position of that stage in the pipeline, from 0.
    pub fn stage_index(&self) -> usize {
        self.stage_index
    }

    /// Why it stopped the event.
    pub fn error(&self) -> &StageError {
        &self.error
    }

    /// Takes the [`StageError`] out.
    pub fn into_error(self) -> StageError {
        self.error
    }
}
