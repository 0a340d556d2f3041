//! `#[inspect]`: instruments the methods of an `impl` block and implements `Signature` /
//! `Forward` from its `forward` method.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, LitInt, ReturnType, Type};

use crate::rewrite::forward_sites::ForwardSites;

pub(crate) fn expand(args: TokenStream, mut item: ItemImpl) -> syn::Result<TokenStream> {
    let batching = batching(args)?;
    if let Some((_, path, _)) = &item.trait_ {
        return Err(syn::Error::new_spanned(
            path,
            "`#[inspect]` goes on the module's inherent `impl` block (the one with `fn forward`)",
        ));
    }
    let mut sites = ForwardSites::new(batching);
    for impl_item in &mut item.items {
        if let ImplItem::Fn(method) = impl_item {
            sites.visit_method(method);
        }
    }
    std::mem::take(&mut sites.errors).finish(())?;
    let signature = item.items.iter().find_map(|i| match i {
        ImplItem::Fn(f) if f.sig.ident == "forward" => signature(&item, f),
        _ => None,
    });
    if signature.as_ref().is_some_and(|(_, forward)| *forward) {
        for impl_item in &mut item.items {
            if let ImplItem::Fn(method) = impl_item
                && method.sig.ident == "forward"
            {
                report_calls(method);
            }
        }
    }
    let signature = signature.map(|(tokens, _)| tokens);
    Ok(quote!(#item #signature))
}

/// The options of `#[inspect(..)]`: how the calls of the block carry the batch
/// (`batch_dim = N`, `unbatched`); `None` when the block says nothing (as its caller's).
fn batching(args: TokenStream) -> syn::Result<Option<TokenStream>> {
    let mut batching: Option<TokenStream> = None;
    let parser = syn::meta::parser(|meta| {
        let option = if meta.path.is_ident("batch_dim") {
            let dim: LitInt = meta.value()?.parse()?;
            let dim: usize = dim.base10_parse()?;
            quote!(::nnsight::inspect::Batching::Dim(#dim))
        } else if meta.path.is_ident("unbatched") {
            quote!(::nnsight::inspect::Batching::Unbatched)
        } else {
            return Err(meta.error("unknown `#[inspect]` option; expected `batch_dim = N` or `unbatched`"));
        };
        if batching.is_some() {
            return Err(meta.error("`#[inspect]` takes one of `batch_dim = N` and `unbatched`, once"));
        }
        batching = Some(option);
        Ok(())
    });
    syn::parse::Parser::parse2(parser, args)?;
    Ok(batching)
}

/// Wraps the body of `forward` (whose arguments are all owned) in `module_call`, so that a
/// trace observer (a recorder) sees a body call the module as one call, not as its operations.
fn report_calls(method: &mut ImplItemFn) {
    let mut names = Vec::new();
    let mut pats = Vec::new();
    let mut tys = Vec::new();
    for (i, arg) in method.sig.inputs.iter_mut().skip(1).enumerate() {
        let FnArg::Typed(arg) = arg else { return };
        let name = Ident::new(&format!("__nnsight_arg{i}"), Span::mixed_site());
        pats.push(std::mem::replace(&mut *arg.pat, syn::parse_quote!(#name)));
        tys.push((*arg.ty).clone());
        names.push(name);
    }
    let block = &method.block;
    method.block = syn::parse_quote!({
        ::nnsight::observe::module_call(self, (#(#names,)*), |(#(#pats,)*): (#(#tys,)*)| #block)
    });
}

/// `Signature` (and, with only owned arguments, `Forward`) from `fn forward(&self, ..)`; whether
/// it made `Forward`.
fn signature(item: &ItemImpl, forward: &ImplItemFn) -> Option<(TokenStream, bool)> {
    let sig = &forward.sig;
    let by_ref_self = matches!(sig.inputs.first(), Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none());
    if !by_ref_self || !sig.generics.params.is_empty() || sig.asyncness.is_some() {
        return None;
    }
    let mut owned = Vec::new();
    let mut all_owned = true;
    for arg in sig.inputs.iter().skip(1) {
        let FnArg::Typed(arg) = arg else { return None };
        if mentions_impl_trait(&arg.ty) {
            return None;
        }
        match &*arg.ty {
            Type::Reference(_) => all_owned = false,
            ty => owned.push(ty.clone()),
        }
    }
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) if mentions_impl_trait(ty) => return None,
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let self_ty = &item.self_ty;
    let mut tokens = quote! {
        impl #impl_generics ::nnsight::inspect::Signature for #self_ty #where_clause {
            type Inputs = (#(#owned,)*);
            type Output = #output;
        }
    };
    if all_owned {
        let names: Vec<Ident> =
            (0..owned.len()).map(|i| Ident::new(&format!("__nnsight_arg{i}"), Span::mixed_site())).collect();
        tokens.extend(quote! {
            impl #impl_generics ::nnsight::inspect::Forward for #self_ty #where_clause {
                fn forward_inputs(&self, (#(#names,)*): Self::Inputs) -> Self::Output {
                    self.forward(#(#names),*)
                }
            }
        });
    }
    Some((tokens, all_owned))
}

fn mentions_impl_trait(ty: &Type) -> bool {
    ty.to_token_stream().into_iter().any(|t| t.to_string() == "impl")
}
