"""Winograd F(4x4, 3x3) (and F(2x2, 3x3)) against direct, im2col and torch on 3x3 layers, float32, pad 1.

Rates are *effective* GFLOP/s: the direct definition's FLOP count (2 N K H' W' C 9) over the time,
so Winograd, which does fewer flops, can beat the GEMM rate.  Every variant of one layer is timed
interleaved (round-robin, best of N) so that load from other processes hits them alike; before each
timed call the script waits until the CPUs were idle for 100 ms (the previous library's idle workers
stop spinning, other processes' bursts pass) and calls once untimed (this library's threads wake up):
the timed call is the second of two back to back.  The NumPy 2048^2 float32 GEMM rate is measured the
same way in the same run, as the reference ceiling.

Run from the repository root:  python bench/bench_winograd.py [--repeats 15] [--threads 2]
For AVX2 on an AVX-512 host, set the variables ``fastconv._cpu.restricted_environment("avx2")``
returns (Numba, oneDNN, ATen, OpenBLAS) and a separate NUMBA_CACHE_DIR.
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
from fastconv.backends import im2col, winograd  # noqa: E402

# (batch, channels in -> out, spatial size); the last one has few input channels (VGG's first layer)
LAYERS = [(8, 64, 64, 56), (8, 128, 128, 28), (8, 256, 256, 14), (1, 64, 64, 56), (2, 3, 64, 224)]


def _cpu_times():
    """(all, idle) jiffies since boot from /proc/stat, or None where there is none."""
    try:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return None
    return sum(values), values[3] + values[4]


def wait_until_idle(window=0.1, idle_share=0.95, timeout=30.0):
    """Return once a ``window`` passed with the CPUs at least ``idle_share`` idle (or at timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        before = _cpu_times()
        time.sleep(window)
        after = _cpu_times()
        if before is None or after is None or time.monotonic() > deadline:
            return
        if after[1] - before[1] >= idle_share * (after[0] - before[0]):
            return


def interleaved_best(calls: dict, repeats: int) -> dict:
    """Best wall time of each call, the calls taking turns so that machine noise hits all alike;
    each timed call is the second of two back to back after the CPUs were idle."""
    for call in calls.values():
        call()  # compile / warm caches
    best = {name: float("inf") for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            wait_until_idle()
            call()
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def gemm_rate(repeats: int) -> float:
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    b = a.T.copy()
    seconds = interleaved_best({"gemm": lambda: a @ b}, repeats)["gemm"]
    return 2 * 2048**3 / seconds / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--f2", action="store_true", help="also time F(2x2, 3x3)")
    args = parser.parse_args()

    fastconv.set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None

    peak = gemm_rate(args.repeats)
    print(f"threads={args.threads}  NumPy 2048^2 float32 GEMM: {peak:.1f} GFLOP/s")
    header = f"{'layer':<26}{'algorithm':<14}{'ms':>9}{'GFLOP/s':>10}{'% GEMM':>8}{'vs torch':>10}"
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for batch, channels, out_channels, size in LAYERS:
        x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
        w = (rng.standard_normal((out_channels, channels, 3, 3)) / np.sqrt(9 * channels)).astype(np.float32)
        b = rng.standard_normal(out_channels).astype(np.float32)
        params, xc, wc, bc, _ = make_conv_params(x, w, b, padding=1)
        calls = {
            "winograd F4": lambda: winograd.forward(xc, wc, bc, params, tile=4),
            "direct": lambda: fastconv.conv2d(x, w, b, padding=1, algorithm="direct"),
            "im2col": lambda: im2col.forward(xc, wc, bc, params),
        }
        if args.f2:
            calls["winograd F2"] = lambda: winograd.forward(xc, wc, bc, params, tile=2)
        if torch is not None:
            xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)

            def run_torch():
                with torch.no_grad():
                    return torch.nn.functional.conv2d(xt, wt, bt, padding=1)

            calls["torch"] = run_torch
        times = interleaved_best(calls, args.repeats)
        layer = f"N={batch} {channels}->{out_channels} {size}x{size}"
        for name, seconds in times.items():
            rate = params.flops / seconds / 1e9
            versus = f"{times['torch'] / seconds:9.2f}x" if "torch" in times else "-"
            print(f"{layer:<26}{name:<14}{seconds * 1e3:9.2f}{rate:10.1f}{100 * rate / peak:7.0f}%"
                  f"{versus:>10}")
            layer = ""
    print("\nvs torch: torch time / this time (> 1 means faster than torch).")


if __name__ == "__main__":
    main()
