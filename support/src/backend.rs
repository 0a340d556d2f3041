//! The backend the tests, examples and benches run on, chosen by this crate's features (the
//! crates that use it forward theirs): burn's CPU backend `Flex` by default; `tch` → LibTorch
//! (`eval "$(tools/libtorch.sh)"` first: a CPU LibTorch from PyPI); `cuda` → CUDA with fusion and
//! autotune. Code written against [`Backend`] runs unchanged on each.

/// The backend of this build.
#[cfg(feature = "cuda")]
pub type Backend = burn::backend::Cuda;
/// The backend of this build.
#[cfg(all(feature = "tch", not(feature = "cuda")))]
pub type Backend = burn::backend::LibTorch;
/// The backend of this build.
#[cfg(not(any(feature = "tch", feature = "cuda")))]
pub type Backend = burn::backend::Flex;

/// The backend of this build with float element type `F` (`f16`, `bf16`), for LibTorch and CUDA
/// (burn's CPU backend has one element type per device, f32 by default). burn fixes a device's
/// element type when a backend type first touches it: one element type per device and process.
#[cfg(feature = "cuda")]
pub type WithFloat<F> = burn::backend::Cuda<F>;
/// The backend of this build with float element type `F`.
#[cfg(all(feature = "tch", not(feature = "cuda")))]
pub type WithFloat<F> = burn::backend::LibTorch<F>;

/// The backend's name, for messages and bench labels.
pub const NAME: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "tch") {
    "libtorch"
} else {
    "flex"
};

/// Whether the backend is burn's CPU backend, on which the models' own kernels run (some tests
/// check those kernels themselves).
pub const IS_FLEX: bool = !cfg!(any(feature = "tch", feature = "cuda"));
