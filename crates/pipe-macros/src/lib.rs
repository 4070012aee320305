//! The `#[stage]` attribute: a stage kind declared once, on its `Stage` impl.
//!
//! ```ignore
//! #[stage(kind = "token_counts", summary = "real tokens per row")]
//! impl Stage for TokenCounts { ... }
//! ```
//!
//! expands to the impl registered with `typetag` under the kind (so a YAML
//! `kind: token_counts` deserializes a `TokenCounts`), the kind's entry in
//! `pipe stages` (`pipe_core::StageInfo`, with the file and line it is
//! defined at), and `TokenCounts::KIND`. The kind string is written once.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, ItemImpl, LitStr};

#[proc_macro_attribute]
pub fn stage(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut kind: Option<LitStr> = None;
    let mut summary: Option<LitStr> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("kind") {
            kind = Some(meta.value()?.parse()?);
            Ok(())
        } else if meta.path.is_ident("summary") {
            summary = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error("expected `kind = \"...\"` or `summary = \"...\"`"))
        }
    });
    parse_macro_input!(args with parser);
    let item = parse_macro_input!(item as ItemImpl);
    match expand(kind, summary, item) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn expand(
    kind: Option<LitStr>,
    summary: Option<LitStr>,
    item: ItemImpl,
) -> syn::Result<proc_macro2::TokenStream> {
    let span = proc_macro2::Span::call_site();
    let kind = kind.ok_or_else(|| {
        syn::Error::new(
            span,
            "#[stage] needs `kind = \"...\"`: the YAML `kind:` of this stage",
        )
    })?;
    let summary = summary.ok_or_else(|| {
        syn::Error::new(
            span,
            "#[stage] needs `summary = \"...\"`: one line for `pipe stages`",
        )
    })?;
    let is_stage_impl = item
        .trait_
        .as_ref()
        .and_then(|(_, path, _)| path.segments.last())
        .is_some_and(|s| s.ident == "Stage");
    if !is_stage_impl {
        return Err(syn::Error::new_spanned(
            &item.self_ty,
            "#[stage] goes on an `impl Stage for T` block",
        ));
    }
    let ty = &item.self_ty;
    Ok(quote! {
        #[::typetag::serde(name = #kind)]
        #item

        impl #ty {
            /// The YAML `kind:` that selects this stage.
            pub const KIND: &'static str = #kind;
        }

        ::pipe_core::register_stage!(#ty, #kind, #summary);
    })
}
