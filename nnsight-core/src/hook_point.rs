//! [`HookPoint`]: an identity module that names an intermediate value as a site.

use burn::module::Module;

/// An identity module that makes an intermediate value of a forward pass a site.
///
/// Put one in a model as a field and pass the value through it; its output is then reachable as
/// `envoy.<field>.output()`, and replacing it changes what the forward pass goes on with (like
/// TransformerLens' `HookPoint`). With no trace active it costs nothing.
///
/// ```
/// use burn::prelude::*;
/// use nnsight::HookPoint;
///
/// let hook = HookPoint::new();
/// let x = Tensor::<burn::backend::Flex, 1>::ones([3], &Default::default());
/// assert_eq!(hook.forward(x.clone()).to_data(), x.to_data());
/// ```
#[derive(Module, Clone, Debug, Default)]
pub struct HookPoint;

impl HookPoint {
    /// A new hook point.
    pub fn new() -> Self {
        HookPoint
    }

    /// Returns `value` unchanged (a trace may have replaced it on the way).
    pub fn forward<T>(&self, value: T) -> T {
        value
    }
}
