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

pin_project_lite::pin_project! {
    /// A `#[profiled] async fn`'s future: times the call from its first poll to its completion and
    /// enters the function's span on every poll, as `tracing::Instrument` does.
    pub struct Profiled<F> {
        #[pin]
        inner: F,
        callsite: &'static Callsite,
        span: tracing::Span,
        call: AsyncCall,
    }
}

/// Wraps an `async fn`'s body for [`Profiled`].
pub fn profile_future<F: Future>(
    callsite: &'static Callsite,
    span: tracing::Span,
    inner: F,
) -> Profiled<F> {
    Profiled { inner, callsite, span, call: AsyncCall::default() }
}

impl<F: Future> Future for Profiled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let poll = this.call.poll_begin(this.callsite);
        let output = this.inner.poll(cx);
        poll.end(output.is_ready());
        output
    }
}
