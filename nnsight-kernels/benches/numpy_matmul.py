"""The products of `cargo bench -p nnsight-kernels --bench matmul` timed with numpy's BLAS.

numpy's wheels ship OpenBLAS, the kind of tuned BLAS PyTorch-class tools run their CPU products
on; this gives the reference column of BENCHMARKS.md ("Many-rows products against OpenBLAS").
Same shapes (SmolLM2-135M's projections, 60 and 540 rows), float32, 2 threads by default.

    python3 nnsight-kernels/benches/numpy_matmul.py [threads]

Prints the median and best of 20 timed runs of each product, in GFLOP/s (2·m·k·n per product).
"""

import os
import sys

THREADS = sys.argv[1] if len(sys.argv) > 1 else "2"
# Must be set before numpy loads OpenBLAS.
os.environ["OPENBLAS_NUM_THREADS"] = THREADS
os.environ["OMP_NUM_THREADS"] = THREADS

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

PROJECTIONS = [("q_o", 576, 576), ("k_v", 576, 192), ("gate_up", 576, 1536), ("down", 1536, 576)]
ROWS = [60, 540]


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"numpy {np.__version__}, {THREADS} BLAS threads")
    for rows in ROWS:
        for name, k, n in PROJECTIONS:
            x = rng.uniform(-1, 1, (rows, k)).astype(np.float32)
            w = rng.uniform(-1, 1, (k, n)).astype(np.float32)
            for _ in range(5):
                x @ w
            times = []
            for _ in range(20):
                start = time.perf_counter()
                x @ w
                times.append(time.perf_counter() - start)
            flop = 2 * rows * k * n
            median, best = statistics.median(times), min(times)
            print(
                f"{rows}x{k}x{n}_{name:<8} median {flop / median / 1e9:6.1f} GFLOP/s"
                f"   best {flop / best / 1e9:6.1f} GFLOP/s"
            )


if __name__ == "__main__":
    main()
