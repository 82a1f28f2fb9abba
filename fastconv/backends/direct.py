"""Direct convolution: the defining sum, written out.

Layout: NCHW input, (K, C/groups, R, S) weight, NCHW output.  One parallel task per output row
(n, k, oh), so a single image parallelises as well as a batch.  Within a task the output row stays in
L1 and every (r, s, c) tap adds ``w * input_row[ow * stride + offset]`` over the contiguous ``ow``
range that does not touch padding, which LLVM vectorises; zero padding is never materialised.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._config import njit_parallel
from ._common import bias_or_zeros, valid_output_range

NAME = "direct"


def supports(params) -> str | None:
    """Every conv2d parameter combination."""
    return None


@njit_parallel
def _direct_kernel(x, w, bias, out, stride_h, stride_w, dilation_h, dilation_w,
                   pad_top, pad_left, groups):
    batch, _, in_h, in_w = x.shape
    out_channels, channels_per_group, kernel_h, kernel_w = w.shape
    out_h, out_w = out.shape[2], out.shape[3]
    out_per_group = out_channels // groups
    for task in prange(batch * out_channels * out_h):
        oh = task % out_h
        k = (task // out_h) % out_channels
        n = task // (out_h * out_channels)
        first_channel = (k // out_per_group) * channels_per_group
        row = out[n, k, oh]
        row[:] = bias[k]
        for r in range(kernel_h):
            ih = oh * stride_h - pad_top + r * dilation_h
            if ih < 0 or ih >= in_h:
                continue
            for s in range(kernel_w):
                offset = s * dilation_w - pad_left
                lo, hi = valid_output_range(offset, stride_w, in_w, out_w)
                for c in range(channels_per_group):
                    tap = w[k, c, r, s]
                    in_row = x[n, first_channel + c, ih]
                    for ow in range(lo, hi):
                        row[ow] += tap * in_row[ow * stride_w + offset]


def forward(x, w, bias, params):
    """conv2d of C-contiguous ``x`` (N, C, H, W) with ``w``; zero padding only (see ConvParams)."""
    out = np.empty(params.output_shape, dtype=params.dtype)
    _direct_kernel(
        x, w, bias_or_zeros(bias, params.out_channels, params.dtype), out,
        params.stride_h, params.stride_w, params.dilation_h, params.dilation_w,
        params.pad_top, params.pad_left, params.groups,
    )
    return out
