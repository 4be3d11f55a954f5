//! `#[profiled]`: wrap a function's body (never its signature) in a measured call.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{Item, ItemFn};

use crate::errors::{is_profiled_attr, Errors};
use crate::options;
use crate::runtime::Runtime;
use crate::types::contains_impl_trait;

pub(crate) fn expand(args: TokenStream, input: TokenStream) -> syn::Result<TokenStream> {
    let options = options::parse("profiled", args);
    let function = parse_function(input)?;
    let options = options?;
    validate(&function)?;
    if cfg!(feature = "off") {
        // Misuse is still an error; correct use compiles to the function exactly as written.
        return Ok(function.into_token_stream());
    }
    Ok(generate(function, options))
}

/// Accepts a free function or a method with a body; anything else is named in the error.
fn parse_function(input: TokenStream) -> syn::Result<ItemFn> {
    if let Ok(function) = syn::parse2::<ItemFn>(input.clone()) {
        return Ok(function);
    }
    if let Ok(declaration) = syn::parse2::<syn::TraitItemFn>(input.clone()) {
        if declaration.default.is_none() {
            return Err(syn::Error::new_spanned(
                declaration.sig,
                "#[profiled] needs a function body to time; this trait method has none: put \
                 #[profiled] on the method in each impl (or on a default body)",
            ));
        }
    }
    let item = syn::parse2::<Item>(input.clone())?;
    let (tokens, what): (TokenStream, &str) = match &item {
        Item::Struct(s) => (s.struct_token.to_token_stream(), "a struct"),
        Item::Enum(e) => (e.enum_token.to_token_stream(), "an enum"),
        Item::Impl(i) => (
            i.impl_token.to_token_stream(),
            "an impl block (annotate each method to profile, or use #[stage] for a stage)",
        ),
        Item::Trait(t) => (t.trait_token.to_token_stream(), "a trait"),
        Item::Mod(m) => (m.mod_token.to_token_stream(), "a module"),
        Item::Static(s) => (s.static_token.to_token_stream(), "a static"),
        Item::Const(c) => (c.const_token.to_token_stream(), "a const"),
        _ => (input, "this item"),
    };
    Err(syn::Error::new_spanned(
        tokens,
        format!("#[profiled] goes on a function or method with a body, not on {what}"),
    ))
}

fn validate(function: &ItemFn) -> syn::Result<()> {
    let mut errors = Errors::default();
    if let Some(token) = &function.sig.constness {
        errors.at(
            token,
            "a `const fn` cannot be profiled: timing needs a clock at run time. Remove `const`, \
             or profile the function that calls it",
        );
    }
    for attr in function.attrs.iter().filter(|a| is_profiled_attr(a)) {
        errors.at(attr, "#[profiled] is given twice: keep one, or every call is counted twice");
    }
    errors.finish()
}

/// How a non-`async` function returns a future.
enum FutureShape {
    /// `-> impl Future<Output = T> (+ ...)`.
    ImplFuture,
    /// `-> Pin<Box<dyn Future<Output = T> (+ ...)>>`, as async-trait writes.
    PinnedBox,
}

/// Whether the function returns a future it builds (to be timed while it runs).
fn returned_future(output: &syn::ReturnType) -> Option<FutureShape> {
    let syn::ReturnType::Type(_, ty) = output else { return None };
    let is_future_bound = |bound: &syn::TypeParamBound| {
        matches!(bound, syn::TypeParamBound::Trait(t)
            if t.path.segments.last().is_some_and(|s| s.ident == "Future"))
    };
    match &**ty {
        syn::Type::ImplTrait(impl_trait) if impl_trait.bounds.iter().any(is_future_bound) => {
            Some(FutureShape::ImplFuture)
        }
        syn::Type::Path(path) => {
            let pin = path.path.segments.last().filter(|s| s.ident == "Pin")?;
            let inner = single_type_argument(&pin.arguments)?;
            let syn::Type::Path(boxed) = inner else { return None };
            let boxed = boxed.path.segments.last().filter(|s| s.ident == "Box")?;
            match single_type_argument(&boxed.arguments)? {
                syn::Type::TraitObject(object) if object.bounds.iter().any(is_future_bound) => {
                    Some(FutureShape::PinnedBox)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn single_type_argument(arguments: &syn::PathArguments) -> Option<&syn::Type> {
    let syn::PathArguments::AngleBracketed(arguments) = arguments else { return None };
    arguments.args.iter().find_map(|arg| match arg {
        syn::GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

/// A `return` that is never taken, of the function's declared type, put first in an `async fn`'s
/// body: the `async` block that replaces the body then has that output type from the start, so
/// an early `return` that needs a coercion (`return Err(Box::new(e))` into `Box<dyn Error>`)
/// compiles as it does in the plain function. It matches on `None` rather than diverging, so it
/// is not unreachable code. Nothing for `impl Trait` outputs, which cannot be named here.
fn declared_output(output: &syn::ReturnType) -> TokenStream {
    let syn::ReturnType::Type(arrow, ty) = output else { return quote!() };
    if contains_impl_trait(ty) {
        return quote!();
    }
    quote::quote_spanned! {arrow.spans[0]=>
        match ::core::option::Option::<#ty>::None {
            ::core::option::Option::Some(__pipeline_declared_output) => {
                return __pipeline_declared_output;
            }
            ::core::option::Option::None => {}
        }
    }
}

fn generate(function: ItemFn, options: options::Options) -> TokenStream {
    let ItemFn { attrs, vis, sig, block } = function;
    let runtime = Runtime::new(options.facade.as_ref());
    let private = runtime.private();
    // A method (it has a receiver) is named by the type it is called on, at run time:
    // `module::Type::method`, so the same method of two types never shares a row. A name given
    // with `name = ".."` is used as it is.
    let is_method = matches!(sig.inputs.first(), Some(syn::FnArg::Receiver(_)));
    let by_type = is_method && options.name.is_none();
    let name = match options.name {
        Some(name) => name.to_token_stream(),
        None => {
            let ident = sig.ident.to_string();
            let ident = ident.strip_prefix("r#").unwrap_or(&ident);
            let suffix = format!("::{ident}");
            quote!(::core::concat!(::core::module_path!(), #suffix))
        }
    };
    let callsite = runtime.callsite_static(&name, "Function");
    let self_type = quote!(|| ::core::any::type_name::<Self>());
    // The runtime entry points, with the call site (and, for a method, its type) filled in.
    let (profile_future, start_call, lead) = if by_type {
        (
            quote!(#private::profile_method_future),
            quote!(#private::FnCall::start_method),
            quote!(&__PIPELINE_CALLSITE, #self_type,),
        )
    } else {
        (
            quote!(#private::profile_future),
            quote!(#private::FnCall::start),
            quote!(&__PIPELINE_CALLSITE,),
        )
    };

    let body = if sig.asyncness.is_some() {
        // The span and the timing follow the future across polls: nothing is held over `.await`.
        let span = runtime.span(&name);
        let declared_output = declared_output(&sig.output);
        quote! {
            #callsite
            #profile_future(#lead #span, async move {
                #declared_output
                #block
            }).await
        }
    } else if let Some(shape) = returned_future(&sig.output) {
        // A hand-written future (or async-trait's boxed one): timed from its first poll to its
        // completion, as an `async fn` is, not while it is being built. The body runs in a
        // closure so an early `return` still gives the future.
        let span = runtime.span(&name);
        match shape {
            FutureShape::ImplFuture => quote! {
                #callsite
                #profile_future(#lead #span, (move || #block)())
            },
            FutureShape::PinnedBox => {
                // The declared type on the closure: each `return` coerces to the trait object.
                let syn::ReturnType::Type(_, ty) = &sig.output else { unreachable!() };
                quote! {
                    #callsite
                    ::std::boxed::Box::pin(#profile_future(#lead #span, (move || -> #ty #block)()))
                }
            }
        }
    } else {
        let make_span = runtime.span_maker(&name);
        quote! {
            #callsite
            let __pipeline_call = #start_call(#lead #make_span);
            #block
        }
    };
    // Inner attributes (`#![allow(..)]` at the top of the body) stay at the top of the body.
    let (inner, outer): (Vec<_>, Vec<_>) =
        attrs.into_iter().partition(|attr| matches!(attr.style, syn::AttrStyle::Inner(_)));
    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #body
        }
    }
}
