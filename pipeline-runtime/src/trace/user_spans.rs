//! A `tracing` layer that puts the program's own spans (`#[instrument]` inside a stage) into the
//! native trace: each time such a span is entered on a thread, a user slice is written into that
//! thread's records, nested under the stage or function running there.

use std::cell::RefCell;

use tracing::span::Id;
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::clock::now_ns;
use crate::trace_records::{self, SliceKind, Token};

/// Writes the program's entered spans into the native trace (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct UserSpans;

thread_local! {
    /// The tokens of this thread's entered user spans, innermost last.
    static ENTERED: RefCell<Vec<Token>> = const { RefCell::new(Vec::new()) };
}

impl<S> Layer<S> for UserSpans
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if trace_records::is_internal() {
            return; // the toolkit's own stage and function spans are written as records already
        }
        let token = match (trace_records::active(), ctx.metadata(id)) {
            (0, _) | (_, None) => Token::NONE,
            (_, Some(metadata)) => {
                trace_records::begin_slice(now_ns(), metadata.name(), SliceKind::User)
            }
        };
        let _bookkeeping = crate::alloc::bookkeeping();
        let _ = ENTERED.try_with(|entered| entered.borrow_mut().push(token));
    }

    fn on_exit(&self, _: &Id, _: Context<'_, S>) {
        if trace_records::is_internal() {
            return;
        }
        let ts = now_ns();
        let token = ENTERED.try_with(|entered| entered.borrow_mut().pop()).ok().flatten();
        if let Some(token) = token {
            trace_records::end_slice(token, ts, 0, 0, None);
        }
    }
}
