//! Names shared between the invokes of a `trace!` body, as in nnsight: a variable bound at the top
//! level of one invoke is visible to the invokes after it.
//!
//! Each such variable gets a slot (`nnsight::Shared`): the invoke that binds it stores a clone
//! right after its `let`, and later invokes read the slot where they use the name — at that moment
//! of the forward pass, so the value is there when the invoke that stores it ran first at the same
//! site (and a read before that is a clear `NotShared` error).

use std::collections::BTreeSet;

use quote::format_ident;
use syn::visit::{self, Visit};
use syn::visit_mut::{self, VisitMut};
use syn::{Block, Expr, Ident, Pat, Stmt, parse_quote};

/// The slot variable of a shared name.
pub(crate) fn slot(name: &Ident) -> Ident {
    format_ident!("__nnsight_shared_{}", name)
}

/// The name a top-level `let` binds, if it binds one plain name (`let h = ..`, `let h: T = ..`).
fn bound_name(stmt: &Stmt) -> Option<&Ident> {
    let Stmt::Local(local) = stmt else { return None };
    let pat = match &local.pat {
        Pat::Type(typed) => &*typed.pat,
        pat => pat,
    };
    match pat {
        Pat::Ident(ident) if ident.subpat.is_none() && !ident.ident.to_string().starts_with('_') => {
            Some(&ident.ident)
        }
        _ => None,
    }
}

/// The names `block` binds at its top level.
pub(crate) fn top_level_names(block: &Block) -> Vec<Ident> {
    block.stmts.iter().filter_map(bound_name).cloned().collect()
}

/// The single-identifier paths used anywhere in `block` (candidates for shared names).
pub(crate) fn used_names(block: &Block) -> BTreeSet<String> {
    struct Uses(BTreeSet<String>);
    impl<'ast> Visit<'ast> for Uses {
        fn visit_expr(&mut self, expr: &'ast Expr) {
            if let Expr::Path(path) = expr
                && let Some(ident) = path.path.get_ident()
            {
                self.0.insert(ident.to_string());
            }
            visit::visit_expr(self, expr);
        }
    }
    let mut uses = Uses(BTreeSet::new());
    uses.visit_block(block);
    uses.0
}

/// Stores each of `names` in its slot right after the top-level `let` that binds it.
pub(crate) fn store_shared(block: &mut Block, names: &[Ident]) {
    let mut stmts = Vec::with_capacity(block.stmts.len() + names.len());
    for stmt in block.stmts.drain(..) {
        let stored = bound_name(&stmt).filter(|n| names.contains(n)).cloned();
        stmts.push(stmt);
        if let Some(name) = stored {
            let slot = slot(&name);
            stmts.push(parse_quote!(#slot.set(::core::clone::Clone::clone(&#name))?;));
        }
    }
    block.stmts = stmts;
}

/// Turns reads of names shared by earlier invokes into reads of their slots, until a top-level
/// `let` of this block binds the name again.
pub(crate) fn read_shared(block: &mut Block, names: &[Ident]) {
    let mut reads = SharedReads { names: names.to_vec() };
    for stmt in &mut block.stmts {
        reads.visit_stmt_mut(stmt);
        if let Some(name) = bound_name(stmt) {
            let name = name.clone();
            reads.names.retain(|n| *n != name);
        }
    }
}

struct SharedReads {
    names: Vec<Ident>,
}

impl VisitMut for SharedReads {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        if let Expr::Path(path) = expr
            && path.qself.is_none()
            && let Some(ident) = path.path.get_ident()
            && self.names.contains(ident)
        {
            let slot = slot(ident);
            *expr = parse_quote!((#slot.get()?));
            return;
        }
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_item_mut(&mut self, _item: &mut syn::Item) {}
}
