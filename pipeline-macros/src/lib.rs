//! The `#[stage]` and `#[profiled]` attributes of the `pipeline` toolkit.
//!
//! Both stay thin: they parse, check every rule with a `syn::Error` pointing at the offending
//! tokens, and emit calls into `::pipeline::__private` (or `crate = path`'s `__private`), where
//! the logic lives. Use them through the `pipeline` crate, which re-exports them.

mod errors;
mod options;
mod profiled;
mod runtime;
mod stage;
mod types;

use proc_macro::TokenStream;

/// Turns the inherent `impl` block of a stage type into a measured `pipeline::Stage`.
///
/// The block must define `fn process(&self, event: In)` returning `Out` (hand it on),
/// `Option<Out>` (a filter: `None` drops the event as filtered), `Result<Out, E>` or
/// `Result<Option<Out>, E>`, with `E` any `std::error::Error + Send + Sync + 'static` or a type
/// that converts into `StageError`. The macro generates `impl Stage<In> for YourType` with
/// `type Out`, whose every call runs in a `tracing` span named after the stage and is recorded:
/// calls, time, self time, latency percentiles, allocations.
///
/// An `async fn process` (same shapes) makes a `pipeline::AsyncStage` instead, for an
/// `AsyncPipeline` (`.stage_async(..)`): each call is measured from its first poll to its
/// completion, wherever its polls run, as wall time, busy time (the sum of its polls) and the
/// allocations its polls made; its future must be `Send`.
///
/// Options: `#[stage(name = "fraud")]` names the stage (default: the type's name; a generic
/// impl without a name is named per instantiation, `Dedup<u64>`);
/// `#[stage(reject_if = MyError::is_rejection)]` counts the errors the predicate picks as
/// rejections instead of failures; `#[stage(crate = my_toolkit::pipeline)]` says where the
/// `pipeline` facade is, for a crate that renames or re-exports it (default `::pipeline`).
///
/// ```ignore
/// #[stage(name = "parse", reject_if = ParseError::is_malformed)]
/// impl Parse {
///     fn process(&self, line: String) -> Result<Tx, ParseError> { /* ... */ }
/// }
/// ```
#[proc_macro_attribute]
pub fn stage(args: TokenStream, item: TokenStream) -> TokenStream {
    stage::expand(args.into(), item.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Times a function or method (sync or `async`) and records each call, nested under the stage
/// that called it.
///
/// The body runs inside a `tracing` span named `module::function`; for `async fn` the time runs
/// from the first poll to completion and the span is entered on every poll.
///
/// Options: `#[profiled(name = "score")]` names it; `#[profiled(crate = my_toolkit::pipeline)]`
/// says where the `pipeline` facade is, for a crate that renames or re-exports it.
#[proc_macro_attribute]
pub fn profiled(args: TokenStream, item: TokenStream) -> TokenStream {
    profiled::expand(args.into(), item.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}
