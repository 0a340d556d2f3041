//! Body rewriting with `syn::visit_mut`: forward methods (`#[inspect]`) and trace bodies (`trace!`).

pub(crate) mod forward_sites;
pub(crate) mod invoke_sharing;
pub(crate) mod trace_body;
