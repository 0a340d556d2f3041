//! `trace!`: the nnsight-shaped body compiled into `model.trace(input).run(async |m| ..)`, or, with
//! `invoke` blocks, into `model.tracer().invoke(input, async |m| ..)..run()`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::visit_mut::VisitMut;
use syn::{Block, Expr, Ident};

use crate::ast::{InvokeBlock, TraceInput};
use crate::rewrite::invoke_sharing::{read_shared, slot, store_shared, top_level_names, used_names};
use crate::rewrite::trace_body::TraceBody;

pub(crate) fn expand(input: TraceInput) -> syn::Result<TokenStream> {
    match input {
        TraceInput::Single { model, input, mut body } => {
            rewrite(&mut body.body)?;
            let envoy = &body.inputs;
            let block = &body.body;
            Ok(quote! {{
                use ::nnsight::TraceExt as _;
                (#model).trace(#input).run(async |#envoy| ::core::result::Result::Ok(#block))
            }})
        }
        TraceInput::Invokes { model, envoy, mut invokes } => {
            let shared = share_names(&mut invokes);
            let mut calls = Vec::with_capacity(invokes.len());
            for InvokeBlock { input, body } in invokes {
                let mut body = Expr::Block(syn::ExprBlock { attrs: Vec::new(), label: None, block: body });
                rewrite(&mut body)?;
                let body = quote!(async |#envoy| ::core::result::Result::Ok(#body));
                calls.push(match input {
                    Some(input) => quote!(.invoke(#input, #body)),
                    None => quote!(.invoke_all(#body)),
                });
            }
            let slots = shared.iter().map(|name| {
                let (slot, label) = (slot(name), name.to_string());
                quote!(let #slot = ::nnsight::Shared::new(#label);)
            });
            Ok(quote! {{
                use ::nnsight::TraceExt as _;
                #(#slots)*
                (#model).tracer() #(#calls)* .run()
            }})
        }
    }
}

/// Rewrites a body's accesses; reports every error found.
fn rewrite(body: &mut Expr) -> syn::Result<()> {
    let mut rewrite = TraceBody::default();
    rewrite.visit_expr_mut(body);
    rewrite.errors.finish(())
}

/// Connects names bound at the top level of one invoke and used by a later one through slots;
/// returns the shared names.
fn share_names(invokes: &mut [InvokeBlock]) -> Vec<Ident> {
    let mut shared: Vec<Ident> = Vec::new();
    for i in 0..invokes.len() {
        let later: Vec<&Block> = invokes[i + 1..].iter().map(|invoke| &invoke.body).collect();
        let used: std::collections::BTreeSet<String> = later.iter().flat_map(|b| used_names(b)).collect();
        let stored: Vec<Ident> =
            top_level_names(&invokes[i].body).into_iter().filter(|n| used.contains(&n.to_string())).collect();
        read_shared(&mut invokes[i].body, &shared);
        store_shared(&mut invokes[i].body, &stored);
        for name in stored {
            if !shared.contains(&name) {
                shared.push(name);
            }
        }
    }
    shared
}
