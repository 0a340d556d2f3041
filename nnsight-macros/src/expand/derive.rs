//! `#[derive(Inspectable)]`: the envoy struct, the `Inspectable` impl and the field slots.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, GenericParam, Lifetime};

use crate::ast::{FieldKind, Struct};

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let s = Struct::from_syn(input)?;
    let name = &input.ident;
    let vis = &input.vis;
    let envoy = format_ident!("{}Envoy", name);
    let t = Lifetime::new("'t", name.span());

    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    // The envoy's generics: `'t` first, then the struct's own parameters.
    let mut envoy_generics = input.generics.clone();
    envoy_generics.params.insert(0, GenericParam::Lifetime(syn::LifetimeParam::new(t.clone())));
    let (envoy_impl_generics, envoy_ty_generics, _) = envoy_generics.split_for_impl();
    let params = input.generics.params.iter().map(|p| match p {
        GenericParam::Type(t) => {
            let ident = &t.ident;
            quote!(#ident)
        }
        GenericParam::Lifetime(l) => {
            let lifetime = &l.lifetime;
            quote!(#lifetime)
        }
        GenericParam::Const(c) => {
            let ident = &c.ident;
            quote!(#ident)
        }
    });
    let envoy_args = quote!(#(#params),*);

    let count = s.modules.len() as u32;
    // A submodule type that names none of the struct's parameters is asserted `Inspectable` once,
    // in the impl's where clause, spanned at the field: inside the impl the bound then holds, so a
    // field that is not a module is reported there and at the envoy's field, not at each of the
    // derive's uses of its envoy (a concrete bound that fails is an error where it is written).
    let mut bounds = Vec::new();
    let mut fields = Vec::new();
    let mut registers = Vec::new();
    let mut builds = Vec::new();
    let mut slots = Vec::new();
    for (slot, field) in s.modules.iter().enumerate() {
        let slot = slot as u32;
        let (fvis, fname, path) = (field.vis, field.name, field.path.as_str());
        let doc = format!("The envoy of the submodule `{path}`.");
        let element = match field.kind {
            FieldKind::Single(ty) | FieldKind::List(ty) | FieldKind::Optional(ty) => ty,
        };
        if is_concrete(element, &input.generics, name) {
            bounds.push(quote_spanned!(element.span()=> #element: ::nnsight::inspect::Inspectable));
        }
        let (envoy_ty, register, build) = match field.kind {
            FieldKind::Single(ty) => (
                quote_spanned!(ty.span()=> <#ty as ::nnsight::inspect::Inspectable>::Envoy<#t>),
                quote!(tree.module(first + #slot, #path, &self.#fname);),
                quote_spanned!(ty.span()=> <#ty as ::nnsight::inspect::Inspectable>::envoy(state, state.child(node, #slot))),
            ),
            FieldKind::List(ty) => (
                quote_spanned!(ty.span()=> ::nnsight::ListEnvoy<#t, <#ty as ::nnsight::inspect::Inspectable>::Envoy<#t>>),
                quote!(tree.list(first + #slot, #path, &self.#fname);),
                quote_spanned!(ty.span()=> ::nnsight::ListEnvoy::new(
                    state, state.child(node, #slot), <#ty as ::nnsight::inspect::Inspectable>::envoy
                )),
            ),
            FieldKind::Optional(ty) => (
                quote_spanned!(ty.span()=> <#ty as ::nnsight::inspect::Inspectable>::Envoy<#t>),
                quote!(tree.optional(first + #slot, #path, ::core::option::Option::as_ref(&self.#fname));),
                quote_spanned!(ty.span()=> <#ty as ::nnsight::inspect::Inspectable>::envoy(state, state.child(node, #slot))),
            ),
        };
        fields.push(quote!(#[doc = #doc] #fvis #fname: #envoy_ty,));
        if let Some(part) = field.part {
            registers.push(quote!(tree.part(first + #slot, #part);));
        }
        registers.push(register);
        builds.push(quote!(#fname: #build,));
        let slot_name = format_ident!("__nnsight_slot_{}", fname);
        slots.push(quote!(
            #[doc(hidden)]
            #[allow(non_upper_case_globals)]
            pub const #slot_name: u32 = #slot;
        ));
    }

    // A module whose fields declare parts combines them: its own values belong to no one part.
    let combine = s.modules.iter().any(|f| f.part.is_some()).then(|| quote!(tree.combine_parts();));
    let inspectable_where = match (where_clause, bounds.is_empty()) {
        (_, true) => quote!(#where_clause),
        (Some(w), false) => {
            let predicates = w.predicates.iter();
            quote!(where #(#predicates,)* #(#bounds,)*)
        }
        (None, false) => quote!(where #(#bounds,)*),
    };
    let doc = format!(
        "The envoy of [`{name}`] in a trace: one field per submodule; its own sites \
         (`output()`, `input()`, `inputs()`) through [`ModuleEnvoy`](::nnsight::ModuleEnvoy)."
    );
    Ok(quote! {
        #[doc = #doc]
        // A body touches only the modules it studies: unused envoy fields are the norm.
        #[allow(dead_code)]
        #vis struct #envoy #envoy_impl_generics #where_clause {
            __nnsight_sites: ::nnsight::ModuleEnvoy<#t, #name #ty_generics>,
            #(#fields)*
        }

        impl #envoy_impl_generics ::core::ops::Deref for #envoy #envoy_ty_generics #where_clause {
            type Target = ::nnsight::ModuleEnvoy<#t, #name #ty_generics>;
            fn deref(&self) -> &Self::Target {
                &self.__nnsight_sites
            }
        }

        impl #envoy_impl_generics ::core::fmt::Debug for #envoy #envoy_ty_generics #where_clause {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Debug::fmt(&self.__nnsight_sites, f)
            }
        }

        impl #impl_generics ::nnsight::inspect::Inspectable for #name #ty_generics #inspectable_where {
            type Envoy<#t> = #envoy<#t, #envoy_args>;

            fn register(&self, tree: &mut ::nnsight::inspect::TreeBuilder) {
                let first = tree.reserve(#count);
                let _ = first;
                #(#registers)*
                #combine
            }

            fn envoy(state: &::nnsight::inspect::TraceState, node: ::nnsight::inspect::NodeId) -> Self::Envoy<'_> {
                #envoy {
                    __nnsight_sites: ::nnsight::ModuleEnvoy::new(state, node),
                    #(#builds)*
                }
            }
        }

        impl #impl_generics #name #ty_generics #where_clause {
            #(#slots)*
        }
    })
}

/// Whether `ty` names none of `generics`' type or const parameters, nor the struct itself (a
/// bound on the type being derived would be a cycle).
fn is_concrete(ty: &syn::Type, generics: &syn::Generics, name: &syn::Ident) -> bool {
    struct Finder<'a> {
        params: Vec<&'a syn::Ident>,
        name: &'a syn::Ident,
        found: bool,
    }
    impl<'ast> syn::visit::Visit<'ast> for Finder<'_> {
        fn visit_ident(&mut self, ident: &'ast syn::Ident) {
            if ident == self.name || ident == "Self" || self.params.contains(&ident) {
                self.found = true;
            }
        }
    }
    let params = generics
        .params
        .iter()
        .filter_map(|p| match p {
            GenericParam::Type(t) => Some(&t.ident),
            GenericParam::Const(c) => Some(&c.ident),
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    let mut finder = Finder { params, name, found: false };
    syn::visit::Visit::visit_type(&mut finder, ty);
    !finder.found
}
