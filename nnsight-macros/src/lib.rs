//! Procedural macros of nnsight-rs. Use them through the `nnsight` facade crate:
//!
//! - `#[derive(Inspectable)]` on a burn `Module` struct generates its typed envoy;
//! - `#[inspect]` on the struct's `impl` block turns every submodule call into a site;
//! - `trace!` compiles an nnsight-shaped body into a trace.
//!
//! Each macro parses its input into a typed form (`ast`), rewrites bodies where it must
//! (`rewrite`), and expands (`expand`). On error the user's item is still emitted, so one mistake
//! does not cascade into many.

use proc_macro::TokenStream;
use syn::parse_macro_input;

mod ast;
mod errors;
mod expand;
mod rewrite;

/// Derives `nnsight::Inspectable` for a burn `Module` struct with named fields.
///
/// Fields that are modules become envoy fields of the same name; `Vec<M>` fields become lists,
/// `Option<M>` fields optional modules. Parameters (`Param<..>`), tensors, plain values
/// (`usize`, `f64`, `bool`, `String`, ...) and fields marked `#[inspect(skip)]` or burn's
/// `#[module(skip)]` are skipped. `#[inspect(rename = "self")]` gives a field's module another
/// path component than its name (one Rust cannot spell: BERT's `attention.self`); the envoy field
/// keeps the Rust name.
///
/// `#[inspect(part = N)]` says that a submodule's values belong to part `N` of a model whose input
/// is several batches (CLIP: the text tower's are part 0, the vision tower's part 1): an invoke of
/// one part sees its rows of that part's modules, and other modules' values (the struct's own,
/// which combine the parts) whole, read-only. The batcher of such a model numbers the parts
/// (`nnsight::invoke::layout_parts`).
#[proc_macro_derive(Inspectable, attributes(inspect))]
pub fn derive_inspectable(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as syn::DeriveInput);
    match expand::derive::expand(&input) {
        Ok(tokens) => tokens.into(),
        // The error, and a stand-in impl so that code using the model does not fail again.
        Err(error) => {
            let error = error.into_compile_error();
            let fallback = expand::fallback::derive(&input);
            quote::quote!(#error #fallback).into()
        }
    }
}

/// Instruments the methods of a module's `impl` block: every `self.field.forward*(..)` call (and
/// calls on elements of `Vec` fields bound by `for`, `if let` or `let`) becomes a site.
///
/// A site's inputs are the call's owned arguments; borrowed ones — written `&expr`, or a parameter
/// of the enclosing method whose type is a reference (`mask: &Tensor<..>`, `cache: &mut Cache`) —
/// are passed to the call as they are.
///
/// It also implements `nnsight::Signature` (and `nnsight::Forward` when every argument is owned)
/// from the block's `fn forward(&self, ..)`, which types the module's envoy.
///
/// Options say how the values of the block's calls carry the batch, for invokes (each of which
/// sees only its rows): `#[inspect(batch_dim = 1)]` for a time-major forward (`[seq, batch, ..]`),
/// `#[inspect(unbatched)]` for calls whose values hold no batch dimension (every invoke reads them
/// whole; none of several may write them). Without an option the calls carry it as the caller's
/// do (dimension 0 at the model's root), and a value whose batch dimension does not hold the
/// batch (e.g. heads merged into it) is an error for a body that sees some rows, never another
/// invoke's rows.
#[proc_macro_attribute]
pub fn inspect(args: TokenStream, item: TokenStream) -> TokenStream {
    let original: proc_macro2::TokenStream = item.clone().into();
    let args: proc_macro2::TokenStream = args.into();
    let item = parse_macro_input!(item as syn::ItemImpl);
    match expand::inspect::expand(args, item) {
        Ok(tokens) => tokens.into(),
        Err(error) => {
            let error = error.into_compile_error();
            quote::quote!(#original #error).into()
        }
    }
}

/// Runs a trace written the way nnsight reads: `trace!(model, input, |m| { .. })`.
///
/// Inside the body, `m.path.output()`, `.input()` and `.inputs()` are the real values (the macro
/// awaits them); assigning to one replaces it (`m.h[2].output() = value;`), `+=`-style operators
/// edit it, `.save()` is accepted and does nothing. The body's value is the trace's result. A
/// replacement value that reads no site is computed when its site is reached.
///
/// With invokes — several inputs run as one batch — the body is a list of blocks:
/// `trace!(model, |m| { invoke x { .. } invoke y { .. } invoke { .. } })`. Each block sees its
/// input's rows (`invoke { .. }`: the whole batch); a name bound by `let` at the top of one block
/// can be used in later blocks, where it is read when used (an `nnsight::Shared` underneath). The
/// result is the tuple of the blocks' values.
#[proc_macro]
pub fn trace(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as ast::TraceInput);
    expand::trace::expand(input).unwrap_or_else(syn::Error::into_compile_error).into()
}
