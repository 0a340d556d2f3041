//! What `#[derive(Inspectable)]` emits beside its error: a stand-in `Inspectable` impl (the
//! module's own sites only) and a slot for every named field, so that the model's `#[inspect]`
//! block, its traces and its uses still type-check and the one mistake is the one error (as
//! thiserror's `fallback.rs`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields};

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let slots = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => fields
                .named
                .iter()
                .filter_map(|f| f.ident.as_ref())
                .map(|field| {
                    let slot = format_ident!("__nnsight_slot_{}", field);
                    quote!(
                        #[doc(hidden)]
                        #[allow(non_upper_case_globals)]
                        pub const #slot: u32 = 0;
                    )
                })
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    quote! {
        impl #impl_generics ::nnsight::inspect::Inspectable for #name #ty_generics #where_clause {
            type Envoy<'t> = ::nnsight::ModuleEnvoy<'t, Self>;

            fn envoy(state: &::nnsight::inspect::TraceState, node: ::nnsight::inspect::NodeId) -> Self::Envoy<'_> {
                ::nnsight::ModuleEnvoy::new(state, node)
            }
        }

        impl #impl_generics #name #ty_generics #where_clause {
            #(#slots)*
        }
    }
}
