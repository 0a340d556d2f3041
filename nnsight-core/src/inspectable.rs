//! The traits that make a module traceable: [`Inspectable`], [`Signature`] and [`Forward`].

use std::any::Any;

use crate::state::TraceState;
use crate::tree::{NodeId, TreeBuilder};
use crate::value::SiteValue;

/// A module whose internals a trace can reach: it registers its submodules in the trace's tree and
/// builds its typed envoy.
///
/// Derive it with `#[derive(Inspectable)]` on a burn `Module` struct; burn's built-in layers
/// implement it already.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a module nnsight can inspect",
    label = "not `Inspectable`",
    note = "derive `Inspectable` for it, or mark the field `#[inspect(skip)]` (or burn's `#[module(skip)]`) if it is not a module"
)]
pub trait Inspectable {
    /// The envoy of this module: a typed mirror of its submodules, valid for one trace `'t`.
    type Envoy<'t>;

    /// Registers the submodules as children of the builder's current node.
    fn register(&self, tree: &mut TreeBuilder) {
        let _ = tree;
    }

    /// Builds the envoy for `node` of the trace `state`.
    fn envoy(state: &TraceState, node: NodeId) -> Self::Envoy<'_>;

    /// Checks the arguments of a call of this module once a body has written to the trace (so
    /// that they may come from the body, not the model): e.g. an embedding's token ids must be in
    /// its vocabulary, or its lookup would panic. `inputs` is the call's argument tuple. The
    /// default accepts everything.
    ///
    /// # Errors
    /// What is wrong with the arguments; the trace fails with [`Error::Input`](crate::Error::Input)
    /// naming the site, before the module runs.
    fn check_inputs(&self, inputs: &dyn Any) -> Result<(), String> {
        let _ = inputs;
        Ok(())
    }
}

/// The value types of a module's sites, as fixed by its `forward` signature.
///
/// `#[inspect]` implements it from the impl block's `fn forward(&self, ..) -> ..`: `Inputs` is
/// the tuple of the owned arguments (arguments taken by reference are not captured) and `Output`
/// the return type. Envoys use it to type `output()`, `input()` and `inputs()` statically.
pub trait Signature {
    /// The tuple of the captured arguments.
    type Inputs: SiteValue;
    /// The value `forward` returns.
    type Output: SiteValue;
}

/// A module that a trace can run from its inputs: the root of a trace.
///
/// `#[inspect]` implements it when `forward` takes only owned arguments.
pub trait Forward: Signature {
    /// Runs `forward` on the argument tuple.
    fn forward_inputs(&self, inputs: Self::Inputs) -> Self::Output;
}

/// Conversion of what a user passes to `trace(..)` into a module's argument tuple: a single
/// argument is passed as itself, several as a tuple.
pub trait IntoInputs<T> {
    /// The argument tuple.
    fn into_inputs(self) -> T;
}

impl<A> IntoInputs<(A,)> for A {
    fn into_inputs(self) -> (A,) {
        (self,)
    }
}

macro_rules! into_inputs_tuples {
    ($(($($name:ident),+))*) => {$(
        impl<$($name),+> IntoInputs<($($name,)+)> for ($($name,)+) {
            fn into_inputs(self) -> ($($name,)+) {
                self
            }
        }
    )*};
}
into_inputs_tuples! {
    (A, C)
    (A, C, D)
    (A, C, D, E)
    (A, C, D, E, F)
    (A, C, D, E, F, G)
}
