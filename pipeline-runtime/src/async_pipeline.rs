//! [`AsyncPipeline`]: stages in order, some of which `await`, one event at a time.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::callsite::Callsite;
use crate::clock::now_ns;
use crate::pipeline::{panic_message, Outcome, Stop};
use crate::stage::{AsyncStage, Stage, StageError, StageResult};
use crate::trace_records::{self, AsyncOutcome, AsyncSlice};

/// Stages in order that every event passes through, like a [`Pipeline`](crate::Pipeline), where
/// some stages are `async` ([`AsyncStage`]: an `async fn process` under `#[stage]`). Sync and
/// async stages mix: `.stage(..)` adds a synchronous one, `.stage_async(..)` an async one, and
/// `run(event).await` threads one event through all of them.
///
/// Each async stage's call is measured across its awaits: its wall time (what the event
/// waited), its busy time (what it held a thread) and the allocations its polls made.
///
/// Its concurrent run on tokio, `run_concurrent` (feature `tokio`), is defined with the async
/// worker pool it starts (`workers/async_pool.rs`).
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
    /// Shared with each stage's stops: stopping an event copies no name.
    names: Vec<Arc<str>>,
    steps: Box<dyn Steps<In, Out>>,
}

/// A future of an event's outcome, borrowing the pipeline's stages.
type OutcomeFuture<'a, Out> = Pin<Box<dyn Future<Output = Outcome<Out>> + Send + 'a>>;

/// What a worker's run measures of each stage's call, one slot per stage: its wall time (first
/// poll to completion: what the event waited for it) and its busy time (the sum of its polls:
/// what it held a thread).
/// Of the time between its polls, `ready_ns` is how long it was woken and waiting to be polled
/// again (runnable, with every runtime thread busy), as the runner measured it.
#[derive(Debug, Default)]
pub(crate) struct StageClocks {
    pub(crate) wall_ns: Vec<u64>,
    pub(crate) busy_ns: Vec<u64>,
    pub(crate) ready_ns: Vec<u64>,
}

#[cfg_attr(not(feature = "tokio"), allow(dead_code))] // used by the async runner
impl StageClocks {
    /// Clocks for `slots` stages (and a sink), all zero.
    pub(crate) fn new(slots: usize) -> Self {
        StageClocks { wall_ns: vec![0; slots], busy_ns: vec![0; slots], ready_ns: vec![0; slots] }
    }

    /// Zeroes every slot for the next event.
    pub(crate) fn clear(&mut self) {
        self.wall_ns.fill(0);
        self.busy_ns.fill(0);
        self.ready_ns.fill(0);
    }
}

thread_local! {
    /// How long the event being polled on this thread waited, woken, for this poll.
    static POLL_DELAY: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Says how long the event about to be polled on this thread was woken before this poll (its
/// runner measures it); the stage being polled takes it as its own.
#[cfg(feature = "tokio")]
pub(crate) fn set_poll_delay(ns: u64) {
    let _ = POLL_DELAY.try_with(|delay| delay.set(ns));
}

fn take_poll_delay() -> u64 {
    POLL_DELAY.try_with(|delay| delay.replace(0)).unwrap_or(0)
}

/// Every stage so far, composed: one boxed future per stage per event, typed inside.
trait Steps<In, Out>: Send + Sync {
    /// Runs the event through; with `clocks` (a worker's run), times each stage's call into
    /// its slot, draws it on the traced event's track, and turns a panicking stage into
    /// [`StageError::Panicked`] attributed to it.
    fn run<'a>(&'a self, event: In, clocks: Option<&'a mut StageClocks>) -> OutcomeFuture<'a, Out>
    where
        In: 'a;
}

/// No stage yet: the event passes unchanged.
struct NoStages;

impl<In: Send> Steps<In, In> for NoStages {
    fn run<'a>(&'a self, event: In, _: Option<&'a mut StageClocks>) -> OutcomeFuture<'a, In>
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
    /// The name as the trace writes it.
    trace_name: &'static str,
    step: Step,
}

/// A stage as [`Then`] calls it: sync or async, by name or as a named instance.
trait Step<In>: Send + Sync {
    type Out;
    /// Whether a traced event's track shows its calls. Async stages only: a synchronous call
    /// runs within one poll, and is drawn on the thread that ran it, inside that poll's slice.
    const ON_EVENT_TRACK: bool;
    fn call(&self, event: In) -> impl Future<Output = StageResult<Self::Out>> + Send;
}

/// A synchronous stage (`instance` when it was added under a name of its own).
struct SyncStep<S> {
    stage: S,
    instance: Option<&'static Callsite>,
}

impl<In: Send, S: Stage<In>> Step<In> for SyncStep<S>
where
    S::Out: Send,
{
    type Out = S::Out;
    const ON_EVENT_TRACK: bool = false;
    fn call(&self, event: In) -> impl Future<Output = StageResult<S::Out>> + Send {
        // The call runs when the future is first polled (not when it is made), so the poll's
        // time (its busy time) holds it.
        let mut event = Some(event);
        std::future::poll_fn(move |_| {
            let event = event.take().expect("a ready future is not polled again");
            std::task::Poll::Ready(match self.instance {
                None => self.stage.process(event),
                Some(instance) => self.stage.process_as(event, instance),
            })
        })
    }
}

/// An async stage (`instance` when it was added under a name of its own).
struct AsyncStep<S> {
    stage: S,
    instance: Option<&'static Callsite>,
}

impl<In: Send, S: AsyncStage<In>> Step<In> for AsyncStep<S> {
    type Out = S::Out;
    const ON_EVENT_TRACK: bool = true;
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
        mut clocks: Option<&'a mut StageClocks>,
    ) -> OutcomeFuture<'a, S::Out>
    where
        In: 'a,
    {
        Box::pin(async move {
            let input = match self.before.run(event, clocks.as_deref_mut()).await.stopped() {
                Ok(input) => input,
                Err(stopped) => return stopped,
            };
            let result = match clocks {
                None => self.step.call(input).await,
                Some(clocks) => {
                    let started_ns = now_ns();
                    let slice = StageSlice::begin(started_ns, self.trace_name, S::ON_EVENT_TRACK);
                    let future = std::pin::pin!(self.step.call(input));
                    let mut call = Polled { future, busy_ns: 0, ready_ns: 0 };
                    let result = (&mut call).await;
                    let ended_ns = now_ns();
                    slice.end(ended_ns, &result);
                    clocks.wall_ns[self.index] = ended_ns.saturating_sub(started_ns);
                    clocks.busy_ns[self.index] = call.busy_ns;
                    clocks.ready_ns[self.index] = call.ready_ns;
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
        let trace_name = Callsite::named_stage(&name).name();
        let then = Then { before: steps, index, name, trace_name, step };
        AsyncPipeline { names, steps: Box::new(then) }
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
    /// returned [`Stop`].
    pub async fn run(&self, event: In) -> Result<Option<Out>, Stop> {
        match self.steps.run(event, None).await {
            Outcome::Passed(output) => Ok(Some(output)),
            Outcome::Filtered { .. } => Ok(None),
            Outcome::Stopped(stop) => Err(stop),
        }
    }

    /// [`run`](Self::run) for a worker: times each stage's call into `clocks` (wall and busy),
    /// draws it on the traced event's track, and turns a panicking stage into
    /// [`StageError::Panicked`] attributed to it, so one bad event cannot take its worker down.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) async fn run_isolated(&self, event: In, clocks: &mut StageClocks) -> Outcome<Out> {
        self.steps.run(event, Some(clocks)).await
    }
}

/// A stage call's future, measured: the time its polls take adds up to its busy time, the
/// delays before them (see [`set_poll_delay`]) to its ready time, and its panics become
/// [`StageError::Panicked`] (each poll runs under `catch_unwind`, and a poll that panicked is
/// never polled again).
struct Polled<F> {
    future: F,
    busy_ns: u64,
    ready_ns: u64,
}

impl<T, F: Future<Output = StageResult<T>> + Unpin> Future for Polled<F> {
    type Output = StageResult<T>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let started_ns = now_ns();
        self.ready_ns += take_poll_delay();
        let future = &mut self.future;
        // The future is dropped after a panic, never polled again: unwind safety holds.
        let poll =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Pin::new(future).poll(cx)))
                .unwrap_or_else(|payload| {
                    std::task::Poll::Ready(Err(StageError::Panicked {
                        message: panic_message(&*payload),
                    }))
                });
        self.busy_ns += now_ns().saturating_sub(started_ns);
        poll
    }
}

/// A stage's slice on the track of the traced async event it runs for (nothing outside one),
/// ended with how the call ended; a call dropped before it completed ends as cancelled.
struct StageSlice {
    slice: Option<(AsyncSlice, &'static str)>,
}

impl StageSlice {
    fn begin(ts: u64, name: &'static str, drawn: bool) -> Self {
        let slice = drawn.then(|| trace_records::begin_stage_in_event(ts, name)).flatten();
        StageSlice { slice: slice.map(|slice| (slice, name)) }
    }

    fn end<T>(mut self, ts: u64, result: &StageResult<T>) {
        let outcome = match result {
            Ok(Some(_)) => AsyncOutcome::Completed,
            Ok(None) => AsyncOutcome::Filtered,
            Err(StageError::Rejected { .. }) => AsyncOutcome::Rejected,
            Err(StageError::Panicked { .. }) => AsyncOutcome::Panicked,
            Err(_) => AsyncOutcome::Failed,
        };
        if let Some((slice, name)) = self.slice.take() {
            trace_records::end_async(slice, ts, name, outcome);
        }
    }
}

impl Drop for StageSlice {
    fn drop(&mut self) {
        if let Some((slice, name)) = self.slice.take() {
            trace_records::end_async(slice, now_ns(), name, AsyncOutcome::Cancelled);
        }
    }
}

impl<In, Out> fmt::Debug for AsyncPipeline<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.names).finish()
    }
}
