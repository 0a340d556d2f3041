//! Rewrites a `trace!` body into an async body: envoy accesses are awaited, assignments to them
//! become replacements, compound assignments edits.

use quote::quote;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::visit_mut::{self, VisitMut};
use syn::{BinOp, Expr, parse_quote};

use crate::errors::Errors;

/// Method names that read a site.
const ACCESSES: &[&str] = &["output", "input", "inputs"];

/// Whether `expr` is an envoy access: `x.output()`, `x.input()`, `x.inputs()`, optionally
/// followed by `.at(n)`.
pub(crate) fn is_access(expr: &Expr) -> bool {
    let Expr::MethodCall(call) = expr else { return false };
    if call.method == "at" && call.args.len() == 1 {
        return is_access(&call.receiver);
    }
    call.args.is_empty() && ACCESSES.iter().any(|a| call.method == a)
}

/// Whether an access occurs anywhere in `expr`.
pub(crate) fn contains_access(expr: &Expr) -> bool {
    let mut find = FindAccess(None);
    find.visit_expr(expr);
    find.0.is_some()
}

/// The rewriting visitor; collects errors instead of stopping at the first.
#[derive(Default)]
pub(crate) struct TraceBody {
    pub(crate) errors: Errors,
}

/// Finds an access anywhere inside an expression.
struct FindAccess(Option<proc_macro2::Span>);

impl<'ast> Visit<'ast> for FindAccess {
    fn visit_expr(&mut self, expr: &'ast Expr) {
        if self.0.is_none() && is_access(expr) {
            self.0 = Some(expr.span());
        }
        visit::visit_expr(self, expr);
    }
}

impl VisitMut for TraceBody {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        match expr {
            Expr::Await(awaited) => self.errors.at(
                awaited.await_token.span,
                "`trace!` awaits envoy accesses itself; remove this `.await` \
                 (or use the explicit API: `model.trace(input).run(async |m| ..)`)",
            ),
            Expr::Closure(closure) => {
                let mut find = FindAccess(None);
                find.visit_expr(&closure.body);
                if let Some(span) = find.0 {
                    self.errors.at(
                        span,
                        "an envoy access inside a closure cannot be awaited; use a `for` loop instead",
                    );
                }
            }
            Expr::Async(_) => {}
            // A value without accesses is computed when the site is reached (so a value another
            // invoke stores at the same site is there); one that reads sites is computed first.
            Expr::Assign(assign) if is_access(&assign.left) => {
                let lazy = !contains_access(&assign.right);
                self.visit_expr_mut(&mut assign.right);
                let (site, value) = (&assign.left, &assign.right);
                *expr = if lazy {
                    parse_quote!({
                        let __nnsight_site = #site;
                        __nnsight_site.reached().await?;
                        __nnsight_site.replace(#value).await?
                    })
                } else {
                    parse_quote!((#site).replace(#value).await?)
                };
            }
            Expr::Binary(binary) if is_access(&binary.left) && compound(&binary.op).is_some() => {
                let lazy = !contains_access(&binary.right);
                self.visit_expr_mut(&mut binary.right);
                let (site, value) = (&binary.left, &binary.right);
                let op = compound(&binary.op).expect("checked above");
                *expr = if lazy {
                    parse_quote!({
                        let __nnsight_site = #site;
                        __nnsight_site.reached().await?;
                        let __nnsight_operand = #value;
                        __nnsight_site.edit(move |__nnsight_value| __nnsight_value #op __nnsight_operand).await?
                    })
                } else {
                    parse_quote!({
                        let __nnsight_operand = #value;
                        (#site).edit(move |__nnsight_value| __nnsight_value #op __nnsight_operand).await?
                    })
                };
            }
            Expr::MethodCall(call)
                if call.method == "save" && call.args.is_empty() && is_access(&call.receiver) =>
            {
                *expr = (*call.receiver).clone();
                self.visit_expr_mut(expr);
            }
            _ if is_access(expr) => {
                self.visit_access_arguments(expr);
                *expr = parse_quote!((#expr).await?);
            }
            _ => visit_mut::visit_expr_mut(self, expr),
        }
    }

    fn visit_item_mut(&mut self, _item: &mut syn::Item) {}
}

impl TraceBody {
    /// Rewrites inside the arguments of an access chain (`.at(n)`), not the chain itself.
    fn visit_access_arguments(&mut self, expr: &mut Expr) {
        if let Expr::MethodCall(call) = expr {
            if call.method == "at" {
                call.args.iter_mut().for_each(|a| self.visit_expr_mut(a));
                self.visit_access_arguments(&mut call.receiver);
            } else {
                self.visit_expr_mut(&mut call.receiver);
            }
        }
    }
}

/// The binary operator of a compound assignment (`+=` → `+`).
fn compound(op: &BinOp) -> Option<proc_macro2::TokenStream> {
    Some(match op {
        BinOp::AddAssign(_) => quote!(+),
        BinOp::SubAssign(_) => quote!(-),
        BinOp::MulAssign(_) => quote!(*),
        BinOp::DivAssign(_) => quote!(/),
        _ => return None,
    })
}
