//! `#[stage]`: parse the inherent impl, check its `process`, emit `impl Stage<In>` (or
//! `impl AsyncStage<In>` for an `async fn process`) with the output type and shape read from
//! `process`'s return type.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, GenericParam, ImplItem, ImplItemFn, Item, ItemImpl, ReturnType, Type};

use crate::errors::{is_profiled_attr, Errors};
use crate::options;
use crate::runtime::Runtime;
use crate::types::contains_impl_trait;

const SHAPE: &str = "`fn process(&self, event: In) -> Out` (or `-> Option<Out>` to filter, \
    `-> Result<Out, E>`, `-> Result<Option<Out>, E>`)";

/// How `process` hands its output on, read from how its return type is written.
enum Shape {
    /// `-> Out`.
    Plain,
    /// `-> Option<Out>`: `None` filters the event out.
    Filter,
    /// `-> Result<Out, E>` (`error` is `E` where it is written; `io::Result<Out>` has none).
    Result { error: Option<Type> },
    /// `-> Result<Option<Out>, E>`.
    FilterResult { error: Option<Type> },
}

/// The checked input: everything expansion needs.
struct StageImpl {
    item: ItemImpl,
    process_index: usize,
    event_ty: Type,
    /// `process`'s return type, where type errors about it should point.
    return_ty: Type,
    /// What the stage hands on: the `Stage` impl's `Out`.
    output_ty: Type,
    shape: Shape,
    reject_if: Option<syn::Expr>,
    name: String,
    /// No `name` option and the impl is generic: each instantiation is its own row.
    named_per_instantiation: bool,
    /// `async fn process`: the impl is an `AsyncStage`, measured across awaits.
    is_async: bool,
    /// Where the facade is (`::pipeline`, or the `crate = path` option).
    runtime: Runtime,
}

pub(crate) fn expand(args: TokenStream, input: TokenStream) -> syn::Result<TokenStream> {
    let options = options::parse("stage", args);
    let item = syn::parse2::<Item>(input)?;
    let item = match item {
        Item::Impl(item) => item,
        other => return Err(wrong_item(&other)),
    };
    let options = options?;
    let stage = validate(item, options)?;
    Ok(generate(stage))
}

fn wrong_item(item: &Item) -> syn::Error {
    let (tokens, what): (TokenStream, &str) = match item {
        Item::Struct(s) => (s.struct_token.to_token_stream(), "a struct"),
        Item::Enum(e) => (e.enum_token.to_token_stream(), "an enum"),
        Item::Fn(f) => (f.sig.fn_token.to_token_stream(), "a function"),
        Item::Trait(t) => (t.trait_token.to_token_stream(), "a trait"),
        Item::Mod(m) => (m.mod_token.to_token_stream(), "a module"),
        other => (other.to_token_stream(), "this item"),
    };
    syn::Error::new_spanned(
        tokens,
        format!(
            "#[stage] goes on the inherent `impl` block of a stage type, not on {what}: \
             write `#[stage] impl MyStage {{ fn process(&self, event: In) -> Out {{ .. }} }}` \
             (or return `Option<Out>` to filter, `Result<Out, E>` to stop events)"
        ),
    )
}

fn type_name(ty: &Type) -> String {
    match ty {
        Type::Path(path) => match path.path.segments.last() {
            Some(segment) => segment.ident.to_string(),
            None => ty.to_token_stream().to_string(),
        },
        other => other.to_token_stream().to_string(),
    }
}

fn validate(item: ItemImpl, options: options::Options) -> syn::Result<StageImpl> {
    let mut errors = Errors::default();
    if let Some((_, trait_path, for_token)) = &item.trait_ {
        errors.at(
            quote!(#trait_path #for_token),
            "#[stage] goes on an inherent impl (`impl MyStage { .. }`) and writes \
             `impl Stage<In> for MyStage` itself: remove the trait and `for`",
        );
        return Err(errors.finish().unwrap_err());
    }
    let processes: Vec<usize> = item
        .items
        .iter()
        .enumerate()
        .filter_map(|(i, it)| {
            matches!(it, ImplItem::Fn(f) if f.sig.ident == "process").then_some(i)
        })
        .collect();
    let Some(&process_index) = processes.first() else {
        return Err(syn::Error::new_spanned(
            &item.self_ty,
            format!("#[stage] needs a method {SHAPE} in this impl block"),
        ));
    };
    let ImplItem::Fn(process) = &item.items[process_index] else { unreachable!() };
    let event_ty = check_signature(process, &mut errors);
    let return_ty: Type = match &process.sig.output {
        ReturnType::Type(_, ret) => (**ret).clone(),
        ReturnType::Default => syn::parse_quote!(()),
    };
    let (shape, output_ty) = read_shape(&return_ty);
    if contains_impl_trait(&output_ty) {
        errors.at(
            &output_ty,
            "a stage's output type cannot be `impl Trait`: it becomes the `Stage` impl's `Out`; \
             name the type",
        );
    }
    if let (Some(predicate), Shape::Plain | Shape::Filter) = (&options.reject_if, &shape) {
        errors.at(
            predicate,
            "`reject_if` picks which errors are rejections, but this `process` returns no \
             `Result`: return `Result<Out, E>` or remove `reject_if`",
        );
    }
    errors.finish()?;
    let generic = item
        .generics
        .params
        .iter()
        .any(|param| matches!(param, GenericParam::Type(_) | GenericParam::Const(_)));
    let named_per_instantiation = generic && options.name.is_none();
    let name = match options.name {
        Some(name) => name.value(),
        None => type_name(&item.self_ty),
    };
    let is_async = process.sig.asyncness.is_some();
    Ok(StageImpl {
        is_async,
        event_ty: event_ty.expect("checked above"),
        return_ty,
        output_ty,
        shape,
        reject_if: options.reject_if,
        item,
        process_index,
        name,
        named_per_instantiation,
        runtime: Runtime::new(options.facade.as_ref()),
    })
}

/// The single type argument of `ty` when it is written `Ident<T, ..>` with `Ident` its last
/// path segment; all the type arguments.
fn generic_arguments<'a>(ty: &'a Type, ident: &str) -> Option<Vec<&'a Type>> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let segment = path.path.segments.last()?;
    if segment.ident != ident {
        return None;
    }
    let syn::PathArguments::AngleBracketed(arguments) = &segment.arguments else { return None };
    let types: Vec<&Type> = arguments
        .args
        .iter()
        .filter_map(|arg| match arg {
            syn::GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect();
    (!types.is_empty()).then_some(types)
}

/// The shape and the output type, from how the return type is written: `Result<..>` (any path
/// ending in `Result`: `io::Result<T>`, `anyhow::Result<T>`), `Option<..>`, or anything else,
/// which is the output itself.
fn read_shape(return_ty: &Type) -> (Shape, Type) {
    if let Some(arguments) = generic_arguments(return_ty, "Result") {
        let error = arguments.get(1).map(|error| (*error).clone());
        return match generic_arguments(arguments[0], "Option") {
            Some(inner) if inner.len() == 1 => (Shape::FilterResult { error }, inner[0].clone()),
            _ => (Shape::Result { error }, arguments[0].clone()),
        };
    }
    match generic_arguments(return_ty, "Option") {
        Some(inner) if inner.len() == 1 => (Shape::Filter, inner[0].clone()),
        _ => (Shape::Plain, return_ty.clone()),
    }
}

/// Checks `process`'s signature; returns the event type when it could be found.
fn check_signature(process: &ImplItemFn, errors: &mut Errors) -> Option<Type> {
    let sig = &process.sig;
    for attr in process.attrs.iter().filter(|a| is_profiled_attr(a)) {
        errors.at(attr, "`process` is already timed by #[stage]: remove #[profiled] from it");
    }
    if let Some(token) = &sig.constness {
        errors.at(token, "a stage's `process` cannot be `const`: remove `const`");
    }
    if let Some(token) = &sig.unsafety {
        errors
            .at(token, "a stage's `process` cannot be `unsafe`: the `Stage` trait calls it safely");
    }
    if let Some(abi) = &sig.abi {
        errors.at(abi, "a stage's `process` cannot have an ABI: remove the `extern`");
    }
    for param in &sig.generics.params {
        if !matches!(param, GenericParam::Type(_)) {
            errors.at(
                param,
                "`process` can only have type parameters (they become the `Stage` impl's); \
                 remove this parameter",
            );
        }
    }

    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(receiver)) => {
            // `&self`, or spelled out: `self: &Self` (any lifetime).
            let spelled_out = receiver.colon_token.is_some()
                && matches!(&*receiver.ty, Type::Reference(r)
                    if r.mutability.is_none()
                        && matches!(&*r.elem, Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self")));
            let is_shared_ref = spelled_out
                || (receiver.reference.is_some()
                    && receiver.mutability.is_none()
                    && receiver.colon_token.is_none());
            if !is_shared_ref {
                errors.at(
                    receiver,
                    "`process` takes `&self`: stages are shared by concurrent workers, so they \
                     cannot take `self` or `&mut self` (use a Mutex or atomics for state)",
                );
            }
        }
        _ => {
            errors.at(&sig.ident, format!("`process` needs a `&self` receiver: {SHAPE}"));
            return None;
        }
    }
    let event = match inputs.next() {
        Some(FnArg::Typed(event)) => {
            if contains_impl_trait(&event.ty) {
                errors.at(
                    &event.ty,
                    "the event type cannot be `impl Trait`: name the type, or add a type \
                     parameter `fn process<E: Trait>(&self, event: E)`",
                );
                None
            } else {
                Some((*event.ty).clone())
            }
        }
        _ => {
            errors.push(syn::Error::new(
                sig.paren_token.span.join(),
                format!("`process` takes the event as its one parameter: {SHAPE}"),
            ));
            None
        }
    };
    let extra: Vec<&FnArg> = inputs.collect();
    if let Some(first) = extra.first() {
        let span = first.span();
        errors.push(syn::Error::new(
            span,
            format!(
                "`process` takes exactly one event after `&self`; found {} more: \
                 bundle them in the event type",
                extra.len()
            ),
        ));
    }
    event
}

/// How `call` (the user's `process`) becomes the `Stage` trait's result, in two parts: `inner`,
/// measured, keeps the value as small as the user's (a `Passed` wrapper, or
/// `Result<_, StageError>` with the error converted), and `outer` (applied to the measured
/// value, outside the measurement) builds the `Ok(Some(..))`. Spanned at the return type, so a
/// type error about it is reported there.
struct Conversion {
    inner: TokenStream,
    outer: fn(&TokenStream, &TokenStream) -> TokenStream,
}

fn convert(stage: &StageImpl, call: &TokenStream) -> Conversion {
    let private = stage.runtime.private();
    let into_stage_error = stage.runtime.item("IntoStageError");
    let span = stage.return_ty.span();
    // `E: IntoStageError` is checked where `E` is written, so its message points at it.
    let stop = match (&stage.shape, &stage.reject_if) {
        (Shape::Result { error } | Shape::FilterResult { error }, None) => match error {
            Some(error) => {
                let convert = quote_spanned!(error.span()=>
                    <#error as #into_stage_error>::into_stage_error);
                quote!(|error| #convert(error))
            }
            None => quote!(|error| #into_stage_error::into_stage_error(error)),
        },
        (Shape::Result { error } | Shape::FilterResult { error }, Some(predicate)) => {
            let error = error.as_ref().map_or_else(|| quote!(_), ToTokens::to_token_stream);
            quote_spanned!(predicate.span()=>
                |error: #error| #private::stop_or_reject(error, &#predicate))
        }
        (Shape::Plain | Shape::Filter, _) => quote!(),
    };
    match stage.shape {
        Shape::Plain => Conversion {
            inner: quote_spanned!(span=> #private::Passed(#call)),
            outer: |private, measured| quote!(#private::passed(#measured.0)),
        },
        Shape::Filter => Conversion {
            inner: quote_spanned!(span=> #private::Passed::<::core::option::Option<_>>(#call)),
            outer: |_, measured| quote!(::core::result::Result::Ok(#measured.0)),
        },
        Shape::Result { .. } => Conversion {
            inner: quote_spanned!(span=> ::core::result::Result::map_err(#call, #stop)),
            outer: |_, measured| quote!(::core::result::Result::map(#measured, ::core::option::Option::Some)),
        },
        Shape::FilterResult { .. } => Conversion {
            inner: quote_spanned!(span=> ::core::result::Result::map_err(#call, #stop)),
            outer: |_, measured| quote!(#measured),
        },
    }
}

fn generate(stage: StageImpl) -> TokenStream {
    let inner = format_ident!("__pipeline_stage_process");
    let call = if stage.is_async {
        quote!(Self::#inner(self, event).await)
    } else {
        quote!(Self::#inner(self, event))
    };
    let Conversion { inner: measured, outer } = convert(&stage, &call);
    let StageImpl {
        mut item,
        process_index,
        event_ty,
        return_ty,
        output_ty,
        name,
        named_per_instantiation,
        is_async,
        runtime,
        ..
    } = stage;
    let private = runtime.private();
    let stage_trait = runtime.item("Stage");
    let async_stage_trait = runtime.item("AsyncStage");
    let stage_result = runtime.item("StageResult");

    // The user's body moves to a hidden method; `process` stays callable as written (same
    // signature, visibility and docs), measured like the trait's, so a stage's own tests and
    // other methods calling `self.process(e)` keep compiling and get the type they wrote.
    let ImplItem::Fn(mut process) = item.items.remove(process_index) else { unreachable!() };
    let method_generics = process.sig.generics.clone();
    let user_attrs = std::mem::take(&mut process.attrs);
    let user_vis = std::mem::replace(&mut process.vis, syn::Visibility::Inherited);
    process.sig.ident = inner.clone();
    process.attrs.push(syn::parse_quote!(#[doc(hidden)]));
    if cfg!(feature = "off") {
        process.attrs.push(syn::parse_quote!(#[inline(always)]));
    } else {
        // Out of line, so that the stage's own code runs in a function of the user's crate
        // (`Stage::__pipeline_stage_process`) rather than inlined into the toolkit's generic
        // wrapper: CPU samples taken in it are then the stage's, not the toolkit's.
        process.attrs.push(syn::parse_quote!(#[inline(never)]));
    }
    // Any spelling of `&self` (`self: &Self`) becomes `&self`: the inherent `process` below
    // calls it that way.
    if let Some(FnArg::Receiver(receiver)) = process.sig.inputs.first_mut() {
        *receiver = syn::parse_quote!(&self);
    }
    item.items.push(ImplItem::Fn(process));

    // The `Stage` impl's generics: the impl's own, plus `process`'s type parameters.
    let mut trait_generics = item.generics.clone();
    trait_generics.params.extend(method_generics.params.iter().cloned());
    if let Some(method_where) = &method_generics.where_clause {
        trait_generics
            .make_where_clause()
            .predicates
            .extend(method_where.predicates.iter().cloned());
    }
    let (impl_generics, _, where_clause) = trait_generics.split_for_impl();
    let self_ty = &item.self_ty;
    let (impl_generics_of_item, _, where_of_item) = item.generics.split_for_impl();

    let name_lit = syn::LitStr::new(&name, self_ty.span());
    let name_tokens = name_lit.to_token_stream();
    let callsite = runtime.callsite_static(&name_tokens, "Stage");
    let make_span = runtime.stage_span_maker(&name_tokens);
    let method_params = &method_generics.params;
    let method_where = &method_generics.where_clause;

    // With the `off` feature the stage is still a `Stage`, but records nothing: no span, no
    // call site, no recorder call, just the user's `process`.
    if cfg!(feature = "off") {
        let off_result = outer(&private, &measured);
        let off_name = if named_per_instantiation {
            quote!(#private::instantiation_name(::core::any::type_name::<Self>()))
        } else {
            quote!(#name_lit)
        };
        if is_async {
            return quote! {
                #item

                impl #impl_generics_of_item #self_ty #where_of_item {
                    #(#user_attrs)*
                    #[inline]
                    #user_vis async fn process<#method_params>(&self, event: #event_ty) -> #return_ty #method_where {
                        #call
                    }
                }

                impl #impl_generics #async_stage_trait<#event_ty> for #self_ty #where_clause {
                    type Out = #output_ty;

                    fn name(&self) -> &str {
                        #off_name
                    }

                    #[inline]
                    async fn process(&self, event: #event_ty) -> #stage_result<#output_ty> {
                        #off_result
                    }

                    // The same methods as the recording build, so a misuse (a future that is
                    // not `Send`) gives the same errors in both builds.
                    #[inline]
                    async fn process_as(
                        &self,
                        event: #event_ty,
                        _instance: &'static #private::Callsite,
                    ) -> #stage_result<#output_ty> {
                        #off_result
                    }
                }
            };
        }
        return quote! {
            #item

            impl #impl_generics_of_item #self_ty #where_of_item {
                #(#user_attrs)*
                #[inline]
                #user_vis fn process<#method_params>(&self, event: #event_ty) -> #return_ty #method_where {
                    #call
                }
            }

            impl #impl_generics #stage_trait<#event_ty> for #self_ty #where_clause {
                type Out = #output_ty;

                fn name(&self) -> &str {
                    #off_name
                }

                #[inline]
                fn process(&self, event: #event_ty) -> #stage_result<#output_ty> {
                    #off_result
                }
            }
        };
    }

    // One call site for the stage, whichever way `process` is called: a static in a hidden
    // associated function (one static even in a generic impl, as it names no parameter). A
    // generic impl without a name derives one per instantiation from it (`Dedup<u64>`).
    let site = if named_per_instantiation {
        quote! {
            #private::stage_instantiation(&__PIPELINE_CALLSITE, ::core::any::type_name::<Self>)
        }
    } else {
        quote!(&__PIPELINE_CALLSITE)
    };
    let by_callsite = outer(
        &private,
        &quote!(#private::run_stage(Self::__pipeline_callsite(), #make_span, || #measured)),
    );
    let by_instance =
        outer(&private, &quote!(#private::run_stage(instance, #make_span, || #measured)));
    let name_body = if named_per_instantiation {
        quote!(Self::__pipeline_callsite().name())
    } else {
        quote!(#name_lit)
    };
    if is_async {
        // Each call is a future measured from its first poll to its completion, wherever its
        // polls run: busy and wall time, allocations per poll, nested calls under the stage.
        let measure = |site: TokenStream| {
            outer(
                &private,
                &quote!(#private::profile_future(
                    #site,
                    #private::QuietSpan::new(#make_span),
                    async move { #private::outcome_on_span(#measured) },
                ).await),
            )
        };
        let by_callsite = measure(quote!(Self::__pipeline_callsite()));
        let by_instance = measure(quote!(instance));
        return quote! {
            #item

            impl #impl_generics_of_item #self_ty #where_of_item {
                #[doc(hidden)]
                #[inline(always)]
                fn __pipeline_callsite() -> &'static #private::Callsite {
                    #callsite
                    #site
                }

                #(#user_attrs)*
                #user_vis async fn process<#method_params>(&self, event: #event_ty) -> #return_ty #method_where {
                    #private::profile_future(
                        Self::__pipeline_callsite(),
                        #private::QuietSpan::new(#make_span),
                        Self::#inner(self, event),
                    ).await
                }
            }

            impl #impl_generics #async_stage_trait<#event_ty> for #self_ty #where_clause {
                type Out = #output_ty;

                fn name(&self) -> &str {
                    #name_body
                }

                async fn process(&self, event: #event_ty) -> #stage_result<#output_ty> {
                    #by_callsite
                }

                async fn process_as(
                    &self,
                    event: #event_ty,
                    instance: &'static #private::Callsite,
                ) -> #stage_result<#output_ty> {
                    #by_instance
                }
            }
        };
    }
    quote! {
        #item

        impl #impl_generics_of_item #self_ty #where_of_item {
            #[doc(hidden)]
            #[inline(always)]
            fn __pipeline_callsite() -> &'static #private::Callsite {
                #callsite
                #site
            }

            #(#user_attrs)*
            #[inline]
            #user_vis fn process<#method_params>(&self, event: #event_ty) -> #return_ty #method_where {
                #private::run_stage_direct(Self::__pipeline_callsite(), #make_span, || #call)
            }
        }

        impl #impl_generics #stage_trait<#event_ty> for #self_ty #where_clause {
            type Out = #output_ty;

            fn name(&self) -> &str {
                #name_body
            }

            #[inline]
            fn process(&self, event: #event_ty) -> #stage_result<#output_ty> {
                #by_callsite
            }

            #[inline]
            fn process_as(
                &self,
                event: #event_ty,
                instance: &'static #private::Callsite,
            ) -> #stage_result<#output_ty> {
                #by_instance
            }
        }
    }
}
