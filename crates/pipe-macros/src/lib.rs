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
//!
//! In a crate outside this workspace (a plugin, docs/plugins.md) the
//! expansion names everything through the `pipe` crate, the one dependency
//! such a crate has, and records a hash of the crate's sources: the
//! workspace's build fingerprint does not cover them, and the kind's cache
//! keys must change when they do.

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
    let (core, plugin) = match plugin_crate() {
        None => (quote!(::pipe_core), quote!(::core::option::Option::None)),
        Some((name, hash)) => (
            quote!(::pipe::core),
            quote!(::core::option::Option::Some(::pipe::core::PluginCode {
                crate_name: #name,
                source_hash: #hash,
            })),
        ),
    };
    Ok(quote! {
        // typetag's expansion names `typetag::…`: this scope provides it, so
        // the crate needs no dependency of its own on typetag.
        const _: () = {
            use #core::typetag;
            #[typetag::serde(name = #kind)]
            #item
        };

        impl #ty {
            /// The YAML `kind:` that selects this stage.
            pub const KIND: &'static str = #kind;
        }

        #core::register_stage!(#ty, #kind, #summary, #plugin);
    })
}

/// For a crate outside this workspace: its name and a hash of its sources
/// (everything under `src/`, its manifest, build script and lock file).
/// The compiler expands this macro again whenever the crate is rebuilt,
/// which any change to those files causes, so the hash is never stale.
fn plugin_crate() -> Option<(String, String)> {
    let manifest_dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let workspace_crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let canonical = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    if canonical(&manifest_dir).starts_with(canonical(workspace_crates)) {
        return None;
    }
    let mut files = Vec::new();
    collect_files(&manifest_dir.join("src"), &mut files);
    for name in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        files.push(manifest_dir.join(name));
    }
    files.sort();
    let mut hasher = Fnv::default();
    for file in &files {
        if let Ok(bytes) = std::fs::read(file) {
            let relative = file.strip_prefix(&manifest_dir).unwrap_or(file);
            hasher.feed(relative.to_string_lossy().as_bytes());
            hasher.feed(&(bytes.len() as u64).to_le_bytes());
            hasher.feed(&bytes);
        }
    }
    let name = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
    Some((name, format!("{:016x}", hasher.0)))
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// FNV-1a, 64 bits, as `pipe-core`'s build fingerprint: a change detector,
/// not a defence.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}
