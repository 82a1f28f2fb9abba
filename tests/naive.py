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


# ---------------------------------------------------------------------------------------------------
# Issue 10: tiled / unshared (local) convolution, distance-weighted and plain average pooling.
# ---------------------------------------------------------------------------------------------------
def _tiled_geometry(x, w, stride, padding):
    x = np.asarray(x, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    kernel_h, kernel_w = w.shape[-2:]
    top, bottom, left, right = padding_amounts(padding, (kernel_h, kernel_w), (1, 1))
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    stride_h, stride_w = pair(stride)
    out_h = (padded.shape[2] - kernel_h) // stride_h + 1
    out_w = (padded.shape[3] - kernel_w) // stride_w + 1
    return x, padded, unbatched, (top, left), (stride_h, stride_w), (out_h, out_w)


def tiled_conv2d(x, w, bias=None, stride=1, padding=0):
    """Tiled convolution from its definition: output (oh, ow) uses kernel bank w[oh % tH, ow % tW].

    ``w`` is (tH, tW, K, C, R, S); ``bias`` is (K,), (tH, tW, K) or None.  Local (unshared)
    convolution is the case (tH, tW) == (out_h, out_w)."""
    w = np.asarray(w, dtype=np.float64)
    _, padded, unbatched, _, (stride_h, stride_w), (out_h, out_w) = _tiled_geometry(x, w, stride, padding)
    tile_h, tile_w, out_channels, _, kernel_h, kernel_w = w.shape
    out = np.zeros((padded.shape[0], out_channels, out_h, out_w))
    for oh in range(out_h):
        for ow in range(out_w):
            window = padded[:, :, oh * stride_h: oh * stride_h + kernel_h,
                            ow * stride_w: ow * stride_w + kernel_w]
            out[:, :, oh, ow] = np.einsum("ncrs,kcrs->nk", window, w[oh % tile_h, ow % tile_w])
            if bias is not None:
                bias64 = np.asarray(bias, dtype=np.float64)
                out[:, :, oh, ow] += bias64 if bias64.ndim == 1 else bias64[oh % tile_h, ow % tile_w]
    return out[0] if unbatched else out


local_conv2d = tiled_conv2d  # weight (out_h, out_w, K, C, R, S): every position its own tile


def tiled_conv2d_backward(grad_out, x, w, bias=None, stride=1, padding=0):
    """(grad_input, grad_weight, grad_bias) of tiled_conv2d, from the chain rule on the definition."""
    w = np.asarray(w, dtype=np.float64)
    x64, padded, unbatched, (top, left), (stride_h, stride_w), (out_h, out_w) = _tiled_geometry(
        x, w, stride, padding)
    grad_out = np.asarray(grad_out, dtype=np.float64)
    if unbatched:
        grad_out = grad_out[None]
    tile_h, tile_w, out_channels, _, kernel_h, kernel_w = w.shape
    grad_padded = np.zeros_like(padded)
    grad_w = np.zeros_like(w)
    grad_tile_bias = np.zeros((tile_h, tile_w, out_channels))
    for oh in range(out_h):
        for ow in range(out_w):
            rows = slice(oh * stride_h, oh * stride_h + kernel_h)
            cols = slice(ow * stride_w, ow * stride_w + kernel_w)
            g = grad_out[:, :, oh, ow]
            bank = (oh % tile_h, ow % tile_w)
            grad_w[bank] += np.einsum("nk,ncrs->kcrs", g, padded[:, :, rows, cols])
            grad_padded[:, :, rows, cols] += np.einsum("nk,kcrs->ncrs", g, w[bank])
            grad_tile_bias[bank] += g.sum(axis=0)
    in_h, in_w = x64.shape[2:]
    grad_x = grad_padded[:, :, top: top + in_h, left: left + in_w]
    grad_x = grad_x[0] if unbatched else grad_x
    grad_b = None
    if bias is not None:
        grad_b = grad_tile_bias.sum(axis=(0, 1)) if np.ndim(bias) == 1 else grad_tile_bias
    return grad_x, grad_w, grad_b


def _pool_with_window(x, window, stride, padding, count_include_pad):
    x = np.asarray(x, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    kernel_h, kernel_w = window.shape
    stride_h, stride_w = pair(stride)
    pad_h, pad_w = pair(padding)
    padded = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))
    inside = np.pad(np.ones(x.shape[2:]), ((pad_h, pad_h), (pad_w, pad_w)))
    out_h = (padded.shape[2] - kernel_h) // stride_h + 1
    out_w = (padded.shape[3] - kernel_w) // stride_w + 1
    out = np.zeros(x.shape[:2] + (out_h, out_w))
    for oh in range(out_h):
        for ow in range(out_w):
            rows = slice(oh * stride_h, oh * stride_h + kernel_h)
            cols = slice(ow * stride_w, ow * stride_w + kernel_w)
            total = (padded[:, :, rows, cols] * window).sum(axis=(2, 3))
            norm = window.sum() if count_include_pad else (window * inside[rows, cols]).sum()
            out[:, :, oh, ow] = total / norm
    return out[0] if unbatched else out


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """torch.nn.functional.avg_pool2d (ceil_mode=False) from its definition."""
    kernel_h, kernel_w = pair(kernel_size)
    return _pool_with_window(x, np.ones((kernel_h, kernel_w)),
                             pair(kernel_size) if stride is None else stride, padding, count_include_pad)


def weighted_avg_pool2d(x, kernel_size, stride=None, padding=0, sigma=1.0, count_include_pad=True):
    """Gaussian-weighted average: tap (r, s) weighs exp(-(dr^2 / 2 sigma_h^2 + ds^2 / 2 sigma_w^2)),
    (dr, ds) its offset from the window's centre ((R - 1) / 2, (S - 1) / 2)."""
    kernel_h, kernel_w = pair(kernel_size)
    sigma_h, sigma_w = pair(sigma)
    dr = np.arange(kernel_h) - (kernel_h - 1) / 2
    ds = np.arange(kernel_w) - (kernel_w - 1) / 2
    window = np.exp(-dr[:, None] ** 2 / (2 * sigma_h ** 2) - ds[None, :] ** 2 / (2 * sigma_w ** 2))
    return _pool_with_window(x, window, pair(kernel_size) if stride is None else stride, padding,
                             count_include_pad)
