#!/usr/bin/env bash
# Installs the LibTorch that burn's `tch` backend links (burn-tch 0.21 → tch 0.22 → PyTorch 2.9.0)
# into a cache outside the clone, CPU only, from PyPI, and prints the environment to export:
#
#     eval "$(tools/libtorch.sh)"
#     cargo test -p nnsight-tests --features tch
#
# PyPI has only the CUDA build of torch for Linux x86-64 (a 0.9 GB wheel that wants 3.2 GB of
# nvidia wheels). Its CPU half runs without them: the wheel is installed without its dependencies
# but for the two small CUDA libraries `libtorch_cpu.so` links, and a libtorch directory is laid out
# for torch-sys (`include` from the wheel; `lib` with the CPU libraries and an empty `libtorch.so`,
# since the real one also needs `libtorch_cuda.so`). torch-sys then never downloads anything.
#
# With a GPU and the full wheel in an activated virtual environment, use instead
# `export LIBTORCH_USE_PYTORCH=1` (see the README, "Backends").
#
# Environment: NNSIGHT_CACHE (default ~/.cache/nnsight-rs) is where it goes. Messages go to stderr;
# stdout is only the `export` lines.
set -euo pipefail

TORCH_VERSION=2.9.0
CACHE="${NNSIGHT_CACHE:-$HOME/.cache/nnsight-rs}/libtorch-$TORCH_VERSION-cpu"
SITE="$CACHE/site"
LIBTORCH="$CACHE/libtorch"

if [ ! -f "$CACHE/complete" ]; then
    echo "libtorch.sh: installing torch $TORCH_VERSION (CPU part) into $CACHE" >&2
    rm -rf "$CACHE"
    mkdir -p "$SITE" "$LIBTORCH/lib"
    python3 -m pip install --no-deps --disable-pip-version-check --quiet --target "$SITE" \
        "torch==$TORCH_VERSION" nvidia-cuda-runtime-cu12==12.8.90 nvidia-cuda-cupti-cu12==12.8.90 >&2
    ln -sfn "$SITE/torch/include" "$LIBTORCH/include"
    for lib in libc10.so libtorch_cpu.so libgomp.so.1; do
        found=$(find "$SITE/torch/lib" -maxdepth 1 -name "$lib" | head -n 1)
        if [ -z "$found" ]; then
            echo "libtorch.sh: $lib is not in the torch wheel ($SITE/torch/lib)" >&2
            exit 1
        fi
        ln -sf "$found" "$LIBTORCH/lib/$lib"
    done
    # torch-sys links `-ltorch`; the CPU build needs nothing from it.
    echo | gcc -shared -fPIC -x c - -o "$LIBTORCH/lib/libtorch.so"
    echo "$TORCH_VERSION" > "$LIBTORCH/build-version"
    touch "$CACHE/complete"
fi

echo "export LIBTORCH=$LIBTORCH"
echo "export LD_LIBRARY_PATH=$SITE/torch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
