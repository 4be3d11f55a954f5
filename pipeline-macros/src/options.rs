//! The options the attributes take: `name = "..."` and `crate = path` (both), `reject_if =
//! predicate` (`#[stage]`).

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Token};

use crate::errors::Errors;

/// Parsed attribute arguments.
#[derive(Default)]
pub(crate) struct Options {
    pub name: Option<LitStr>,
    /// `#[stage(reject_if = path::to::predicate)]`: which of `process`'s errors are rejections.
    pub reject_if: Option<Expr>,
    /// `crate = path`: where the `pipeline` facade is, for a crate that renames or re-exports it.
    pub facade: Option<syn::Path>,
}

const CRATE_VALUE: &str =
    "`crate` takes the path of the `pipeline` facade as your crate reaches it: \
     `crate = ::my_toolkit::pipeline`";

const REJECT_IF_VALUE: &str = "`reject_if` takes a function of the error that says whether it is a \
     rejection: `#[stage(reject_if = MyError::is_rejection)]` with `fn is_rejection(&self) -> bool`";

/// Parses `#[attr(name = "..")]`; `attr` is the attribute's name for messages.
pub(crate) fn parse(attr: &str, args: TokenStream) -> syn::Result<Options> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("expected `#[{attr}]` or `#[{attr}(name = \"...\")]`: {e}"),
        )
    })?;
    let mut options = Options::default();
    let mut errors = Errors::default();
    for meta in metas {
        let key = meta.path().get_ident().map(ToString::to_string);
        match (key.as_deref(), &meta) {
            (Some("name"), Meta::NameValue(nv)) => match &nv.value {
                Expr::Lit(ExprLit { lit: Lit::Str(name), .. }) => {
                    if options.name.is_some() {
                        errors.at(&meta, "`name` is given twice; keep one");
                    } else if name.value().trim().is_empty() {
                        errors.at(name, "the name is empty; write the name reports should show");
                    } else {
                        options.name = Some(name.clone());
                    }
                }
                other => errors.at(
                    other,
                    format!("`name` takes a string literal: `#[{attr}(name = \"...\")]`"),
                ),
            },
            (Some("name"), _) => {
                errors.at(&meta, format!("`name` takes a value: `#[{attr}(name = \"...\")]`"))
            }
            (Some("crate"), Meta::NameValue(nv)) => match &nv.value {
                Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => {
                    if options.facade.is_some() {
                        errors.at(&meta, "`crate` is given twice; keep one");
                    } else {
                        options.facade = Some(path.path.clone());
                    }
                }
                other => errors.at(other, CRATE_VALUE),
            },
            (Some("crate"), _) => errors.at(&meta, CRATE_VALUE),
            (Some("reject_if"), Meta::NameValue(nv)) if attr == "stage" => {
                if options.reject_if.is_some() {
                    errors.at(&meta, "`reject_if` is given twice; keep one");
                } else if let Expr::Lit(_) = &nv.value {
                    errors.at(&nv.value, REJECT_IF_VALUE);
                } else {
                    options.reject_if = Some(nv.value.clone());
                }
            }
            (Some("reject_if"), _) if attr == "stage" => errors.at(&meta, REJECT_IF_VALUE),
            _ => errors.at(
                meta.path(),
                if attr == "stage" {
                    "unknown option for #[stage]; the options are `name = \"...\"`, \
                     `reject_if = predicate` and `crate = path`"
                        .to_owned()
                } else {
                    format!("unknown option for #[{attr}]; the options are `name = \"...\"` and `crate = path`")
                },
            ),
        }
    }
    errors.finish()?;
    Ok(options)
}
