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
