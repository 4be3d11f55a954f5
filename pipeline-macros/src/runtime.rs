//! The paths expansions use to reach the runtime, whatever the user imported: `::pipeline` by
//! default, or the path given with `crate = path` by a crate that renames or re-exports the
//! facade.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

/// Where the facade is, as the expansion must write it.
pub(crate) struct Runtime {
    facade: TokenStream,
    /// The `crate = path` option's path, where an error about a path that does not lead to the
    /// facade points; the call site by default.
    span: Span,
}

impl Runtime {
    /// `::pipeline`, or the `crate = path` option's path.
    pub(crate) fn new(facade: Option<&syn::Path>) -> Runtime {
        match facade {
            Some(path) => Runtime { facade: path.to_token_stream(), span: path.span() },
            None => Runtime { facade: quote!(::pipeline), span: Span::call_site() },
        }
    }

    /// The facade's item `name` (`Stage`, `AsyncStage`, `StageResult`, `IntoStageError`):
    /// `::pipeline::Stage`.
    pub(crate) fn item(&self, name: &str) -> TokenStream {
        let facade = &self.facade;
        let name = syn::Ident::new(name, self.span);
        quote_spanned!(self.span=> #facade::#name)
    }

    /// `::pipeline::__private`: the facade's re-export of the runtime's macro support.
    pub(crate) fn private(&self) -> TokenStream {
        self.item("__private")
    }

    /// A `static` describing the call site, named `__PIPELINE_CALLSITE`.
    pub(crate) fn callsite_static(&self, name: &TokenStream, kind: &str) -> TokenStream {
        let private = self.private();
        let kind = syn::Ident::new(kind, proc_macro2::Span::call_site());
        quote! {
            static __PIPELINE_CALLSITE: #private::Callsite = #private::Callsite::new(
                #name,
                #private::CallsiteKind::#kind,
                ::core::module_path!(),
                ::core::file!(),
                ::core::line!(),
            );
        }
    }

    /// A `tracing` span at INFO level, target the declaring module, named `name`, created
    /// without attributing the subscriber's allocations to the enclosing call.
    pub(crate) fn span(&self, name: &TokenStream) -> TokenStream {
        let private = self.private();
        let make = self.span_maker_with_fields(name, &quote!());
        quote!(#private::QuietSpan::new(#make))
    }

    /// A closure making the span of [`span`](Self::span), for the runtime to call only when a
    /// subscriber may want it.
    pub(crate) fn span_maker(&self, name: &TokenStream) -> TokenStream {
        self.span_maker_with_fields(name, &quote!())
    }

    /// A closure making the span of [`span`](Self::span) with the fields a stage call records
    /// when it ends (outcome, allocations, and for a failure the status OpenTelemetry layers
    /// read).
    pub(crate) fn stage_span_maker(&self, name: &TokenStream) -> TokenStream {
        let private = self.private();
        let empty = quote!(#private::tracing::field::Empty);
        self.span_maker_with_fields(
            name,
            &quote!(
                , outcome = #empty, allocations = #empty, bytes_allocated = #empty,
                otel.status_code = #empty, otel.status_description = #empty
            ),
        )
    }

    fn span_maker_with_fields(&self, name: &TokenStream, fields: &TokenStream) -> TokenStream {
        let private = self.private();
        quote! {
            || #private::tracing::span!(
                target: ::core::module_path!(),
                #private::tracing::Level::INFO,
                #name
                #fields
            )
        }
    }
}
