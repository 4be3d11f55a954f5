//! The absolute paths expansions use to reach the runtime, whatever the user imported.

use proc_macro2::TokenStream;
use quote::quote;

/// `::pipeline::__private`: the facade's re-export of the runtime's macro support.
pub(crate) fn private() -> TokenStream {
    quote!(::pipeline::__private)
}

/// A `static` describing the call site, named `__PIPELINE_CALLSITE`.
pub(crate) fn callsite_static(name: &TokenStream, kind: &str) -> TokenStream {
    let private = private();
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

/// A `tracing` span at INFO level, target the declaring module, named `name`, created without
/// attributing the subscriber's allocations to the enclosing call.
pub(crate) fn span(name: &TokenStream) -> TokenStream {
    span_with_fields(name, &quote!())
}

fn span_with_fields(name: &TokenStream, fields: &TokenStream) -> TokenStream {
    let private = private();
    let make = span_maker_with_fields(name, fields);
    quote!(#private::QuietSpan::new(#make))
}

/// A closure making the span of [`span`], for the runtime to call only when a subscriber may
/// want it.
pub(crate) fn span_maker(name: &TokenStream) -> TokenStream {
    span_maker_with_fields(name, &quote!())
}

/// A closure making the span of [`span`] with the fields a stage call records when it ends
/// (outcome, allocations, and for a failure the status OpenTelemetry layers read).
pub(crate) fn stage_span_maker(name: &TokenStream) -> TokenStream {
    let private = private();
    let empty = quote!(#private::tracing::field::Empty);
    span_maker_with_fields(
        name,
        &quote!(
            , outcome = #empty, allocations = #empty, bytes_allocated = #empty,
            otel.status_code = #empty, otel.status_description = #empty
        ),
    )
}

fn span_maker_with_fields(name: &TokenStream, fields: &TokenStream) -> TokenStream {
    let private = private();
    quote! {
        || #private::tracing::span!(
            target: ::core::module_path!(),
            #private::tracing::Level::INFO,
            #name
            #fields
        )
    }
}
