//! What `#[stage]` and `#[profiled]` expansions call. Not public API: names and signatures here
//! change whenever the macros change.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use tracing;

pub use crate::recorder::{enter, AsyncCall, CallGuard, Callsite, CallsiteKind, PollGuard};
use crate::stage::StageError;

/// Converts what a `#[stage]`'s `process` returns into the `Stage` trait's result.
#[diagnostic::on_unimplemented(
    message = "`process` must return the event type `{E}` or `Result<{E}, StageError>`, not `{Self}`",
    label = "this return type does not match the event parameter",
    note = "write `fn process(&self, event: {E}) -> {E}` or `-> Result<{E}, pipeline::StageError>`"
)]
pub trait StageOutput<E> {
    /// The stage's result.
    fn into_stage_result(self) -> Result<E, StageError>;
}

impl<E, X: Into<StageError>> StageOutput<E> for Result<E, X> {
    #[inline]
    fn into_stage_result(self) -> Result<E, StageError> {
        self.map_err(Into::into)
    }
}

/// Runs span bookkeeping (creating, entering, leaving a span) without attributing its
/// allocations to the enclosing stage or function: subscribers allocate there (the registry's
/// span data, tracing-chrome's messages), and that is the profiler's cost, not the program's.
#[inline]
pub fn quiet<T>(f: impl FnOnce() -> T) -> T {
    if !tracing::dispatcher::has_been_set() {
        return f(); // no subscriber: spans cost nothing and allocate nothing
    }
    let _pause = crate::alloc::pause();
    f()
}

/// A span created and dropped [`quiet`]ly (dropping a span frees subscriber data).
pub struct QuietSpan(std::mem::ManuallyDrop<tracing::Span>);

impl QuietSpan {
    /// Creates the span made by `make`, or a disabled span without asking `tracing` at all when
    /// no subscriber was ever set in the process (one relaxed load).
    #[inline]
    pub fn new(make: impl FnOnce() -> tracing::Span) -> Self {
        if !tracing::dispatcher::has_been_set() {
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
        quiet(move || drop(span));
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

/// One `#[stage]` call: its span entered and its measurement running. `finish` records the
/// outcome and allocations on the span (so trace slices carry them), then closes both.
pub struct StageCall<'a> {
    guard: CallGuard,
    span: &'a tracing::Span,
    _entered: QuietEntered<'a>,
}

impl<'a> StageCall<'a> {
    /// Enters `span` and starts measuring a call of `callsite`.
    #[inline]
    pub fn enter(callsite: &'static Callsite, span: &'a tracing::Span) -> Self {
        let entered = QuietEntered::new(span);
        StageCall { guard: enter(callsite), span, _entered: entered }
    }

    /// Ends the call; `result` is what `process` returned.
    #[inline]
    pub fn finish<E>(self, result: &Result<E, StageError>) {
        let allocations = self.guard.finish();
        if self.span.is_disabled() {
            return;
        }
        let _pause = crate::alloc::pause();
        match result {
            Ok(_) => self.span.record("outcome", tracing::field::display("ok")),
            Err(error) => self.span.record("outcome", tracing::field::display(error)),
        };
        if let Some(counters) = allocations.filter(|_| crate::recorder::allocations_measured()) {
            self.span.record("allocations", counters.allocations);
            self.span.record("bytes_allocated", counters.bytes_allocated);
        }
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
