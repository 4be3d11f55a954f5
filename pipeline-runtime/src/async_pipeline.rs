//! [`AsyncPipeline`]: stages in order, some of which `await`, one event at a time.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::pipeline::{panic_message, Halt, Outcome};
use crate::recorder::Callsite;
use crate::stage::{AsyncStage, Stage, StageError, StageResult};

/// Stages in order that every event passes through, like a [`Pipeline`](crate::Pipeline), where
/// some stages are `async` ([`AsyncStage`]: an `async fn process` under `#[stage]`). Sync and
/// async stages mix: `.stage(..)` adds a synchronous one, `.stage_async(..)` an async one, and
/// `run(event).await` threads one event through all of them.
///
/// Each async stage's call is measured across its awaits: its wall time (what the event
/// waited), its busy time (what it held a thread) and the allocations its polls made.
///
/// ```
/// use pipeline_runtime::{AsyncPipeline, AsyncStage, Stage, StageResult};
///
/// struct Parse;
/// impl Stage<&'static str> for Parse {
///     type Out = u64;
///     fn name(&self) -> &str { "Parse" }
///     fn process(&self, line: &'static str) -> StageResult<u64> { Ok(Some(line.parse()?)) }
/// }
/// struct Lookup;
/// impl AsyncStage<u64> for Lookup {
///     type Out = String;
///     fn name(&self) -> &str { "Lookup" }
///     async fn process(&self, id: u64) -> StageResult<String> { Ok(Some(format!("user-{id}"))) }
/// }
///
/// let pipeline = AsyncPipeline::new().stage(Parse).stage_async(Lookup);
/// # let block_on = |f| pipeline_runtime::__private::block_on_for_doc(f);
/// assert_eq!(block_on(pipeline.run("7")).unwrap(), Some("user-7".to_owned()));
/// ```
pub struct AsyncPipeline<In, Out = In> {
    /// Shared with each stage's halts: stopping an event copies no name.
    names: Vec<Arc<str>>,
    steps: Box<dyn Steps<In, Out>>,
}

/// A future of an event's outcome, borrowing the pipeline's stages.
type OutcomeFuture<'a, Out> = Pin<Box<dyn Future<Output = Outcome<Out>> + Send + 'a>>;

/// Every stage so far, composed: one boxed future per stage per event, typed inside.
trait Steps<In, Out>: Send + Sync {
    /// Runs the event through; with `stage_ns` (a worker's run), times each stage's call into
    /// its slot and turns a panicking stage into [`StageError::Panicked`] attributed to it.
    fn run<'a>(&'a self, event: In, stage_ns: Option<&'a mut [u64]>) -> OutcomeFuture<'a, Out>
    where
        In: 'a;
}

/// No stage yet: the event passes unchanged.
struct NoStages;

impl<In: Send> Steps<In, In> for NoStages {
    fn run<'a>(&'a self, event: In, _: Option<&'a mut [u64]>) -> OutcomeFuture<'a, In>
    where
        In: 'a,
    {
        Box::pin(std::future::ready(Outcome::Passed(event)))
    }
}

/// The stages before, then one more: `step` takes what they hand on.
struct Then<In, Mid, Step> {
    before: Box<dyn Steps<In, Mid>>,
    index: usize,
    name: Arc<str>,
    step: Step,
}

/// A stage as [`Then`] calls it: sync or async, by name or as a named instance.
trait Step<In>: Send + Sync {
    type Out;
    fn call(&self, event: In) -> impl Future<Output = StageResult<Self::Out>> + Send;
}

/// A synchronous stage (`instance` when it was added under a name of its own).
struct SyncStep<S> {
    stage: S,
    instance: Option<&'static Callsite>,
}

impl<In, S: Stage<In>> Step<In> for SyncStep<S>
where
    S::Out: Send,
{
    type Out = S::Out;
    fn call(&self, event: In) -> impl Future<Output = StageResult<S::Out>> + Send {
        let result = match self.instance {
            None => self.stage.process(event),
            Some(instance) => self.stage.process_as(event, instance),
        };
        std::future::ready(result)
    }
}

/// An async stage (`instance` when it was added under a name of its own).
struct AsyncStep<S> {
    stage: S,
    instance: Option<&'static Callsite>,
}

impl<In: Send, S: AsyncStage<In>> Step<In> for AsyncStep<S> {
    type Out = S::Out;
    async fn call(&self, event: In) -> StageResult<S::Out> {
        match self.instance {
            None => self.stage.process(event).await,
            Some(instance) => self.stage.process_as(event, instance).await,
        }
    }
}

impl<In: Send, Mid: Send, S: Step<Mid>> Steps<In, S::Out> for Then<In, Mid, S>
where
    S::Out: Send,
{
    fn run<'a>(
        &'a self,
        event: In,
        mut stage_ns: Option<&'a mut [u64]>,
    ) -> OutcomeFuture<'a, S::Out>
    where
        In: 'a,
    {
        Box::pin(async move {
            let input = match self.before.run(event, stage_ns.as_deref_mut()).await.stopped() {
                Ok(input) => input,
                Err(stopped) => return stopped,
            };
            let result = match stage_ns {
                None => self.step.call(input).await,
                Some(stage_ns) => {
                    let started_ns = crate::clock::now_ns();
                    let result = CatchUnwind(std::pin::pin!(self.step.call(input))).await;
                    stage_ns[self.index] = crate::clock::now_ns().saturating_sub(started_ns);
                    result
                }
            };
            Outcome::of(self.index, &self.name, result)
        })
    }
}

impl<In: Send + 'static> AsyncPipeline<In> {
    /// An empty pipeline: `run` hands every event back unchanged.
    pub fn new() -> Self {
        AsyncPipeline { names: Vec::new(), steps: Box::new(NoStages) }
    }
}

impl<In: Send + 'static> Default for AsyncPipeline<In> {
    fn default() -> Self {
        Self::new()
    }
}

impl<In: Send + 'static, Out: Send + 'static> AsyncPipeline<In, Out> {
    /// Appends a synchronous stage that takes this pipeline's output.
    #[must_use]
    pub fn stage<S>(self, stage: S) -> AsyncPipeline<In, S::Out>
    where
        S: Stage<Out> + 'static,
        S::Out: Send + 'static,
    {
        let name = Arc::from(stage.name());
        self.then(name, SyncStep { stage, instance: None })
    }

    /// Appends an async stage that takes this pipeline's output.
    #[must_use]
    pub fn stage_async<S>(self, stage: S) -> AsyncPipeline<In, S::Out>
    where
        S: AsyncStage<Out> + 'static,
        S::Out: Send + 'static,
    {
        let name = Arc::from(stage.name());
        self.then(name, AsyncStep { stage, instance: None })
    }

    /// [`stage`](Self::stage) under a name of its own (see
    /// [`Pipeline::stage_named`](crate::Pipeline::stage_named)).
    ///
    /// # Panics
    ///
    /// When `name` is empty or only white space.
    #[must_use]
    pub fn stage_named<S>(self, name: &str, stage: S) -> AsyncPipeline<In, S::Out>
    where
        S: Stage<Out> + 'static,
        S::Out: Send + 'static,
    {
        let instance = named_instance("AsyncPipeline::stage_named", name);
        self.then(Arc::from(name), SyncStep { stage, instance: Some(instance) })
    }

    /// [`stage_async`](Self::stage_async) under a name of its own: two instances of one stage
    /// type are two rows in reports.
    ///
    /// # Panics
    ///
    /// When `name` is empty or only white space.
    #[must_use]
    pub fn stage_async_named<S>(self, name: &str, stage: S) -> AsyncPipeline<In, S::Out>
    where
        S: AsyncStage<Out> + 'static,
        S::Out: Send + 'static,
    {
        let instance = named_instance("AsyncPipeline::stage_async_named", name);
        self.then(Arc::from(name), AsyncStep { stage, instance: Some(instance) })
    }

    fn then<S>(self, name: Arc<str>, step: S) -> AsyncPipeline<In, S::Out>
    where
        S: Step<Out> + 'static,
        S::Out: Send + 'static,
    {
        let AsyncPipeline { mut names, steps } = self;
        let index = names.len();
        names.push(Arc::clone(&name));
        AsyncPipeline { names, steps: Box::new(Then { before: steps, index, name, step }) }
    }
}

/// The call site of a stage added under `name` (checked: a report row needs a readable name).
fn named_instance(method: &str, name: &str) -> &'static Callsite {
    assert!(
        !name.trim().is_empty(),
        "{method}: the name is empty; give the name reports should show"
    );
    Callsite::named_stage(name)
}

impl<In, Out> AsyncPipeline<In, Out> {
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

    /// Threads one event through every stage in order, awaiting the async ones:
    /// `Ok(Some(output))` when it came through, `Ok(None)` when a filter dropped it.
    ///
    /// # Errors
    ///
    /// Stops at the first stage that rejects or fails the event, and says which one in the
    /// returned [`Halt`].
    pub async fn run(&self, event: In) -> Result<Option<Out>, Halt> {
        match self.steps.run(event, None).await {
            Outcome::Passed(output) => Ok(Some(output)),
            Outcome::Filtered { .. } => Ok(None),
            Outcome::Halted(halt) => Err(halt),
        }
    }

    /// [`run`](Self::run) for a worker: times each stage's call into `stage_ns` (one slot per
    /// stage: its wall time, first poll to completion) and turns a panicking stage into
    /// [`StageError::Panicked`] attributed to it, so one bad event cannot take its worker down.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) async fn run_isolated(&self, event: In, stage_ns: &mut [u64]) -> Outcome<Out> {
        self.steps.run(event, Some(stage_ns)).await
    }
}

/// A stage call's future whose panics become [`StageError::Panicked`]: each poll runs under
/// `catch_unwind`, and a poll that panicked is never polled again.
struct CatchUnwind<F>(F);

impl<T, F: Future<Output = StageResult<T>> + Unpin> Future for CatchUnwind<F> {
    type Output = StageResult<T>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        // The future is dropped after a panic, never polled again: unwind safety holds.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Pin::new(inner).poll(cx)))
            .unwrap_or_else(|payload| {
                std::task::Poll::Ready(Err(StageError::Panicked {
                    message: panic_message(&*payload),
                }))
            })
    }
}

impl<In, Out> fmt::Debug for AsyncPipeline<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.names).finish()
    }
}
