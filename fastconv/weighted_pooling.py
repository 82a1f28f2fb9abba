"""Distance-weighted (Gaussian) average pooling, forward and backward.

Each output is a weighted average of its window, the weight of a tap falling off with its distance
from the window's centre:

    w[r, s] = exp(-(r - (R - 1) / 2)^2 / (2 sigma_h^2) - (s - (S - 1) / 2)^2 / (2 sigma_w^2)) / Z

with ``Z`` the sum over the whole window, so the weights sum to 1.  As ``sigma -> inf`` every weight
tends to ``1 / (R S)`` and the operator becomes ``avg_pool2d``; ``sigma = inf`` is accepted and gives
avg_pool2d exactly.  Padding is implicit zeros which, as in avg_pool2d, count in the average
(``count_include_pad=True``) or not (``False``: each output is divided by the weight that fell inside
the input instead of by ``Z``).

The operator is linear in the input and the same for every channel, so it is a depthwise
cross-correlation with a fixed separable kernel; the kernels below are a dedicated direct loop: one
parallel task per output row (n, c, oh), inner loop over the contiguous output row (vectorised), zero
padding never materialised.  Because the weights are separable, the count_include_pad=False
renormalisation factorises into a per-row times a per-column scale.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from numba import prange

from ._config import njit_parallel
from ._params import (
    ConvParams, as_array, as_pair, check_fits, check_not_empty, compute_dtype, contiguous,
)
from .backends._common import valid_output_range


def _as_sigma(sigma) -> tuple[float, float]:
    items = sigma if isinstance(sigma, (tuple, list)) else (sigma, sigma)
    if len(items) != 2:
        raise ValueError(f"sigma must be a positive number or a pair of them, got {sigma!r}")
    values = []
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Real):
            raise TypeError(f"sigma must be a positive number or a pair of them, got {sigma!r}")
        item = float(item)
        if not item > 0:  # also rejects NaN
            raise ValueError(f"sigma must be positive (inf allowed), got {sigma!r}")
        values.append(item)
    return values[0], values[1]


def _axis_weights(kernel: int, sigma: float) -> np.ndarray:
    """Unnormalised 1-D Gaussian over the taps 0..kernel-1, centred at (kernel - 1) / 2 (float64)."""
    offsets = np.arange(kernel, dtype=np.float64) - (kernel - 1) / 2.0
    if math.isinf(sigma):
        return np.ones(kernel)
    return np.exp(-(offsets * offsets) / (2.0 * sigma * sigma))


def gaussian_weights(kernel_size, sigma=1.0) -> np.ndarray:
    """The (R, S) float64 window :func:`weighted_avg_pool2d` averages with (sums to 1)."""
    kernel_h, kernel_w = as_pair(kernel_size, "kernel_size", minimum=1)
    sigma_h, sigma_w = _as_sigma(sigma)
    rows, cols = _axis_weights(kernel_h, sigma_h), _axis_weights(kernel_w, sigma_w)
    return np.outer(rows, cols) / (rows.sum() * cols.sum())


def _axis_scale(axis_weights, out_size, stride, pad, in_size, count_include_pad):
    """Per-output factor that turns the weights' division by their full sum into a division by the
    sum of the taps inside the input (count_include_pad=False); ones otherwise."""
    if count_include_pad:
        return np.ones(out_size)
    positions = np.arange(out_size)[:, None] * stride - pad + np.arange(axis_weights.size)[None, :]
    inside = (positions >= 0) & (positions < in_size)
    return axis_weights.sum() / (inside * axis_weights[None, :]).sum(axis=1)


def _make_pool_params(input, kernel_size, stride, padding, sigma, count_include_pad, op,
                      input_name="input"):
    x = as_array(input, input_name)
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: {input_name} must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {x.shape}")
    check_not_empty(x.shape, input_name, x.ndim == 4, op)
    kernel_h, kernel_w = as_pair(kernel_size, "kernel_size", minimum=1)
    stride_h, stride_w = (kernel_h, kernel_w) if stride is None else as_pair(stride, "stride", minimum=1)
    pad_h, pad_w = as_pair(padding, "padding", minimum=0)
    if 2 * pad_h > kernel_h or 2 * pad_w > kernel_w:
        raise ValueError(
            f"{op}: padding ({pad_h}, {pad_w}) must be at most half of kernel_size "
            f"({kernel_h}, {kernel_w}), as in avg_pool2d"
        )
    sigma_hw = _as_sigma(sigma)
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"{op}: count_include_pad must be a bool, got {count_include_pad!r}")
    batched = x.ndim == 4
    x4 = x if batched else x[np.newaxis]
    batch, channels, in_h, in_w = x4.shape
    # A pooling layer is a depthwise correlation: ConvParams describes its geometry exactly.
    params = ConvParams(
        batch=batch, in_channels=channels, in_h=in_h, in_w=in_w, out_channels=channels,
        kernel_h=kernel_h, kernel_w=kernel_w, stride_h=stride_h, stride_w=stride_w,
        pad_top=pad_h, pad_bottom=pad_h, pad_left=pad_w, pad_right=pad_w, groups=channels,
        dtype=compute_dtype(x),
    )
    check_fits(params)
    rows, cols = _axis_weights(kernel_h, sigma_hw[0]), _axis_weights(kernel_w, sigma_hw[1])
    taps = np.outer(rows, cols) / (rows.sum() * cols.sum())
    scale_h = _axis_scale(rows, params.out_h, stride_h, pad_h, in_h, count_include_pad)
    scale_w = _axis_scale(cols, params.out_w, stride_w, pad_w, in_w, count_include_pad)
    dtype = params.dtype
    return (params, x4, batched, contiguous(taps, dtype), contiguous(scale_h, dtype),
            contiguous(scale_w, dtype))


@njit_parallel
def _weighted_pool_forward_kernel(x, taps, scale_h, scale_w, out, stride_h, stride_w,
                                  pad_top, pad_left):
    batch, channels, in_h, in_w = x.shape
    kernel_h, kernel_w = taps.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for task in prange(batch * channels * out_h):
        oh = task % out_h
        plane = task // out_h
        n = plane // channels
        c = plane % channels
        row = out[n, c, oh]
        row[:] = 0
        for r in range(kernel_h):
            ih = oh * stride_h - pad_top + r
            if ih < 0 or ih >= in_h:
                continue
            in_row = x[n, c, ih]
            for s in range(kernel_w):
                offset = s - pad_left
                lo, hi = valid_output_range(offset, stride_w, in_w, out_w)
                tap = taps[r, s]
                for ow in range(lo, hi):
                    row[ow] += tap * in_row[ow * stride_w + offset]
        row_scale = scale_h[oh]
        for ow in range(out_w):
            row[ow] *= row_scale * scale_w[ow]


@njit_parallel
def _weighted_pool_backward_kernel(grad_out, taps, scale_h, scale_w, grad_x, stride_h, stride_w,
                                   pad_top, pad_left):
    # One task per (n, c) plane: windows overlap within a plane, never across planes.
    batch, channels, in_h, in_w = grad_x.shape
    kernel_h, kernel_w = taps.shape
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    for plane in prange(batch * channels):
        n = plane // channels
        c = plane % channels
        scaled = np.empty(out_w, dtype=grad_x.dtype)
        for oh in range(out_h):
            grad_row = grad_out[n, c, oh]
            row_scale = scale_h[oh]
            for ow in range(out_w):
                scaled[ow] = grad_row[ow] * (row_scale * scale_w[ow])
            for r in range(kernel_h):
                ih = oh * stride_h - pad_top + r
                if ih < 0 or ih >= in_h:
                    continue
                grad_in_row = grad_x[n, c, ih]
                for s in range(kernel_w):
                    offset = s - pad_left
                    lo, hi = valid_output_range(offset, stride_w, in_w, out_w)
                    tap = taps[r, s]
                    for ow in range(lo, hi):
                        grad_in_row[ow * stride_w + offset] += tap * scaled[ow]


def weighted_avg_pool2d(input, kernel_size, stride=None, padding=0, sigma=1.0, *,
                        count_include_pad=True):
    """Average pooling weighted by a Gaussian of the distance from the window's centre.

    Parameters
    ----------
    input : array (N, C, H, W) or unbatched (C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int); default ``kernel_size`` (as avg_pool2d)
    padding : int or (int, int), implicit zeros, at most half of ``kernel_size``
    sigma : positive float or (sigma_h, sigma_w), in pixels; ``inf`` gives avg_pool2d exactly
    count_include_pad : bool
        True: padded zeros count in the average (weights always divided by the whole window's sum);
        False: each output is divided by the weight of its taps inside the input.

    Returns
    -------
    ndarray (N, C, out_h, out_w) or (C, out_h, out_w), ``out_h = (H + 2 pad_h - R) // stride_h + 1``;
    float32 stays float32, other inputs compute in float64.  The window is
    :func:`gaussian_weights`.
    """
    params, x, batched, taps, scale_h, scale_w = _make_pool_params(
        input, kernel_size, stride, padding, sigma, count_include_pad, "weighted_avg_pool2d"
    )
    x = contiguous(x, params.dtype)
    out = np.empty(params.output_shape, dtype=params.dtype)
    if params.batch == 0:  # no samples: the (0, C, out_h, out_w) result, no kernel run
        return out
    _weighted_pool_forward_kernel(x, taps, scale_h, scale_w, out, params.stride_h, params.stride_w,
                                  params.pad_top, params.pad_left)
    return out if batched else out[0]


def weighted_avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, sigma=1.0,
                                 *, count_include_pad=True):
    """Gradient of :func:`weighted_avg_pool2d` with respect to its input.

    ``input`` is the forward call's input (only its shape and dtype are used: the operator is linear);
    the other arguments are the forward call's.  Returns an array shaped like ``input``.
    """
    params, _, batched, taps, scale_h, scale_w = _make_pool_params(
        input, kernel_size, stride, padding, sigma, count_include_pad, "weighted_avg_pool2d_backward"
    )
    grad = as_array(grad_output, "grad_output")
    expected = params.output_shape if batched else params.output_shape[1:]
    if grad.shape != expected:
        raise ValueError(
            f"weighted_avg_pool2d_backward: grad_output must have the output's shape {expected}, "
            f"got {grad.shape}"
        )
    dtype = compute_dtype(np.empty(0, params.dtype), grad)
    if dtype != params.dtype:
        taps, scale_h, scale_w = (a.astype(dtype) for a in (taps, scale_h, scale_w))
    grad = contiguous(grad if batched else grad[np.newaxis], dtype)
    grad_input = np.zeros(params.input_shape, dtype=dtype)
    if params.batch == 0:
        return grad_input
    _weighted_pool_backward_kernel(grad, taps, scale_h, scale_w, grad_input, params.stride_h,
                                   params.stride_w, params.pad_top, params.pad_left)
    return grad_input if batched else grad_input[0]
