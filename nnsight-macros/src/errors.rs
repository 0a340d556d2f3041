//! The one error collector of the three macros: every mistake found in an input is reported
//! together (each at its own span), instead of only the first one.

use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// Errors found so far; empty until the first [`push`](Self::push).
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Records `error` beside the earlier ones.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Records `message` at `span`.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Records `message` at the tokens of `tokens`.
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records the error of `result`, if any; its value otherwise.
    pub(crate) fn check<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    /// Every message recorded, in order.
    #[cfg(test)]
    pub(crate) fn messages(&self) -> Vec<String> {
        self.0.iter().flat_map(|e| e.clone().into_iter().map(|e| e.to_string())).collect()
    }

    /// `value` when nothing was recorded; all the errors otherwise.
    pub(crate) fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(errors) => Err(errors),
            None => Ok(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::Span;

    use super::Errors;

    #[test]
    fn every_error_is_kept_in_order() {
        let mut errors = Errors::default();
        assert_eq!(errors.check(Ok::<_, syn::Error>(3)), Some(3));
        errors.at(Span::call_site(), "first");
        assert_eq!(errors.check(Err::<u8, _>(syn::Error::new(Span::call_site(), "second"))), None);
        errors.spanned(quote::quote!(x), "third");
        assert_eq!(errors.messages(), ["first", "second", "third"]);
        assert_eq!(errors.finish(()).unwrap_err().into_iter().count(), 3);
        assert!(Errors::default().finish(7).is_ok_and(|v| v == 7));
    }
}
