"""fastconv.correlate2d / convolve2d against scipy.signal and OpenCV: a plain script printing tables.

    python bench/bench_signal.py [--threads 2] [--repeats 15]

Table 1: 512x512 image, kernels 3, 5, 7, float32 and float64, mode="same", boundary="fill":
fastconv (algorithm="direct" and "auto") vs scipy.signal.correlate2d and cv2.filter2D
(BORDER_CONSTANT, i.e. the same zero fill; OpenCV pinned to the same thread count).
Table 2: 512x512 image, kernels 15..63: fastconv auto vs scipy.signal.fftconvolve (mode="same").

Times are the best of ``--repeats`` runs after a warm-up call (JIT compilation excluded).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fastconv  # noqa: E402


def best_seconds(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    fastconv.set_num_threads(args.threads)
    try:
        import cv2

        cv2.setNumThreads(args.threads)
    except ImportError:
        cv2 = None
    rng = np.random.default_rng(0)
    size = args.size
    print(f"threads={args.threads}  image {size}x{size}  mode='same'  (best of {args.repeats}, ms)")
    print()
    header = (f"{'dtype':8} {'k':>3} {'direct':>8} {'auto':>8} {'scipy c2d':>10} {'cv2':>8} "
              f"{'scipy/direct':>13} {'cv2/direct':>11}")
    print(header)
    print("-" * len(header))
    for dtype in (np.float32, np.float64):
        image = rng.standard_normal((size, size)).astype(dtype)
        for k in (3, 5, 7):
            kernel = rng.standard_normal((k, k)).astype(dtype)
            direct = best_seconds(
                lambda: fastconv.correlate2d(image, kernel, "same", algorithm="direct"), args.repeats
            )
            auto = best_seconds(lambda: fastconv.correlate2d(image, kernel, "same"), args.repeats)
            reference = best_seconds(
                lambda: scipy.signal.correlate2d(image, kernel, "same"), max(3, args.repeats // 5)
            )
            if cv2 is not None:
                opencv = best_seconds(
                    lambda: cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_CONSTANT),
                    args.repeats,
                )
                opencv_text, ratio_text = f"{opencv * 1e3:8.3f}", f"{opencv / direct:11.2f}"
            else:
                opencv_text, ratio_text = f"{'n/a':>8}", f"{'n/a':>11}"
            print(f"{np.dtype(dtype).name:8} {k:3d} {direct * 1e3:8.3f} {auto * 1e3:8.3f} "
                  f"{reference * 1e3:10.2f} {opencv_text} {reference / direct:13.1f} {ratio_text}")
    print()
    header = f"{'dtype':8} {'k':>3} {'auto':>8} {'chosen':>9} {'fftconvolve':>12} {'fftconv/auto':>13}"
    print(header)
    print("-" * len(header))
    from fastconv import dispatch
    from fastconv._params import make_signal_params, signal_padding

    for dtype in (np.float32, np.float64):
        image = rng.standard_normal((size, size)).astype(dtype)
        for k in (15, 21, 31, 45, 63):
            kernel = rng.standard_normal((k, k)).astype(dtype)
            auto = best_seconds(lambda: fastconv.convolve2d(image, kernel, "same"), args.repeats)
            reference = best_seconds(
                lambda: scipy.signal.fftconvolve(image, kernel, "same"), args.repeats
            )
            params = make_signal_params(
                image.shape, kernel.shape, signal_padding("same", image.shape, kernel.shape, True),
                dtype,
            )
            chosen = dispatch.choose_signal(
                params, image[None, None], kernel[None, None], "auto"
            ).algorithm
            print(f"{np.dtype(dtype).name:8} {k:3d} {auto * 1e3:8.3f} {chosen:>9} "
                  f"{reference * 1e3:12.3f} {reference / auto:13.2f}")


if __name__ == "__main__":
    main()
