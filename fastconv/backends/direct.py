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


# --- backward ---------------------------------------------------------------------------------
@njit_parallel
def _direct_backward_input_kernel(grad_out, w, grad_in, stride_h, stride_w, dilation_h, dilation_w,
                                  pad_top, pad_left, groups):
    """The transpose of ``_direct_kernel``: one parallel task per input row (n, c, ih), so the
    scattered writes ``grad_in[n, c, ih, ow * stride + offset]`` stay inside the task's own row
    (no races) while the reads of ``grad_out`` rows are contiguous.  Rows of ``grad_out`` beyond its
    own shape are absent (conv_transpose2d's output_padding relies on this)."""
    batch, in_channels, in_h, in_w = grad_in.shape
    out_channels, channels_per_group, kernel_h, kernel_w = w.shape
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    out_per_group = out_channels // groups
    for task in prange(batch * in_channels * in_h):
        ih = task % in_h
        c = (task // in_h) % in_channels
        n = task // (in_h * in_channels)
        group = c // channels_per_group
        c_in_group = c % channels_per_group
        row = grad_in[n, c, ih]
        row[:] = 0
        for r in range(kernel_h):
            shifted = ih + pad_top - r * dilation_h  # = oh * stride_h when tap r reaches row ih
            if shifted < 0 or shifted % stride_h:
                continue
            oh = shifted // stride_h
            if oh >= out_h:
                continue
            for s in range(kernel_w):
                offset = s * dilation_w - pad_left
                lo, hi = valid_output_range(offset, stride_w, in_w, out_w)
                for k in range(group * out_per_group, (group + 1) * out_per_group):
                    tap = w[k, c_in_group, r, s]
                    grad_row = grad_out[n, k, oh]
                    for ow in range(lo, hi):
                        row[ow * stride_w + offset] += tap * grad_row[ow]


@njit_parallel
def _direct_backward_weight_kernel(grad_out, x, grad_w, stride_h, stride_w, dilation_h, dilation_w,
                                   pad_top, pad_left, groups):
    """grad_w[k, c, r, s] = sum over (n, oh, ow) of grad_out[n, k, oh, ow] * x[n, c', ih, iw]: one
    parallel task per (k, c) pair; every tap is a dot product over a contiguous grad_out row."""
    batch, _, in_h, in_w = x.shape
    out_channels, channels_per_group, kernel_h, kernel_w = grad_w.shape
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    out_per_group = out_channels // groups
    for task in prange(out_channels * channels_per_group):
        c = task % channels_per_group
        k = task // channels_per_group
        channel = (k // out_per_group) * channels_per_group + c
        taps = grad_w[k, c]
        taps[:, :] = 0
        for n in range(batch):
            for oh in range(out_h):
                grad_row = grad_out[n, k, oh]
                for r in range(kernel_h):
                    ih = oh * stride_h - pad_top + r * dilation_h
                    if ih < 0 or ih >= in_h:
                        continue
                    in_row = x[n, channel, ih]
                    for s in range(kernel_w):
                        offset = s * dilation_w - pad_left
                        lo, hi = valid_output_range(offset, stride_w, in_w, out_w)
                        acc = taps.dtype.type(0)
                        for ow in range(lo, hi):
                            acc += grad_row[ow] * in_row[ow * stride_w + offset]
                        taps[r, s] += acc


def backward_input(grad_out, w, params):
    """Gradient of conv2d w.r.t. its (zero-padding form) input: (N, C, H, W) of ``params.dtype``."""
    grad_in = np.empty(params.input_shape, dtype=params.dtype)
    _direct_backward_input_kernel(
        grad_out, w, grad_in, params.stride_h, params.stride_w, params.dilation_h,
        params.dilation_w, params.pad_top, params.pad_left, params.groups,
    )
    return grad_in


def backward_weight(grad_out, x, params):
    """Gradient of conv2d w.r.t. its weight: (K, C/groups, R, S) of ``params.dtype``."""
    grad_w = np.empty(params.weight_shape, dtype=params.dtype)
    _direct_backward_weight_kernel(
        grad_out, x, grad_w, params.stride_h, params.stride_w, params.dilation_h,
        params.dilation_w, params.pad_top, params.pad_left, params.groups,
    )
    return grad_w
