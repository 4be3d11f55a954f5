//! [`Pipeline`]: stages in order, one event at a time, each stage's output the next one's input.

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use crate::callsite::Callsite;
use crate::stage::{Stage, StageError, StageResult};

/// Stages in order that every event passes through: each stage's output is the next one's
/// input, so the types chain at compile time. A `Pipeline<In, Out>` takes `In` and hands back
/// `Out`.
///
/// [`run`](Self::run) takes one event on the calling thread. The concurrent runs,
/// [`run_concurrent`](Self::run_concurrent) and [`run_concurrent_into`](Self::run_concurrent_into),
/// are defined with the worker pool they start (`workers/concurrent.rs`), which this module
/// does not know of.
///
/// ```
/// use pipeline_runtime::{Pipeline, Stage, StageError, StageResult};
///
/// struct Parse;
/// impl Stage<&'static str> for Parse {
///     type Out = u32;
///     fn name(&self) -> &str { "Parse" }
///     fn process(&self, line: &'static str) -> StageResult<u32> {
///         line.parse().map(Some).map_err(|_| StageError::rejected("not a number"))
///     }
/// }
/// struct KeepEven;
/// impl Stage<u32> for KeepEven {
///     type Out = u32;
///     fn name(&self) -> &str { "KeepEven" }
///     fn process(&self, n: u32) -> StageResult<u32> {
///         Ok((n % 2 == 0).then_some(n)) // `None`: filtered
///     }
/// }
///
/// let pipeline: pipeline_runtime::Pipeline<&str, u32> = Pipeline::new().stage(Parse).stage(KeepEven);
/// assert_eq!(pipeline.run("42").unwrap(), Some(42));
/// assert_eq!(pipeline.run("7").unwrap(), None);
/// let stop = pipeline.run("x").unwrap_err();
/// assert_eq!(stop.stage(), "Parse");
/// ```
pub struct Pipeline<In, Out = In> {
    /// Shared with each stage's stops: stopping an event copies no name.
    names: Vec<Arc<str>>,
    chain: Chain<In, Out>,
}

/// Every stage so far, composed: one boxed call per stage per event, statically typed inside.
type Chain<In, Out> = Box<dyn Fn(In, &mut StageTimer<'_>) -> Outcome<Out> + Send + Sync>;

/// How one event's pass through the stages ended.
pub(crate) enum Outcome<T> {
    /// Every stage passed it on: the last one's output.
    Passed(T),
    /// Stage `stage_index` dropped it (`process` returned `None`).
    Filtered {
        /// The filter's position in the pipeline.
        stage_index: usize,
    },
    /// A stage rejected or failed it.
    Stopped(Stop),
}

impl<T> Outcome<T> {
    /// What stage `index`, named `name`, returning `result` did to the event.
    #[inline]
    pub(crate) fn of(index: usize, name: &Arc<str>, result: StageResult<T>) -> Outcome<T> {
        match result {
            Ok(Some(output)) => Outcome::Passed(output),
            Ok(None) => Outcome::Filtered { stage_index: index },
            Err(error) => {
                Outcome::Stopped(Stop { stage_index: index, stage: Arc::clone(name), error })
            }
        }
    }

    /// `Ok` with the output when the event passed; otherwise the same stop as an outcome of
    /// another type (what follows a stop never runs, whatever it would have made).
    pub(crate) fn stopped<U>(self) -> Result<T, Outcome<U>> {
        match self {
            Outcome::Passed(value) => Ok(value),
            Outcome::Filtered { stage_index } => Err(Outcome::Filtered { stage_index }),
            Outcome::Stopped(stop) => Err(Outcome::Stopped(stop)),
        }
    }
}

/// Times each stage into its slot and turns a panicking stage into [`StageError::Panicked`]
/// when a worker runs the event; does neither for [`Pipeline::run`].
pub(crate) struct StageTimer<'a> {
    stage_ns: Option<&'a mut [u64]>,
    started_ns: u64,
}

impl StageTimer<'_> {
    #[inline]
    fn call<T>(
        &mut self,
        index: usize,
        name: &Arc<str>,
        process: impl FnOnce() -> StageResult<T>,
    ) -> Outcome<T> {
        let result = match &mut self.stage_ns {
            None => process(),
            Some(stage_ns) => {
                let result =
                    panic::catch_unwind(AssertUnwindSafe(process)).unwrap_or_else(|payload| {
                        Err(StageError::Panicked { message: panic_message(&*payload) })
                    });
                let finished = crate::clock::now_ns();
                stage_ns[index] = finished.saturating_sub(self.started_ns);
                self.started_ns = finished;
                result
            }
        };
        Outcome::of(index, name, result)
    }
}

impl<In: 'static> Pipeline<In> {
    /// An empty pipeline: `run` hands every event back unchanged.
    pub fn new() -> Self {
        Pipeline { names: Vec::new(), chain: Box::new(|event, _| Outcome::Passed(event)) }
    }
}

impl<In: 'static, Out: 'static> Pipeline<In, Out> {
    /// Appends a stage that takes this pipeline's output; events reach it after every stage
    /// added before, and the pipeline now hands back what it returns.
    #[must_use]
    pub fn stage<S>(self, stage: S) -> Pipeline<In, S::Out>
    where
        S: Stage<Out> + 'static,
        S::Out: 'static,
    {
        let name = Arc::from(stage.name());
        self.then(name, move |event| stage.process(event))
    }

    /// Appends a stage under a name of its own, `name` in every report, trace and stop: two
    /// instances of one stage type (`Dedup` for users, `Dedup` for orders) are then two rows.
    ///
    /// ```
    /// use pipeline_runtime::{Pipeline, Stage, StageResult};
    ///
    /// struct Below(u32);
    /// impl Stage<u32> for Below {
    ///     type Out = u32;
    ///     fn name(&self) -> &str { "Below" }
    ///     fn process(&self, n: u32) -> StageResult<u32> { Ok((n < self.0).then_some(n)) }
    /// }
    /// let pipeline = Pipeline::new().stage_named("under-100", Below(100)).stage_named("under-10", Below(10));
    /// assert_eq!(pipeline.stage_names().collect::<Vec<_>>(), ["under-100", "under-10"]);
    /// ```
    ///
    /// # Panics
    ///
    /// When `name` is empty or only white space: a report row needs a name a person can read.
    #[must_use]
    pub fn stage_named<S>(self, name: &str, stage: S) -> Pipeline<In, S::Out>
    where
        S: Stage<Out> + 'static,
        S::Out: 'static,
    {
        assert!(
            !name.trim().is_empty(),
            "Pipeline::stage_named: the name is empty; give the name reports should show"
        );
        let instance = Callsite::named_stage(name);
        self.then(Arc::from(name), move |event| stage.process_as(event, instance))
    }

    fn then<Next: 'static>(
        self,
        name: Arc<str>,
        process: impl Fn(Out) -> StageResult<Next> + Send + Sync + 'static,
    ) -> Pipeline<In, Next> {
        let Pipeline { mut names, chain } = self;
        let index = names.len();
        names.push(Arc::clone(&name));
        Pipeline {
            names,
            chain: Box::new(move |event, timer| match chain(event, timer).stopped() {
                Ok(input) => timer.call(index, &name, || process(input)),
                Err(stopped) => stopped,
            }),
        }
    }
}

impl<In, Out> Pipeline<In, Out> {
    /// The stages' names, in order.
    pub fn stage_names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|name| &**name)
    }

    /// How many stages there are.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no stages.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Threads one event through every stage in order: `Ok(Some(output))` when it came through,
    /// `Ok(None)` when a filter dropped it.
    ///
    /// # Errors
    ///
    /// Stops at the first stage that rejects or fails the event, and says which one in the
    /// returned [`Stop`].
    pub fn run(&self, event: In) -> Result<Option<Out>, Stop> {
        // For the program's subscribers (an OpenTelemetry layer) only: a Chrome trace draws
        // `event` slices for worker pools' events, as the native writer does.
        if crate::mode::Mode::now().emits_spans() {
            return self.run_in_event_span(event);
        }
        self.run_plain(event)
    }

    fn run_plain(&self, event: In) -> Result<Option<Out>, Stop> {
        match (self.chain)(event, &mut StageTimer { stage_ns: None, started_ns: 0 }) {
            Outcome::Passed(output) => Ok(Some(output)),
            Outcome::Filtered { .. } => Ok(None),
            Outcome::Stopped(stop) => Err(stop),
        }
    }

    /// [`run`](Self::run) while spans are emitted: the event is one `event` span (a child of
    /// the caller's current span), its stages nested in it, and per-event sampling decides
    /// once whether any of its spans are made.
    #[inline(never)]
    fn run_in_event_span(&self, event: In) -> Result<Option<Out>, Stop> {
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let traced = crate::trace_records::traces_event(id);
        let _tracing = TracedWhile::set(traced);
        let span = (traced && tracing::dispatcher::has_been_set()).then(|| {
            crate::__private::quiet(|| tracing::info_span!(target: "pipeline", "event").entered())
        });
        let result = self.run_plain(event);
        if let Some(span) = span {
            crate::__private::quiet(move || drop(span));
        }
        result
    }

    /// [`run`](Self::run) for a worker: times each stage into `stage_ns` (one slot per stage) and
    /// turns a panicking stage into [`StageError::Panicked`] attributed to it, so one bad event
    /// cannot take its worker down.
    pub(crate) fn run_isolated(&self, event: In, stage_ns: &mut [u64]) -> Outcome<Out> {
        let started_ns = crate::clock::now_ns();
        (self.chain)(event, &mut StageTimer { stage_ns: Some(stage_ns), started_ns })
    }
}

/// The text of a panic's payload (`panic!("...")` gives `&str` or `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

impl<In: 'static> Default for Pipeline<In> {
    fn default() -> Self {
        Self::new()
    }
}

impl<In, Out> fmt::Debug for Pipeline<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.names).finish()
    }
}

/// An event that did not make it through: which stage stopped it, and why.
#[derive(Debug)]
pub struct Stop {
    stage_index: usize,
    /// The pipeline's own copy of the name, shared: a stop allocates nothing for it.
    stage: Arc<str>,
    error: StageError,
}

impl Stop {
    /// Stage `stage_index`, named `stage`, stopped the event with `error`.
    pub(crate) fn new(stage_index: usize, stage: Arc<str>, error: StageError) -> Self {
        Stop { stage_index, stage, error }
    }

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

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stage `{}` stopped the event: {}", self.stage, self.error)
    }
}

/// Its source is the error the stage returned, when it failed with one.
impl StdError for Stop {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source().map(|source| source as &(dyn StdError + 'static))
    }
}

/// This thread's per-event sampling decision while it lives (put back even if a stage panics).
struct TracedWhile {
    was: bool,
}

impl TracedWhile {
    fn set(traced: bool) -> Self {
        TracedWhile { was: crate::trace_records::set_traced(traced) }
    }
}

impl Drop for TracedWhile {
    fn drop(&mut self) {
        crate::trace_records::set_traced(self.was);
    }
}
