//! Turns submodule calls in forward methods into sites.
//!
//! A call `R.forward*(args)` is a site when its receiver `R` is a module field of `self`:
//! `self.f`, `self.list[i]`, or a name bound to one — by `for x in &self.list` (also through
//! `.iter()`, `.enumerate()` and other adapters that keep the elements), by
//! `if let Some(x) = &self.opt`, or by `let x = &self.f;`. Nested items are left alone.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::visit_mut::{self, VisitMut};
use syn::{Block, Expr, ExprMethodCall, Ident, Member, Pat, Stmt};

use crate::errors::Errors;

/// The module a receiver stands for.
#[derive(Clone)]
enum Target {
    /// The field itself.
    Field(Ident),
    /// An element of the `Vec` field.
    Element(Ident),
}

/// The rewriting visitor; collects errors instead of stopping at the first.
#[derive(Default)]
pub(crate) struct ForwardSites {
    /// Names bound to modules, innermost last; `None` shadows an outer binding.
    aliases: Vec<(Ident, Option<Target>)>,
    /// Parameters of the method being rewritten whose type is a reference (`mask: &Tensor<..>`):
    /// passed through to calls as they are, like arguments written `&expr`.
    borrowed: Vec<Ident>,
    pub(crate) errors: Errors,
    /// How the block's calls carry the batch (`#[inspect(batch_dim = N)]`), when it says.
    pub(crate) batching: Option<TokenStream>,
}

/// Whether a method name is a forward call (`forward`, `forward_with_cache`, ...).
fn is_forward(method: &Ident) -> bool {
    let name = method.to_string();
    name == "forward" || name.starts_with("forward_")
}

/// `self.name` → `name`.
fn self_field(expr: &Expr) -> Option<&Ident> {
    let Expr::Field(field) = peel(expr) else { return None };
    let Expr::Path(base) = peel(&field.base) else { return None };
    if !base.path.is_ident("self") {
        return None;
    }
    match &field.member {
        Member::Named(name) => Some(name),
        Member::Unnamed(_) => None,
    }
}

/// Strips parentheses and borrows.
fn peel(mut expr: &Expr) -> &Expr {
    loop {
        match expr {
            Expr::Paren(p) => expr = &p.expr,
            Expr::Reference(r) => expr = &r.expr,
            Expr::Group(g) => expr = &g.expr,
            _ => return expr,
        }
    }
}

/// The `Vec` field an iterator expression walks, and whether it is enumerated.
fn iterated_field(expr: &Expr) -> Option<(Ident, bool)> {
    let mut enumerated = false;
    let mut at = peel(expr);
    loop {
        if let Some(field) = self_field(at) {
            return Some((field.clone(), enumerated));
        }
        let Expr::MethodCall(call) = at else { return None };
        match call.method.to_string().as_str() {
            "enumerate" => enumerated = true,
            "iter" | "into_iter" | "skip" | "take" | "rev" | "step_by" | "skip_while" | "take_while"
            | "filter" => {}
            _ => return None,
        }
        at = peel(&call.receiver);
    }
}

/// The name a loop pattern binds to the element.
fn element_binding(pat: &Pat, enumerated: bool) -> Option<&Ident> {
    match (pat, enumerated) {
        (Pat::Ident(p), false) => Some(&p.ident),
        (Pat::Tuple(t), true) if t.elems.len() == 2 => match &t.elems[1] {
            Pat::Ident(p) => Some(&p.ident),
            _ => None,
        },
        _ => None,
    }
}

/// The names a pattern binds, so a new binding can shadow an alias.
fn bound_names(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => out.push(p.ident.clone()),
        Pat::Tuple(t) => t.elems.iter().for_each(|p| bound_names(p, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| bound_names(p, out)),
        Pat::Type(t) => bound_names(&t.pat, out),
        Pat::Reference(r) => bound_names(&r.pat, out),
        _ => {}
    }
}

impl ForwardSites {
    /// A visitor for a block whose calls carry the batch as `batching` says (`None`: as the
    /// caller's).
    pub(crate) fn new(batching: Option<TokenStream>) -> Self {
        ForwardSites { batching, ..ForwardSites::default() }
    }

    /// Rewrites the body of `method`.
    pub(crate) fn visit_method(&mut self, method: &mut syn::ImplItemFn) {
        self.borrowed = method
            .sig
            .inputs
            .iter()
            .filter_map(|arg| match arg {
                syn::FnArg::Typed(arg) if matches!(&*arg.ty, syn::Type::Reference(_)) => match &*arg.pat {
                    Pat::Ident(name) => Some(name.ident.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        self.visit_block_mut(&mut method.block);
        self.borrowed.clear();
    }

    /// Whether a call argument is a borrow, passed through rather than captured as a site input.
    fn is_borrowed(&self, arg: &Expr) -> bool {
        match arg {
            Expr::Reference(_) => true,
            Expr::Path(path) => path.path.get_ident().is_some_and(|name| self.borrowed.contains(name)),
            _ => false,
        }
    }

    fn lookup(&self, name: &Ident) -> Option<Target> {
        self.aliases.iter().rev().find(|(n, _)| n == name).and_then(|(_, t)| t.clone())
    }

    /// The module a receiver stands for, if it is one.
    fn target(&self, receiver: &Expr) -> Option<Target> {
        let receiver = peel(receiver);
        if let Some(field) = self_field(receiver) {
            return Some(Target::Field(field.clone()));
        }
        match receiver {
            Expr::Index(index) => self_field(&index.expr).map(|f| Target::Element(f.clone())),
            Expr::Path(path) => path.path.get_ident().and_then(|name| self.lookup(name)),
            _ => None,
        }
    }

    /// What `init` binds a `let` name to: a module, or nothing (shadowing).
    fn bind_local(&mut self, local: &syn::Local) {
        let target = match (&local.pat, &local.init) {
            (Pat::Ident(_), Some(init)) if matches!(&*init.expr, Expr::Reference(_)) => {
                self.target(&init.expr)
            }
            _ => None,
        };
        let mut names = Vec::new();
        bound_names(&local.pat, &mut names);
        for name in names {
            self.aliases.push((name, target.clone()));
        }
    }

    fn visit_for(&mut self, expr: &mut syn::ExprForLoop) {
        self.visit_expr_mut(&mut expr.expr);
        let mark = self.aliases.len();
        let mut names = Vec::new();
        bound_names(&expr.pat, &mut names);
        for name in names {
            self.aliases.push((name, None));
        }
        if let Some((field, enumerated)) = iterated_field(&expr.expr) {
            match element_binding(&expr.pat, enumerated) {
                Some(name) => self.aliases.push((name.clone(), Some(Target::Element(field)))),
                None => self.errors.spanned(
                    &expr.pat,
                    format!(
                        "cannot tell which name this loop binds to the modules of `self.{field}`; write \
                         `for module in &self.field` or `for (i, module) in self.field.iter().enumerate()`"
                    ),
                ),
            }
        }
        self.visit_block_mut(&mut expr.body);
        self.aliases.truncate(mark);
    }

    fn visit_if_let(&mut self, expr: &mut syn::ExprIf) {
        let Expr::Let(condition) = &mut *expr.cond else {
            return visit_mut::visit_expr_if_mut(self, expr);
        };
        self.visit_expr_mut(&mut condition.expr);
        let mark = self.aliases.len();
        let mut names = Vec::new();
        bound_names(&condition.pat, &mut names);
        for name in names {
            self.aliases.push((name, None));
        }
        let scrutinee = match peel(&condition.expr) {
            Expr::MethodCall(call) if call.method == "as_ref" => &*call.receiver,
            other => other,
        };
        if let (Some(field), Pat::TupleStruct(pattern)) = (self_field(scrutinee), &*condition.pat)
            && pattern.path.is_ident("Some")
            && let Some(Pat::Ident(binding)) = pattern.elems.first()
        {
            self.aliases.push((binding.ident.clone(), Some(Target::Field(field.clone()))));
        }
        self.visit_block_mut(&mut expr.then_branch);
        self.aliases.truncate(mark);
        if let Some((_, otherwise)) = &mut expr.else_branch {
            self.visit_expr_mut(otherwise);
        }
    }
}

impl VisitMut for ForwardSites {
    fn visit_block_mut(&mut self, block: &mut Block) {
        let mark = self.aliases.len();
        for stmt in &mut block.stmts {
            self.visit_stmt_mut(stmt);
            if let Stmt::Local(local) = stmt {
                self.bind_local(local);
            }
        }
        self.aliases.truncate(mark);
    }

    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        match expr {
            Expr::ForLoop(for_loop) => self.visit_for(for_loop),
            Expr::If(if_expr) => self.visit_if_let(if_expr),
            Expr::MethodCall(call) if is_forward(&call.method) => {
                visit_mut::visit_expr_method_call_mut(self, call);
                if let Some(target) = self.target(&call.receiver) {
                    *expr = site(call, target, self.batching.as_ref(), |arg| self.is_borrowed(arg));
                }
            }
            Expr::Macro(mac) if mac.mac.path.segments.last().is_some_and(|s| s.ident == "unwatched") => {
                let span = mac.mac.path.segments.last().map_or_else(Span::call_site, |s| s.ident.span());
                let receiver = match mac.mac.parse_body::<Expr>() {
                    Ok(receiver) => receiver,
                    Err(error) => return self.errors.push(error),
                };
                match self.target(&receiver) {
                    Some(target) => *expr = unwatched(&receiver, target, span),
                    None => self.errors.spanned(
                        &mac.mac.tokens,
                        "`unwatched!` takes a submodule of `self` (`self.field`, `self.list[i]`, or a name bound to one)",
                    ),
                }
            }
            _ => visit_mut::visit_expr_mut(self, expr),
        }
    }

    fn visit_item_mut(&mut self, _item: &mut syn::Item) {}
}

/// How the generated code names a module: the statements that bind it (to
/// `__nnsight_module`) and the [`Child`](nnsight::__private::Child) the engine resolves it by.
fn bind_module(
    receiver: &Expr,
    target: &Target,
    span: Span,
    batching: Option<&TokenStream>,
) -> (TokenStream, TokenStream) {
    let hygienic = Span::mixed_site();
    let module = Ident::new("__nnsight_module", hygienic);
    let receiver = peel(receiver);
    let self_token = quote_spanned!(span=> self);
    // `self.list[i]`: the index is evaluated once and named to the engine (zero-sized modules
    // share one address, so only the index tells them apart).
    let index = Ident::new("__nnsight_index", hygienic);
    let named_index = match (receiver, target) {
        (Expr::Index(indexed), Target::Element(_)) => Some((&indexed.expr, &indexed.index)),
        _ => None,
    };
    let child = match target {
        Target::Field(field) => {
            let slot = format_ident!("__nnsight_slot_{}", field, span = field.span());
            quote_spanned!(span=> ::nnsight::__private::Child::field(Self::#slot))
        }
        Target::Element(field) => {
            let slot = format_ident!("__nnsight_slot_{}", field, span = field.span());
            let index = match named_index {
                Some(_) => quote!(::core::option::Option::Some(#index)),
                None => quote!(::core::option::Option::None),
            };
            quote_spanned!(span=> ::nnsight::__private::Child::element(Self::#slot, &#self_token.#field, #index))
        }
    };
    let child = match batching {
        Some(batching) => quote!(#child.batched(#batching)),
        None => child,
    };
    let borrow_module = match (receiver, named_index) {
        (_, Some((list, position))) => quote! {
            let #index: usize = #position;
            let #module = &#list[#index];
        },
        (Expr::Path(_), _) => quote!(let #module = &*#receiver;),
        _ => quote!(let #module = &#receiver;),
    };
    (borrow_module, child)
}

/// `nnsight::unwatched!(R)` on the module `target`: asks the engine whether nothing in the trace
/// can touch the module's next call (see `nnsight::__private::unwatched`).
fn unwatched(receiver: &Expr, target: Target, span: Span) -> Expr {
    let module = Ident::new("__nnsight_module", Span::mixed_site());
    let (borrow_module, child) = bind_module(receiver, &target, span, None);
    let tokens = quote_spanned! {span=> {
        #borrow_module
        ::nnsight::__private::unwatched(#child, #module)
    }};
    syn::parse2(tokens).expect("an `unwatched!` expansion is a valid expression")
}

/// The site expression for the call `call` on the module `target`.
fn site(
    call: &ExprMethodCall,
    target: Target,
    batching: Option<&TokenStream>,
    is_borrowed: impl Fn(&Expr) -> bool,
) -> Expr {
    let hygienic = Span::mixed_site();
    let module = Ident::new("__nnsight_module", hygienic);
    let span = call.method.span();
    let (borrow_module, child) = bind_module(&call.receiver, &target, span, batching);
    let mut lets = Vec::new();
    let mut captured = Vec::new();
    let mut passed = Vec::new();
    for (i, arg) in call.args.iter().enumerate() {
        let name = Ident::new(&format!("__nnsight_arg{i}"), hygienic);
        lets.push(quote!(let #name = #arg;));
        if !is_borrowed(arg) {
            captured.push(name.clone());
        }
        passed.push(name);
    }
    let method = &call.method;
    let turbofish = &call.turbofish;
    let tokens: TokenStream = quote! {{
        #borrow_module
        #(#lets)*
        ::nnsight::__private::site(
            #child,
            #module,
            (#(#captured,)*),
            |(#(#captured,)*)| #module.#method #turbofish (#(#passed),*),
        )
    }};
    syn::parse2(tokens).expect("a site expression is a valid expression")
}

#[cfg(test)]
mod tests {
    use quote::ToTokens;
    use syn::parse_quote;

    use super::ForwardSites;

    /// The method's body after rewriting, as text without spaces, and the errors.
    fn rewrite(mut method: syn::ImplItemFn) -> (String, Vec<String>) {
        let mut sites = ForwardSites::new(None);
        sites.visit_method(&mut method);
        let text = method.block.to_token_stream().to_string().replace(' ', "");
        (text, sites.errors.messages())
    }

    fn sites(text: &str) -> usize {
        text.matches("::nnsight::__private::site(").count()
    }

    #[test]
    fn fields_elements_and_aliases_become_sites() {
        let (text, errors) = rewrite(parse_quote! {
            fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
                let mut h = self.embed.forward(x);
                for block in &self.blocks {
                    h = block.forward(h);
                }
                for (i, layer) in self.layers.iter().enumerate() {
                    h = layer.forward_cached(h, i);
                }
                if let Some(norm) = &self.norm {
                    h = norm.forward(h);
                }
                let head = &self.head;
                h = self.hooks[2].forward(h);
                head.forward(h)
            }
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(sites(&text), 6, "{text}");
        assert!(text.contains("Child::field(Self::__nnsight_slot_embed)"), "{text}");
        assert!(
            text.contains(
                "Child::element(Self::__nnsight_slot_blocks,&self.blocks,::core::option::Option::None)"
            ),
            "{text}"
        );
        assert!(text.contains("Child::element(Self::__nnsight_slot_layers"), "{text}");
        assert!(text.contains("Child::field(Self::__nnsight_slot_norm)"), "{text}");
        assert!(text.contains("Child::field(Self::__nnsight_slot_head)"), "{text}");
        // An indexed element names its index (zero-sized modules share one address).
        assert!(
            text.contains(
                "Child::element(Self::__nnsight_slot_hooks,&self.hooks,::core::option::Option::Some("
            ),
            "{text}"
        );
    }

    #[test]
    fn shadowed_names_closures_nested_items_and_other_methods_are_left_alone() {
        let (text, errors) = rewrite(parse_quote! {
            fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
                let block = &self.block;
                let block = Other::new();
                let y = block.forward(x.clone());
                let f = |t| t;
                fn helper(m: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> { m.forward(x) }
                self.head.weight.val();
                self.head.backward(f(y))
            }
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(sites(&text), 0, "{text}");
    }

    #[test]
    fn borrowed_arguments_are_passed_through_and_owned_ones_captured() {
        let (text, _) = rewrite(parse_quote! {
            fn forward(&self, x: Tensor<B, 3>, mask: &Tensor<B, 2>) -> Tensor<B, 3> {
                self.attn.forward(x, mask, &self.rope)
            }
        });
        assert_eq!(sites(&text), 1, "{text}");
        // Only the first argument is a site input.
        assert!(text.contains("(__nnsight_arg0,),|(__nnsight_arg0,)|"), "{text}");
    }

    #[test]
    fn a_loop_binding_that_cannot_be_followed_is_an_error() {
        let (_, errors) = rewrite(parse_quote! {
            fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
                for (_, (layer)) in self.layers.iter().enumerate() {
                    x = layer.forward(x);
                }
                x
            }
        });
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("cannot tell which name this loop binds"), "{errors:?}");
    }

    #[test]
    fn a_declared_batch_dimension_reaches_every_call() {
        let mut method: syn::ImplItemFn = parse_quote! {
            fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> { self.proj.forward(x) }
        };
        let mut sites = ForwardSites::new(Some(quote::quote!(::nnsight::inspect::Batching::Dim(1))));
        sites.visit_method(&mut method);
        let text = method.block.to_token_stream().to_string().replace(' ', "");
        assert!(text.contains(".batched(::nnsight::inspect::Batching::Dim(1))"), "{text}");
    }
}
