//! What `#[stage]` and `#[profiled]` expansions call. Not public API: names and signatures here
//! change whenever the macros change.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use tracing;

use crate::call_stats;
pub use crate::call_stats::{AsyncCall, CallGuard, PollGuard};
pub use crate::callsite::{Callsite, CallsiteKind};
use crate::mode::Mode;
use crate::stage::{IntoStageError, StageError, StageResult};

// What a `#[stage]`'s `process` returns, as the `Stage` trait's result. The macro reads the
// shape from how the return type is written. Inside the measured call the value stays as small
// as the user's: a stage that cannot fail is wrapped in [`Passed`] (the same size as what it
// returns), a fallible one becomes `Result<_, StageError>` (its error converted inside the call,
// so the call's trace slice can say how it failed); `Ok(Some(..))` is built after the call.

/// What a stage call returned, as the measurement sees it: whether it stopped the event.
pub trait Ended {
    /// The error that stopped the event, if it did.
    fn stage_error(&self) -> Option<&StageError>;
}

/// A call that cannot stop its event (`-> Out`, `-> Option<Out>`, or the sink's `()`).
pub struct Passed<R>(pub R);

impl<R> Ended for Passed<R> {
    #[inline(always)]
    fn stage_error(&self) -> Option<&StageError> {
        None
    }
}

impl<T> Ended for Result<T, StageError> {
    #[inline(always)]
    fn stage_error(&self) -> Option<&StageError> {
        self.as_ref().err()
    }
}

/// An async stage call's result, its failure written on the stage's span (entered while the call
/// is polled) as a sync call's is: `outcome`, and for failures the OpenTelemetry status.
#[inline]
pub fn outcome_on_span<R: Ended>(result: R) -> R {
    if let Some(error) = result.stage_error() {
        if Mode::now().wants_spans() && tracing::dispatcher::has_been_set() {
            let span = tracing::Span::current();
            if !span.is_none() {
                quiet(|| record_failure(&span, error));
            }
        }
    }
    result
}

/// Writes how a stage call failed on its span.
fn record_failure(span: &tracing::Span, error: &StageError) {
    // Rendered here, guarded and bounded: a panicking `Display` must not unwind through the
    // subscriber (its registry lock would be poisoned inside a destructor).
    let outcome = crate::trace_records::guarded_text(|| error.to_string());
    span.record("outcome", outcome.as_str());
    // A failure is an error to OpenTelemetry (tracing-opentelemetry reads these fields); a
    // rejection is a decision the stage made, not an error: its outcome says "rejected".
    if !matches!(error, StageError::Rejected { .. }) {
        span.record("otel.status_code", "ERROR");
        span.record("otel.status_description", outcome.as_str());
    }
}

/// `-> Out` or `-> Result<Out, _>`, measured: the output, passed on.
#[inline(always)]
pub fn passed<T>(output: T) -> StageResult<T> {
    Ok(Some(output))
}

/// `#[stage(reject_if = predicate)]`: the errors `predicate` picks are rejections (their text is
/// the reason), the others convert as usual.
#[inline]
pub fn stop_or_reject<E: IntoStageError + std::fmt::Display>(
    error: E,
    reject_if: &impl Fn(&E) -> bool,
) -> StageError {
    if reject_if(&error) {
        StageError::rejected(crate::trace_records::guarded_text(|| error.to_string()))
    } else {
        error.into_stage_error()
    }
}

/// A generic stage's name for one instantiation (`Dedup<u64>`), where nothing is recorded (the
/// `off` build): the same name the recording build gives it.
pub fn instantiation_name(type_name: &'static str) -> &'static str {
    crate::callsite::interned_short_type_name(type_name)
}

/// The call site of a generic stage's instantiation: its own row (`Dedup<u64>`).
#[inline]
pub fn stage_instantiation(
    generic: &'static Callsite,
    self_type: impl FnOnce() -> &'static str,
) -> &'static Callsite {
    generic.for_stage_type(self_type())
}

/// Runs span bookkeeping (creating, entering, leaving a span) without attributing its
/// allocations to the enclosing stage or function: subscribers allocate there (the registry's
/// span data, tracing-chrome's messages), and that is the profiler's cost, not the program's.
///
/// It is also the toolkit's own span handling, which the native trace's user-span layer leaves
/// alone (stage and function calls are trace records already).
#[inline]
pub fn quiet<T>(f: impl FnOnce() -> T) -> T {
    if !tracing::dispatcher::has_been_set() {
        return f(); // no subscriber: spans cost nothing and allocate nothing
    }
    let _pause = crate::alloc::pause();
    // A subscriber's work on a nested call's span (an OpenTelemetry layer building and
    // exporting it) is not the enclosing stage's time either.
    let started_ns = crate::clock::now_ns();
    let result = crate::trace_records::as_internal(f);
    crate::call_stats::leave_out_of_open_calls(crate::clock::now_ns().saturating_sub(started_ns));
    result
}

/// Whether spans are worth making for what this thread runs now: a subscriber was set, and the
/// event being processed is traced (`trace::emit_spans_one_in`, `Profiler::trace_one_in`: an
/// event's spans are all there or all absent).
#[inline]
fn spans_for_this_event() -> bool {
    tracing::dispatcher::has_been_set() && crate::trace_records::is_traced()
}

/// A span created and dropped [`quiet`]ly (dropping a span frees subscriber data).
pub struct QuietSpan(std::mem::ManuallyDrop<tracing::Span>);

impl QuietSpan {
    /// Creates the span made by `make`, or a disabled span without asking `tracing` at all when
    /// spans are not wanted (no Chrome trace is being written, no [`crate::trace::emit_spans`]) or no
    /// subscriber was ever set.
    #[inline]
    pub fn new(make: impl FnOnce() -> tracing::Span) -> Self {
        if !Mode::now().wants_spans() || !spans_for_this_event() {
            return QuietSpan(std::mem::ManuallyDrop::new(tracing::Span::none()));
        }
        QuietSpan(std::mem::ManuallyDrop::new(quiet(make)))
    }
}

impl std::ops::Deref for QuietSpan {
    type Target = tracing::Span;
    fn deref(&self) -> &tracing::Span {
        &self.0
    }
}

impl Drop for QuietSpan {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: taken once, here, and never used again.
        let span = unsafe { std::mem::ManuallyDrop::take(&mut self.0) };
        if !span.is_none() {
            quiet(move || drop(span));
        }
    }
}

/// An entered span that is entered and left [`quiet`]ly.
pub struct QuietEntered<'a>(Option<tracing::span::Entered<'a>>);

impl<'a> QuietEntered<'a> {
    /// Enters `span`.
    #[inline]
    pub fn new(span: &'a tracing::Span) -> Self {
        if span.is_none() {
            return QuietEntered(None);
        }
        QuietEntered(Some(quiet(|| span.enter())))
    }
}

impl Drop for QuietEntered<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(entered) = self.0.take() {
            quiet(move || drop(entered));
        }
    }
}

/// A span entered [`quiet`]ly, and left and closed quietly when dropped.
struct QuietEnteredSpan(Option<tracing::span::EnteredSpan>);

impl QuietEnteredSpan {
    /// Creates the span made by `make` and enters it; nothing without asking `tracing` at all
    /// when spans are not wanted (no Chrome trace is being written, no [`crate::trace::emit_spans`])
    /// or no subscriber was ever set, and nothing when the subscribers are not interested.
    #[inline]
    fn enter(mode: Mode, make: impl FnOnce() -> tracing::Span) -> Self {
        if !mode.wants_spans() || !spans_for_this_event() {
            return QuietEnteredSpan(None);
        }
        Self::make_and_enter(make)
    }

    #[inline(never)]
    fn make_and_enter(make: impl FnOnce() -> tracing::Span) -> Self {
        quiet(|| {
            let span = make();
            QuietEnteredSpan((!span.is_disabled()).then(|| span.entered()))
        })
    }
}

impl Drop for QuietEnteredSpan {
    #[inline]
    fn drop(&mut self) {
        if let Some(span) = self.0.take() {
            if std::thread::panicking() {
                // A panic unwinds through the call: its span ends as an error (a stage's span
                // has these fields; a function's ignores them).
                quiet(|| {
                    span.record("outcome", "panicked");
                    span.record("otel.status_code", "ERROR");
                    span.record("otel.status_description", "panicked");
                });
            }
            quiet(move || drop(span));
        }
    }
}

/// Runs one call of a `#[stage]`'s `process`: measured, and inside the span `make_span` creates
/// when a subscriber may want it. The span then records the call's outcome and allocations, so
/// trace slices carry them.
#[inline]
pub fn run_stage<R: Ended>(
    callsite: &'static Callsite,
    make_span: impl FnOnce() -> tracing::Span,
    process: impl FnOnce() -> R,
) -> R {
    let mode = Mode::now();
    if mode.is_idle() {
        // The runtime switch: nothing records and no span is wanted. One relaxed load, and the
        // rest lives out of line so that `process` stays small enough to inline.
        return process();
    }
    run_stage_active(mode, callsite, make_span, process)
}

/// Runs one call of a `#[stage]`'s inherent `process` called directly (a stage's own tests, its
/// other methods): measured under the stage's call site like a pipeline's call, returning the
/// value the user's `process` returns.
#[inline]
pub fn run_stage_direct<R>(
    callsite: &'static Callsite,
    make_span: impl FnOnce() -> tracing::Span,
    process: impl FnOnce() -> R,
) -> R {
    let mode = Mode::now();
    if mode.is_idle() {
        return process();
    }
    run_stage_direct_active(mode, callsite, make_span, process)
}

#[inline(never)]
fn run_stage_direct_active<R>(
    mode: Mode,
    callsite: &'static Callsite,
    make_span: impl FnOnce() -> tracing::Span,
    process: impl FnOnce() -> R,
) -> R {
    // The span first, so its cost stays out of the measurement; the guard ends before it.
    let _span = QuietEnteredSpan::enter(mode, make_span);
    let call = call_stats::enter(mode, callsite);
    let value = process();
    drop(call);
    value
}

#[inline(never)]
fn run_stage_active<R: Ended>(
    mode: Mode,
    callsite: &'static Callsite,
    make_span: impl FnOnce() -> tracing::Span,
    process: impl FnOnce() -> R,
) -> R {
    if mode.wants_spans() && tracing::dispatcher::has_been_set() {
        return run_stage_in_span(mode, callsite, make_span, process);
    }
    // No span to carry around: the guard alone, so the common case stays small.
    let mut call = call_stats::enter(mode, callsite);
    let result = process();
    // The mode (in a register) before the result (in memory): statistics alone never look at
    // how the call ended.
    if mode.writes_records() {
        if let Some(error) = result.stage_error() {
            // The native trace's slice says how the call failed.
            call.end_with(Some(&|| error.to_string()));
            return result;
        }
    }
    drop(call);
    result
}

#[inline(never)]
fn run_stage_in_span<R: Ended>(
    mode: Mode,
    callsite: &'static Callsite,
    make_span: impl FnOnce() -> tracing::Span,
    process: impl FnOnce() -> R,
) -> R {
    // The span first, so its cost stays out of the measurement.
    let mut span = QuietEnteredSpan::enter(mode, make_span);
    let call = call_stats::enter(mode, callsite);
    let result = process();
    let allocations = call.finish();
    if let Some(span) = span.0.take() {
        annotate_stage_span(span, &result, allocations);
    }
    result
}

/// Records on a stage call's span what a reader of the trace could not know otherwise, then
/// leaves and closes it: the error of a failed call (`outcome`), and the allocations of a call
/// that allocated (`allocations`, `bytes_allocated`; only with the counting allocator in).
///
/// A successful call that allocated nothing records nothing. Each recorded field costs
/// tracing-chrome a copy of the span's argument map and two strings, which made a traced call
/// two to three times as expensive; the trace's closing `pipeline_profile` entry says which
/// slices are stages and that allocations were measured, so missing arguments mean "ok" and 0.
fn annotate_stage_span(
    span: tracing::span::EnteredSpan,
    result: &impl Ended,
    allocations: Option<crate::alloc::Counters>,
) {
    let _pause = crate::alloc::pause();
    if let Some(error) = result.stage_error() {
        record_failure(&span, error);
    }
    let allocated = allocations.filter(|counters| {
        crate::mode::allocations_measured()
            && (counters.allocations != 0 || counters.bytes_allocated != 0)
    });
    if let Some(counters) = allocated {
        record_allocations(&span, counters.allocations, counters.bytes_allocated);
    }
    drop(span);
}

/// Records both allocation fields in one `record_all`: one visit of the span's arguments
/// instead of two.
fn record_allocations(span: &tracing::Span, allocations: u64, bytes_allocated: u64) {
    let Some(metadata) = span.metadata() else { return };
    let fields = metadata.fields();
    let (Some(count), Some(bytes)) = (fields.field("allocations"), fields.field("bytes_allocated"))
    else {
        return;
    };
    // As `i64`: tracing-opentelemetry has no `u64` attribute and would record a `u64` as text.
    let (allocations, bytes_allocated) = (
        crate::trace_records::span_number(allocations),
        crate::trace_records::span_number(bytes_allocated),
    );
    let values: [(&tracing::field::Field, Option<&dyn tracing::Value>); 2] =
        [(&count, Some(&allocations)), (&bytes, Some(&bytes_allocated))];
    span.record_all(&fields.value_set(&values));
}

/// One call of a `#[profiled]` (non-`async`) function: its span entered and its measurement
/// running until the value is dropped at the end of the function's body.
pub struct FnCall {
    guard: CallGuard,
    _span: QuietEnteredSpan,
}

impl FnCall {
    /// Starts a call of `callsite` (inside the span `make` creates, when spans are wanted);
    /// `None`, and nothing to drop, when nothing records and no span is wanted: an idle call is
    /// one relaxed load and a branch, the rest lives out of line.
    #[inline]
    pub fn start(
        callsite: &'static Callsite,
        make: impl FnOnce() -> tracing::Span,
    ) -> Option<Self> {
        let mode = Mode::now();
        if mode.is_idle() {
            return None;
        }
        Some(Self::enter(mode, callsite, make))
    }

    /// [`FnCall::start`] for a method: its row is named by the type it is called on
    /// (`self_type` gives `std::any::type_name::<Self>()`, asked only when recording).
    #[inline]
    pub fn start_method(
        callsite: &'static Callsite,
        self_type: impl FnOnce() -> &'static str,
        make: impl FnOnce() -> tracing::Span,
    ) -> Option<Self> {
        let mode = Mode::now();
        if mode.is_idle() {
            return None;
        }
        Some(Self::enter(mode, callsite.for_type(self_type()), make))
    }

    #[inline(never)]
    fn enter(
        mode: Mode,
        callsite: &'static Callsite,
        make: impl FnOnce() -> tracing::Span,
    ) -> Self {
        let span = QuietEnteredSpan::enter(mode, make);
        FnCall { guard: call_stats::enter(mode, callsite), _span: span }
    }
}

impl Drop for FnCall {
    fn drop(&mut self) {
        // The measurement ends first, so leaving the span is not part of it.
        // Then the span's own drop.
        self.guard.end();
    }
}

pin_project_lite::pin_project! {
    /// A `#[profiled] async fn`'s future: times the call from its first poll to its completion and
    /// enters the function's span on every poll, as `tracing::Instrument` does.
    pub struct Profiled<F> {
        #[pin]
        inner: F,
        callsite: &'static Callsite,
        span: QuietSpan,
        call: AsyncCall,
    }
}

/// [`profile_future`] for a method: the row is named by the type it is called on.
pub fn profile_method_future<F: Future>(
    callsite: &'static Callsite,
    self_type: impl FnOnce() -> &'static str,
    span: QuietSpan,
    inner: F,
) -> Profiled<F> {
    let callsite = if Mode::now().is_idle() { callsite } else { callsite.for_type(self_type()) };
    profile_future(callsite, span, inner)
}

/// Wraps an `async fn`'s body for [`Profiled`].
pub fn profile_future<F: Future>(
    callsite: &'static Callsite,
    span: QuietSpan,
    inner: F,
) -> Profiled<F> {
    Profiled { inner, callsite, span, call: AsyncCall::default() }
}

impl<F: Future> Future for Profiled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = QuietEntered::new(this.span);
        let poll = this.call.poll_begin(this.callsite);
        let output = this.inner.poll(cx);
        poll.end(output.is_ready());
        output
    }
}

/// Runs `future` to completion on the calling thread (parking between polls): for doc examples
/// of async stages, which cannot depend on an async runtime.
pub fn block_on_for_doc<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Whether the calling thread is inside the CPU sampler's signal handler (for the test that
/// checks the handler never allocates).
#[cfg(feature = "cpu-sampling")]
pub fn in_cpu_sampler() -> bool {
    crate::sampler::in_handler()
}
