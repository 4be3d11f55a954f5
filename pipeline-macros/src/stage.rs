//! `#[stage]`: parse the inherent impl, check its `process`, emit `impl Stage<E>`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, GenericParam, ImplItem, ImplItemFn, Item, ItemImpl, ReturnType, Type};

use crate::errors::{is_profiled_attr, Errors};
use crate::options;
use crate::runtime;
use crate::types::contains_impl_trait;

const SHAPE: &str = "fn process(&self, event: E) -> E` or `-> Result<E, StageError>";

/// The checked input: everything expansion needs.
struct StageImpl {
    item: ItemImpl,
    process_index: usize,
    event_ty: Type,
    /// `process`'s return type, where type errors about it should point.
    return_ty: Type,
    /// `true` when `process` returns the event type itself rather than a `Result`.
    name: String,
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
             write `#[stage] impl MyStage {{ fn process(&self, event: E) -> E {{ .. }} }}` \
             (or return `Result<E, StageError>`)"
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
             `impl Stage<E> for MyStage` itself: remove the trait and `for`",
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
            format!("#[stage] needs a method `{SHAPE}` in this impl block"),
        ));
    };
    let ImplItem::Fn(process) = &item.items[process_index] else { unreachable!() };
    let event_ty = check_signature(process, &mut errors);
    // Whether `process` returns the event or a `Result` of it is the type system's call (see
    // `StageOutput`): comparing tokens would reject an alias of the event type.
    let return_ty = match &process.sig.output {
        ReturnType::Type(_, ret) => (**ret).clone(),
        ReturnType::Default => syn::parse_quote!(()),
    };
    errors.finish()?;
    let name = match options.name {
        Some(name) => name.value(),
        None => type_name(&item.self_ty),
    };
    Ok(StageImpl {
        event_ty: event_ty.expect("checked above"),
        return_ty,
        item,
        process_index,
        name,
    })
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
    if let Some(token) = &sig.asyncness {
        errors.at(
            token,
            "a stage's `process` cannot be `async`: make it synchronous and call #[profiled] \
             async functions from it if it must wait",
        );
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
    if let ReturnType::Default = sig.output {
        errors.at(sig, format!("`process` must return the event: `{SHAPE}`"));
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
            errors.at(&sig.ident, format!("`process` needs a `&self` receiver: `{SHAPE}`"));
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
                format!("`process` takes the event as its one parameter: `{SHAPE}`"),
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

fn generate(stage: StageImpl) -> TokenStream {
    let StageImpl { mut item, process_index, event_ty, return_ty, name } = stage;
    let private = runtime::private();
    let inner = format_ident!("__pipeline_stage_process");

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
    let callsite = runtime::callsite_static(&name_tokens, "Stage");
    let make_span = runtime::stage_span_maker(&name_tokens);
    let call = quote!(Self::#inner(self, event));
    let method_params = &method_generics.params;
    let method_where = &method_generics.where_clause;
    let direct_body = if cfg!(feature = "off") {
        call.clone()
    } else {
        quote! {
            #private::run_stage_direct(Self::__pipeline_callsite(), #make_span, || #call)
        }
    };
    // One call site for the stage, whichever way `process` is called: a static in a hidden
    // associated function (one static even in a generic impl, as it names no parameter).
    let callsite_fn = if cfg!(feature = "off") {
        quote!()
    } else {
        quote! {
            #[doc(hidden)]
            #[inline(always)]
            fn __pipeline_callsite() -> &'static #private::Callsite {
                #callsite
                &__PIPELINE_CALLSITE
            }
        }
    };
    let inherent = quote! {
        impl #impl_generics_of_item #self_ty #where_of_item {
            #callsite_fn

            #(#user_attrs)*
            #[inline]
            #user_vis fn process<#method_params>(&self, event: #event_ty) -> #return_ty #method_where {
                #direct_body
            }
        }
    };
    // Spanned at the return type, so a mismatch is reported there.
    let result = quote_spanned!(return_ty.span()=> <#return_ty as #private::StageOutput<#event_ty>>::into_stage_result(#call));

    // With the `off` feature the stage is still a `Stage`, but records nothing: no span, no
    // call site, no recorder call, just the user's `process`.
    let body = if cfg!(feature = "off") {
        result
    } else {
        quote! {
            #private::run_stage(Self::__pipeline_callsite(), #make_span, || #result)
        }
    };

    quote! {
        #item

        #inherent

        impl #impl_generics ::pipeline::Stage<#event_ty> for #self_ty #where_clause {
            fn name(&self) -> &str {
                #name_lit
            }

            #[inline]
            fn process(
                &self,
                event: #event_ty,
            ) -> ::core::result::Result<#event_ty, ::pipeline::StageError> {
                #body
            }
        }
    }
}
