"""Issue 4 figures: conv2d_backward vs forward, and 2x2 pooling forward+backward vs NumPy and torch.

Run from the repository root:  python bench/bench_backward_pool.py [--repeat 5]

Prints a plain table of best-of-``repeat`` wall times (after one warm-up call that also compiles).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fastconv  # noqa: E402


def best_time(function, repeat):
    function()  # warm-up: JIT compile / cache load, page faults
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


# --- plain NumPy reshape pooling (2x2, stride 2, even sizes): the baseline the issue names ------
def numpy_max_pool_fwd_bwd(x, grad):
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // 2, 2, w // 2, 2)
    out = blocks.max(axis=(3, 5))
    # route to the first maximum of each block (PyTorch's tie rule), via argmax on a flat window
    windows = blocks.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    first = windows.argmax(axis=-1)
    routed = np.zeros_like(windows)
    np.put_along_axis(routed, first[..., None], grad[..., None], axis=-1)
    grad_in = routed.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    return out, grad_in.reshape(n, c, h, w)


def numpy_avg_pool_fwd_bwd(x, grad):
    n, c, h, w = x.shape
    out = x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))
    share = (grad * x.dtype.type(0.25))
    grad_in = np.broadcast_to(share[:, :, :, None, :, None], (n, c, h // 2, 2, w // 2, 2))
    return out, grad_in.reshape(n, c, h, w)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"threads: {fastconv.get_num_threads()}  numpy {np.__version__}")

    # --- conv2d_backward vs forward -------------------------------------------------------------
    x = rng.standard_normal((8, 64, 56, 56), dtype=np.float32)
    w = rng.standard_normal((64, 64, 3, 3), dtype=np.float32)
    grad = rng.standard_normal((8, 64, 56, 56), dtype=np.float32)
    print("\nconv2d N=8 C=64 56x56 K=64 3x3 pad=1 float32")
    print(f"{'algorithm':<10} {'forward ms':>11} {'backward ms':>12} {'ratio':>6}")
    for algorithm in ("auto", "im2col", "direct", "fft"):
        forward = best_time(lambda: fastconv.conv2d(x, w, padding=1, algorithm=algorithm),
                            args.repeat)
        backward = best_time(
            lambda: fastconv.conv2d_backward(grad, x, w, padding=1, algorithm=algorithm),
            args.repeat)
        print(f"{algorithm:<10} {forward * 1e3:11.1f} {backward * 1e3:12.1f} "
              f"{backward / forward:6.2f}")
    try:
        import torch
        torch.set_num_threads(fastconv.get_num_threads())
        x_t = torch.tensor(x, requires_grad=True)
        w_t = torch.tensor(w, requires_grad=True)
        g_t = torch.tensor(grad)

        def torch_forward():
            with torch.no_grad():
                torch.nn.functional.conv2d(x_t, w_t, padding=1)

        def torch_backward():
            out = torch.nn.functional.conv2d(x_t, w_t, padding=1)
            torch.autograd.grad(out, (x_t, w_t), g_t)

        forward = best_time(torch_forward, args.repeat)
        both = best_time(torch_backward, args.repeat)
        print(f"{'torch':<10} {forward * 1e3:11.1f} {(both - forward) * 1e3:12.1f} "
              f"{(both - forward) / forward:6.2f}   (backward = autograd fwd+bwd - fwd)")
    except ImportError:
        print("torch not installed: no torch row")

    # --- pooling --------------------------------------------------------------------------------
    x = rng.standard_normal((64, 64, 56, 56), dtype=np.float32)
    grad = rng.standard_normal((64, 64, 28, 28), dtype=np.float32)
    print("\npooling (64, 64, 56, 56) float32, 2x2 stride 2: forward + backward")
    print(f"{'op':<5} {'fastconv fwd':>12} {'fastconv bwd':>12} {'fwd+bwd ms':>11} "
          f"{'numpy ms':>9} {'torch ms':>9}")
    rows = (
        ("max", fastconv.max_pool2d, fastconv.max_pool2d_backward, numpy_max_pool_fwd_bwd),
        ("avg", fastconv.avg_pool2d, fastconv.avg_pool2d_backward, numpy_avg_pool_fwd_bwd),
    )
    for name, forward_fn, backward_fn, numpy_fn in rows:
        forward = best_time(lambda: forward_fn(x, 2), args.repeat)
        backward = best_time(lambda: backward_fn(grad, x, 2), args.repeat)
        numpy_time = best_time(lambda: numpy_fn(x, grad), args.repeat)
        torch_text = "-"
        try:
            import torch
            x_t = torch.tensor(x, requires_grad=True)
            g_t = torch.tensor(grad)
            torch_fn = getattr(torch.nn.functional, f"{name}_pool2d")

            def torch_both():
                out = torch_fn(x_t, 2)
                torch.autograd.grad(out, x_t, g_t)

            torch_text = f"{best_time(torch_both, args.repeat) * 1e3:9.1f}"
        except ImportError:
            pass
        print(f"{name:<5} {forward * 1e3:12.1f} {backward * 1e3:12.1f} "
              f"{(forward + backward) * 1e3:11.1f} {numpy_time * 1e3:9.1f} {torch_text:>9}")


if __name__ == "__main__":
    main()
