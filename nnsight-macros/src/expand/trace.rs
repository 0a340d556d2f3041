//! `trace!`: the nnsight-shaped body compiled into `model.trace(input).run(async |m| ..)`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::visit_mut::VisitMut;

use crate::ast::TraceInput;
use crate::rewrite::trace_body::TraceBody;

pub(crate) fn expand(input: TraceInput) -> syn::Result<TokenStream> {
    let TraceInput { model, input, mut body } = input;
    let mut rewrite = TraceBody::default();
    rewrite.visit_expr_mut(&mut body.body);
    if let Some(mut error) = rewrite.errors.pop() {
        for e in rewrite.errors {
            error.combine(e);
        }
        return Err(error);
    }
    let envoy = &body.inputs;
    let block = &body.body;
    Ok(quote! {{
        use ::nnsight::TraceExt as _;
        (#model).trace(#input).run(async |#envoy| ::core::result::Result::Ok(#block))
    }})
}
