"""local_conv2d forward/backward against conv2d doing the same FLOPs (issue 10).

Problem: N=32, C=16, 28x28, K=16, 3x3, stride 1, padding 1 (output 28x28), float32.  local_conv2d
and conv2d perform exactly the same multiply-adds (2 N K H' W' C R S FLOPs); local_conv2d reads a
different 3x3x16x16 kernel bank at every one of the 784 output positions (7.2 MB of weights instead
of 9 KB).  fastconv has no conv2d backward yet, so the backward row for shared weights is
tiled_conv2d with tiles (1, 1) (== conv2d) and, when torch is installed, torch's conv2d.

Run from the repository root:  python bench/bench_local.py [--repeats 20] [--dtype float32]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fastconv  # noqa: E402

BATCH, CHANNELS, SIZE, OUT_CHANNELS, KERNEL, PADDING = 32, 16, 28, 16, 3, 1


def median_seconds(call, repeats):
    call()  # JIT compile / warm caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    dtype = np.dtype(args.dtype)
    x = rng.standard_normal((BATCH, CHANNELS, SIZE, SIZE)).astype(dtype)
    out_h, out_w = fastconv.conv_output_shape(SIZE, KERNEL, padding=PADDING)
    local_w = rng.standard_normal((out_h, out_w, OUT_CHANNELS, CHANNELS, KERNEL, KERNEL)).astype(dtype)
    local_b = rng.standard_normal((out_h, out_w, OUT_CHANNELS)).astype(dtype)
    conv_w = rng.standard_normal((OUT_CHANNELS, CHANNELS, KERNEL, KERNEL)).astype(dtype)
    conv_b = rng.standard_normal(OUT_CHANNELS).astype(dtype)
    grad_out = rng.standard_normal((BATCH, OUT_CHANNELS, out_h, out_w)).astype(dtype)
    flops = fastconv.conv_flops(x.shape, local_w.shape, padding=PADDING)
    assert flops == fastconv.conv_flops(x.shape, conv_w.shape, padding=PADDING)

    rows = [
        ("local_conv2d forward", lambda: fastconv.local_conv2d(x, local_w, local_b, padding=PADDING), 1),
        ("local_conv2d backward (input+weight+bias)",
         lambda: fastconv.local_conv2d_backward(grad_out, x, local_w, local_b, padding=PADDING), 2),
        ("local_conv2d backward input only",
         lambda: fastconv.local_conv2d_backward(grad_out, x, local_w, local_b, padding=PADDING,
                                                needs=("input",)), 1),
        ("local_conv2d backward weight only",
         lambda: fastconv.local_conv2d_backward(grad_out, x, local_w, local_b, padding=PADDING,
                                                needs=("weight",)), 1),
    ]
    for algorithm in ("auto", "direct", "im2col"):
        rows.append((f"conv2d forward ({algorithm})",
                     lambda a=algorithm: fastconv.conv2d(x, conv_w, conv_b, padding=PADDING, algorithm=a), 1))
    tiled_w = conv_w[None, None]
    rows += [
        ("tiled_conv2d tiles=(1,1) forward", lambda: fastconv.tiled_conv2d(x, tiled_w, conv_b, padding=PADDING), 1),
        ("tiled_conv2d tiles=(1,1) backward",
         lambda: fastconv.tiled_conv2d_backward(grad_out, x, tiled_w, conv_b, padding=PADDING), 2),
    ]
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(fastconv.get_num_threads())
        tx = torch.from_numpy(x).requires_grad_(True)
        tw = torch.from_numpy(conv_w).requires_grad_(True)
        tb = torch.from_numpy(conv_b).requires_grad_(True)
        tg = torch.from_numpy(grad_out)

        def torch_forward():
            with torch.no_grad():
                return torch.nn.functional.conv2d(tx, tw, tb, padding=PADDING)

        def torch_backward():
            out = torch.nn.functional.conv2d(tx, tw, tb, padding=PADDING)
            return torch.autograd.grad(out, (tx, tw, tb), tg)

        rows += [("torch conv2d forward (reference)", torch_forward, 1),
                 ("torch conv2d forward+backward (reference)", torch_backward, 3)]

    print(f"N={BATCH} C={CHANNELS} {SIZE}x{SIZE} K={OUT_CHANNELS} {KERNEL}x{KERNEL} padding={PADDING} "
          f"{dtype.name}, threads={fastconv.get_num_threads()}, forward = {flops / 1e6:.1f} MFLOP")
    print(f"{'operation':<46} {'median ms':>10} {'GFLOP/s':>9}")
    print("-" * 67)
    for name, call, passes in rows:
        seconds = median_seconds(call, args.repeats)
        print(f"{name:<46} {seconds * 1e3:>10.2f} {passes * flops / seconds / 1e9:>9.1f}")
    print("GFLOP/s counts the forward's FLOPs once per pass: backward of input+weight = 2 passes.")


if __name__ == "__main__":
    main()
