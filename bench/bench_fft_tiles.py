"""conv2d with the FFT backend on multi-channel large-kernel shapes (issue 15, item 5), direct for reference.

Prints, per shape, the best and median of ``--repeats`` calls (after one warm-up) for each algorithm,
float32, N=1.  ``--source DIR`` imports fastconv from another checkout (e.g. ``git archive e5ad7a2``
unpacked in /tmp) so an older version can be timed by the same script, back to back:

    git archive e5ad7a2 | (mkdir -p /tmp/fastconv-e5ad7a2 && tar -x -C /tmp/fastconv-e5ad7a2)
    for round in 1 2 3; do
        NUMBA_NUM_THREADS=2 python bench/bench_fft_tiles.py --source /tmp/fastconv-e5ad7a2
        NUMBA_NUM_THREADS=2 python bench/bench_fft_tiles.py
    done

AVX2 code on an AVX-512 host: NUMBA_CPU_NAME=znver3, NUMBA_CPU_FEATURES = the host's features with
every +avx512* turned into -avx512*, and a separate NUMBA_CACHE_DIR.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

SHAPES = [  # (channels in, channels out, image side, kernel side, padding)
    (8, 8, 512, 13, 6),
    (16, 16, 256, 9, 4),
    (3, 8, 512, 31, 15),
    (1, 1, 1024, 21, 10),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="checkout to import fastconv from (default: this one)")
    parser.add_argument("--algorithms", default="fft,direct")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--backward", action="store_true",
                        help="time conv2d_backward instead: the input gradient alone, then all three")
    args = parser.parse_args()
    sys.path.insert(0, str(args.source))
    import fastconv

    rng = np.random.default_rng(0)
    print(f"# fastconv from {Path(fastconv.__file__).parent.parent}, threads {fastconv.get_num_threads()}")
    for channels, out_channels, side, kernel, padding in SHAPES:
        x = rng.standard_normal((1, channels, side, side), dtype=np.float32)
        w = rng.standard_normal((out_channels, channels, kernel, kernel), dtype=np.float32)
        grad = rng.standard_normal((1, out_channels, side, side), dtype=np.float32)
        line = f"{channels}->{out_channels} {side}^2 {kernel}x{kernel} pad {padding}:"
        calls = {}
        for algorithm in args.algorithms.split(","):
            if not args.backward:
                calls[algorithm] = (lambda a: lambda: fastconv.conv2d(x, w, padding=padding, algorithm=a))(algorithm)
                continue
            for needs in (("input",), ("input", "weight", "bias")):
                calls[f"{algorithm} {'+'.join(needs)}"] = (lambda a, n: lambda: fastconv.conv2d_backward(
                    grad, x, w, padding=padding, needs=n, algorithm=a))(algorithm, needs)
        for name, call in calls.items():
            call()
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            line += f"  {name} best {min(times) * 1e3:.2f} median {np.median(times) * 1e3:.2f} ms"
        print(line, flush=True)


if __name__ == "__main__":
    main()
