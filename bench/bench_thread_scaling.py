"""Thread scaling and GEMM efficiency of conv2d on the ResNet 3x3 layer (N=8, 64->64, 56x56, pad 1).

For each thread count: conv2d (auto, and every applicable backend) and the NumPy 2048^2 float32 GEMM,
best of N back-to-back calls each, in three rounds.
Reports time, GFLOP/s, the share of the same-thread-count GEMM rate, and the speed-up over one
thread.  PyTorch, when installed, is timed the same way (same thread count).

Run from the repository root:  python bench/bench_thread_scaling.py [--threads 1 2] [--repeats 15]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fastconv  # noqa: E402
from fastconv._params import make_conv_params  # noqa: E402

LAYER = ((8, 64, 56, 56), (64, 64, 3, 3), {"padding": 1})
GEMM_SIZE = 2048


def best_times(calls: dict, repeats: int, rounds: int = 3) -> dict:
    """Best wall time of each call.  Each call's repetitions run back to back (after two warm-up
    calls): interleaving them would let one library's idle workers, still spinning (OpenBLAS,
    OpenMP), take the second core from the next library's call.  Several rounds over the calls
    spread slow phases of a shared machine over all of them."""
    best = {name: float("inf") for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            call()
            call()
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-torch", action="store_true",
                        help="leave PyTorch out: its OpenMP workers spin after each call and take "
                             "the other core from whatever runs next")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(LAYER[0]).astype(np.float32)
    w = rng.standard_normal(LAYER[1]).astype(np.float32)
    flops = make_conv_params(x, w, None, 1, 1, 1, 1, "zeros")[0].flops
    a = rng.standard_normal((GEMM_SIZE, GEMM_SIZE)).astype(np.float32)
    try:
        import torch
    except ImportError:
        torch = None
    if args.no_torch:
        torch = None
    rows, first = [], {}
    for threads in args.threads:
        fastconv.set_num_threads(threads)
        calls = {name: (lambda name=name: fastconv.conv2d(x, w, padding=1, algorithm=name))
                 for name in ("auto", "direct", "im2col", "winograd")}
        calls["numpy GEMM"] = lambda: a @ a
        if torch is not None:
            torch.set_num_threads(threads)
            tx, tw = torch.from_numpy(x), torch.from_numpy(w)
            calls["torch"] = lambda: torch.nn.functional.conv2d(tx, tw, padding=1)
        best = best_times(calls, args.repeats)
        gemm_rate = 2 * GEMM_SIZE ** 3 / best.pop("numpy GEMM")
        for name, seconds in best.items():
            first.setdefault(name, seconds)
            rate = flops / seconds
            rows.append((threads, name, seconds * 1e3, rate / 1e9, rate / gemm_rate,
                         first[name] / seconds))
        rows.append((threads, "numpy GEMM", float("nan"), gemm_rate / 1e9, 1.0, float("nan")))
    print(f"ResNet 3x3 layer {LAYER[0]} x {LAYER[1]} pad 1, float32, {flops / 1e9:.2f} GFLOP; "
          f"best of 3 x {args.repeats} calls")
    print(f"{'threads':>7}  {'implementation':<14} {'ms':>8} {'GFLOP/s':>8} {'of GEMM':>8} "
          f"{'speed-up':>8}")
    for threads, name, ms, gflops, share, speedup in rows:
        print(f"{threads:>7}  {name:<14} {ms:>8.2f} {gflops:>8.1f} {share:>7.0%} {speedup:>8.2f}x")


if __name__ == "__main__":
    main()
