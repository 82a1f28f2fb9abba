"""Plain-NumPy twins of fastconv's kernels: slow, obviously correct — the oracle for the tests.

Each twin computes in float64 straight from the definition, with explicit padding via ``np.pad``.
"""
from __future__ import annotations

import numpy as np

TORCH_TO_NUMPY_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def padding_amounts(padding, kernel_hw, dilation, stride=(1, 1)):
    """(top, bottom, left, right) as PyTorch resolves ``padding``."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel_hw)]
        return (total[0] // 2, total[0] - total[0] // 2, total[1] // 2, total[1] - total[1] // 2)
    ph, pw = pair(padding)
    return (ph, ph, pw, pw)


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """torch.nn.functional.conv2d from its definition (cross-correlation), NCHW or CHW."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    stride_h, stride_w = pair(stride)
    dil_h, dil_w = pair(dilation)
    out_channels, channels, kernel_h, kernel_w = w.shape
    top, bottom, left, right = padding_amounts(padding, (kernel_h, kernel_w), (dil_h, dil_w))
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)),
                    mode=TORCH_TO_NUMPY_PAD[padding_mode])
    batch, _, padded_h, padded_w = padded.shape
    out_h = (padded_h - dil_h * (kernel_h - 1) - 1) // stride_h + 1
    out_w = (padded_w - dil_w * (kernel_w - 1) - 1) // stride_w + 1
    out = np.zeros((batch, out_channels, out_h, out_w))
    out_per_group = out_channels // groups
    for k in range(out_channels):
        group = k // out_per_group
        for c in range(channels):
            plane = padded[:, group * channels + c]
            for r in range(kernel_h):
                for s in range(kernel_w):
                    window = plane[:, r * dil_h: r * dil_h + stride_h * (out_h - 1) + 1: stride_h,
                                   s * dil_w: s * dil_w + stride_w * (out_w - 1) + 1: stride_w]
                    out[:, k] += w[k, c, r, s] * window
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return out[0] if unbatched else out
