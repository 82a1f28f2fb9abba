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


# --- scipy.signal 2-D API: correlate2d / convolve2d -------------------------------------------
# From scipy.signal's documented definitions, in float64 (complex128 for complex input), with the
# boundary applied by np.pad: ``full`` pads R - 1 rows on each side; ``same`` keeps in1's shape,
# centred so that correlation starts (R - 1) // 2 rows before in1 and convolution R // 2 rows.

SIGNAL_TO_NUMPY_PAD = {"fill": "constant", "wrap": "wrap", "symm": "symmetric"}


def _signal_2d(in1, in2, mode, boundary, fillvalue, flip):
    in1 = np.asarray(in1)
    in2 = np.asarray(in2)
    if mode == "valid" and all(b >= a for a, b in zip(in1.shape, in2.shape)) and in1.shape != in2.shape:
        # the larger input plays in1; correlation is then reversed (convolution commutes)
        swapped = _signal_2d(in2, in1, mode, boundary, fillvalue, flip)
        return swapped if flip else swapped[::-1, ::-1]
    exact = np.complex128 if np.iscomplexobj(in1) or np.iscomplexobj(in2) else np.float64
    x = in1.astype(exact)
    kernel = in2.astype(exact)
    kernel = kernel[::-1, ::-1] if flip else np.conj(kernel)
    kernel_h, kernel_w = kernel.shape
    if mode == "full":
        pads = ((kernel_h - 1, kernel_h - 1), (kernel_w - 1, kernel_w - 1))
    elif mode == "same":
        top = kernel_h // 2 if flip else (kernel_h - 1) // 2
        left = kernel_w // 2 if flip else (kernel_w - 1) // 2
        pads = ((top, kernel_h - 1 - top), (left, kernel_w - 1 - left))
    else:
        pads = ((0, 0), (0, 0))
    extra = {"constant_values": fillvalue} if boundary == "fill" else {}
    padded = np.pad(x, pads, mode=SIGNAL_TO_NUMPY_PAD[boundary], **extra)
    out_h = padded.shape[0] - kernel_h + 1
    out_w = padded.shape[1] - kernel_w + 1
    out = np.zeros((out_h, out_w), dtype=exact)
    for r in range(kernel_h):
        for s in range(kernel_w):
            out += kernel[r, s] * padded[r:r + out_h, s:s + out_w]
    return out


def correlate2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    """scipy.signal.correlate2d from its definition: sum in1[i + r, j + s] * conj(in2[r, s])."""
    return _signal_2d(in1, in2, mode, boundary, fillvalue, flip=False)


def convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    """scipy.signal.convolve2d from its definition: sum in1[i - r, j - s] * in2[r, s]."""
    return _signal_2d(in1, in2, mode, boundary, fillvalue, flip=True)
