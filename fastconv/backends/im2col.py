"""im2col + GEMM: unfold input patches into a column matrix, then one BLAS matrix product.

For sample n and group g the output block ``out[n, g*Kg:(g+1)*Kg]`` viewed as (Kg, out_h*out_w) is
``weight_g (Kg, Cg*R*S) @ columns (Cg*R*S, out_h*out_w)``.  Row ``(c, r, s)`` of ``columns`` holds the
input samples that tap (c, r, s) meets at every output position, so it is written with contiguous
stores.  When the whole column matrix would exceed the workspace cap, output rows are processed in
chunks; a 1x1 stride-1 unpadded layer needs no unfolding at all (the input already is the matrix).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._config import get_workspace_limit, njit_kernel, njit_parallel
from ._common import valid_output_range

NAME = "im2col"


def supports(params) -> str | None:
    """Every conv2d parameter combination."""
    return None


@njit_parallel
def _unfold(image, first_channel, channels, kernel_h, kernel_w, stride_h, stride_w,
            dilation_h, dilation_w, pad_top, pad_left, first_row, rows, out_w, columns):
    """Fill ``columns`` (channels*R*S, rows*out_w) from ``image`` (C, H, W); one task per tap."""
    in_h, in_w = image.shape[1], image.shape[2]
    taps = kernel_h * kernel_w
    for crs in prange(channels * taps):
        c = crs // taps
        r = (crs // kernel_w) % kernel_h
        s = crs % kernel_w
        offset = s * dilation_w - pad_left
        lo, hi = valid_output_range(offset, stride_w, in_w, out_w)
        dest = columns[crs]
        for i in range(rows):
            base = i * out_w
            ih = (first_row + i) * stride_h - pad_top + r * dilation_h
            if ih < 0 or ih >= in_h:
                dest[base:base + out_w] = 0
                continue
            in_row = image[first_channel + c, ih]
            dest[base:base + lo] = 0
            for ow in range(lo, hi):
                dest[base + ow] = in_row[ow * stride_w + offset]
            dest[base + hi:base + out_w] = 0


@njit_parallel
def _add_bias(out3, bias):
    batch, out_channels, _ = out3.shape
    for nk in prange(batch * out_channels):
        out3[nk // out_channels, nk % out_channels, :] += bias[nk % out_channels]


@njit_kernel
def _im2col_kernel(x, w2, out3, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w,
                   pad_top, pad_left, groups, out_h, out_w, rows_per_chunk, workspace):
    """``w2`` is the weight as (K, Cg*R*S); ``out3`` the output as (N, K, out_h*out_w);
    ``workspace`` a flat buffer for one chunk's columns followed by one chunk's GEMM result."""
    batch, in_channels = x.shape[0], x.shape[1]
    out_channels, depth = w2.shape
    channels = in_channels // groups
    out_per_group = out_channels // groups
    column_size = depth * rows_per_chunk * out_w
    for n in range(batch):
        for g in range(groups):
            weight_g = w2[g * out_per_group:(g + 1) * out_per_group]
            out_g = out3[n, g * out_per_group:(g + 1) * out_per_group]
            for first_row in range(0, out_h, rows_per_chunk):
                rows = min(rows_per_chunk, out_h - first_row)
                width = rows * out_w
                columns = workspace[:depth * width].reshape((depth, width))
                _unfold(x[n], g * channels, channels, kernel_h, kernel_w, stride_h, stride_w,
                        dilation_h, dilation_w, pad_top, pad_left, first_row, rows, out_w, columns)
                if rows == out_h:
                    np.dot(weight_g, columns, out_g)
                else:
                    product = workspace[column_size:column_size + out_per_group * width]
                    product = product.reshape((out_per_group, width))
                    np.dot(weight_g, columns, product)
                    out_g[:, first_row * out_w:first_row * out_w + width] = product


@njit_kernel
def _pointwise_kernel(x3, w2, out3, groups):
    """1x1, stride 1, no padding: ``out[n, group] = w_group @ x[n, group]`` with x as (C, H*W)."""
    batch, in_channels, _ = x3.shape
    out_channels = w2.shape[0]
    channels = in_channels // groups
    out_per_group = out_channels // groups
    for n in range(batch):
        for g in range(groups):
            np.dot(w2[g * out_per_group:(g + 1) * out_per_group],
                   x3[n, g * channels:(g + 1) * channels],
                   out3[n, g * out_per_group:(g + 1) * out_per_group])


def rows_per_chunk(params, limit: int | None = None) -> int:
    """Output rows whose column matrix (plus its GEMM result) fits the workspace cap; at least 1."""
    limit = get_workspace_limit() if limit is None else limit
    depth = params.in_channels_per_group * params.kernel_h * params.kernel_w
    bytes_per_row = (depth + params.out_channels_per_group) * params.out_w * params.dtype.itemsize
    return int(max(1, min(params.out_h, limit // bytes_per_row)))


def workspace_bytes(params) -> int:
    rows = rows_per_chunk(params)
    depth = params.in_channels_per_group * params.kernel_h * params.kernel_w
    return (depth + params.out_channels_per_group) * rows * params.out_w * params.dtype.itemsize


def _is_pointwise(params) -> bool:
    return (
        params.kernel_h == params.kernel_w == 1
        and params.stride_h == params.stride_w == 1
        and not any((params.pad_top, params.pad_bottom, params.pad_left, params.pad_right))
    )


def forward(x, w, bias, params):
    """conv2d of C-contiguous ``x`` (N, C, H, W) with ``w``; zero padding only (see ConvParams)."""
    out = np.empty(params.output_shape, dtype=params.dtype)
    out3 = out.reshape(params.batch, params.out_channels, params.out_h * params.out_w)
    w2 = w.reshape(params.out_channels, -1)
    if _is_pointwise(params):
        _pointwise_kernel(x.reshape(params.batch, params.in_channels, -1), w2, out3, params.groups)
    else:
        rows = rows_per_chunk(params)
        depth = w2.shape[1]
        workspace = np.empty((depth + params.out_channels_per_group) * rows * params.out_w,
                             dtype=params.dtype)
        _im2col_kernel(
            x, w2, out3, params.kernel_h, params.kernel_w, params.stride_h, params.stride_w,
            params.dilation_h, params.dilation_w, params.pad_top, params.pad_left, params.groups,
            params.out_h, params.out_w, rows, workspace,
        )
    if bias is not None:
        _add_bias(out3, bias)
    return out


# --- backward ---------------------------------------------------------------------------------
@njit_parallel
def _fold(columns, image, first_channel, channels, kernel_h, kernel_w, stride_h, stride_w,
          dilation_h, dilation_w, pad_top, pad_left, first_row, rows, out_w):
    """col2im, the adjoint of ``_unfold``: add every row ``(c, r, s)`` of ``columns`` back onto the
    input samples it was read from.  One task per channel: all taps of a channel write the same
    plane, so splitting by channel is what keeps the accumulation race-free."""
    in_h, in_w = image.shape[1], image.shape[2]
    taps = kernel_h * kernel_w
    for c in prange(channels):
        plane = image[first_channel + c]
        for rs in range(taps):
            r = rs // kernel_w
            s = rs % kernel_w
            offset = s * dilation_w - pad_left
            lo, hi = valid_output_range(offset, stride_w, in_w, out_w)
            source = columns[c * taps + rs]
            for i in range(rows):
                ih = (first_row + i) * stride_h - pad_top + r * dilation_h
                if ih < 0 or ih >= in_h:
                    continue
                in_row = plane[ih]
                base = i * out_w
                for ow in range(lo, hi):
                    in_row[ow * stride_w + offset] += source[base + ow]


@njit_kernel
def _backward_chunk(grad_chunk, x, weight_t, grad_in, grad_w_g, weight_product, columns, n, g,
                    channels, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w,
                    pad_top, pad_left, first_row, rows, out_w, need_input, need_weight):
    """One (sample, group, row chunk): ``grad_w_g += grad_chunk @ columns.T`` and
    ``grad_in += fold(weight_t @ grad_chunk)``; ``grad_chunk`` is (K/groups, rows*out_w)."""
    if need_weight:
        _unfold(x[n], g * channels, channels, kernel_h, kernel_w, stride_h, stride_w,
                dilation_h, dilation_w, pad_top, pad_left, first_row, rows, out_w, columns)
        np.dot(grad_chunk, columns.T, weight_product)
        grad_w_g += weight_product
    if need_input:
        np.dot(weight_t, grad_chunk, columns)
        _fold(columns, grad_in[n], g * channels, channels, kernel_h, kernel_w, stride_h, stride_w,
              dilation_h, dilation_w, pad_top, pad_left, first_row, rows, out_w)


@njit_kernel
def _im2col_backward_kernel(grad_out3, x, weight_t, grad_in, grad_w2, kernel_h, kernel_w,
                            stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, groups,
                            out_h, out_w, rows_per_chunk, workspace, need_input, need_weight):
    """``grad_out3`` is (N, K, out_h*out_w); ``weight_t`` the weight as (groups, Cg*R*S, K/groups);
    ``grad_w2`` (K, Cg*R*S) is accumulated over samples; ``grad_in`` must start zeroed.
    ``workspace`` holds one chunk's columns, then (when chunking) one chunk's copy of grad_out."""
    batch, in_channels = x.shape[0], x.shape[1]
    out_channels, depth = grad_w2.shape
    channels = in_channels // groups
    out_per_group = out_channels // groups
    column_size = depth * rows_per_chunk * out_w
    weight_product = np.empty((out_per_group, depth), dtype=grad_w2.dtype)
    grad_w2[:, :] = 0
    for n in range(batch):
        for g in range(groups):
            grad_g = grad_out3[n, g * out_per_group:(g + 1) * out_per_group]
            grad_w_g = grad_w2[g * out_per_group:(g + 1) * out_per_group]
            for first_row in range(0, out_h, rows_per_chunk):
                rows = min(rows_per_chunk, out_h - first_row)
                width = rows * out_w
                columns = workspace[:depth * width].reshape((depth, width))
                if rows == out_h:
                    _backward_chunk(grad_g, x, weight_t[g], grad_in, grad_w_g, weight_product,
                                    columns, n, g, channels, kernel_h, kernel_w, stride_h,
                                    stride_w, dilation_h, dilation_w, pad_top, pad_left,
                                    first_row, rows, out_w, need_input, need_weight)
                else:
                    # BLAS wants a contiguous operand: copy this chunk's slab of grad_out.
                    grad_chunk = workspace[column_size:column_size + out_per_group * width]
                    grad_chunk = grad_chunk.reshape((out_per_group, width))
                    grad_chunk[:, :] = grad_g[:, first_row * out_w:first_row * out_w + width]
                    _backward_chunk(grad_chunk, x, weight_t[g], grad_in, grad_w_g,
                                    weight_product, columns, n, g, channels, kernel_h, kernel_w,
                                    stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left,
                                    first_row, rows, out_w, need_input, need_weight)


def _backward(grad_out, x, w, params, need_input, need_weight):
    out_per_group = params.out_channels_per_group
    depth = params.in_channels_per_group * params.kernel_h * params.kernel_w
    grad_out3 = grad_out.reshape(params.batch, params.out_channels, -1)
    if need_input:
        grad_in = np.zeros(params.input_shape, dtype=params.dtype)
        weight_t = np.ascontiguousarray(
            w.reshape(params.groups, out_per_group, depth).transpose(0, 2, 1)
        )
    else:
        grad_in = np.zeros((1, 1, 1, 1), dtype=params.dtype)
        weight_t = np.zeros((params.groups, depth, out_per_group), dtype=params.dtype)
    grad_w2 = np.empty((params.out_channels, depth), dtype=params.dtype)
    if x is None:
        x = np.zeros((1, params.in_channels, 1, 1), dtype=params.dtype)
    rows = rows_per_chunk(params)
    workspace = np.empty((depth + out_per_group) * rows * params.out_w, dtype=params.dtype)
    _im2col_backward_kernel(
        grad_out3, x, weight_t, grad_in, grad_w2, params.kernel_h, params.kernel_w,
        params.stride_h, params.stride_w, params.dilation_h, params.dilation_w, params.pad_top,
        params.pad_left, params.groups, params.out_h, params.out_w, rows, workspace,
        need_input, need_weight,
    )
    return grad_in, grad_w2.reshape(params.weight_shape)


def backward_input(grad_out, w, params):
    """Gradient w.r.t. the (zero-padding form) input: GEMM ``W_g^T @ grad_out`` then col2im.
    ``grad_out`` must have exactly ``params.output_shape``."""
    return _backward(grad_out, None, w, params, True, False)[0]


def backward_weight(grad_out, x, params):
    """Gradient w.r.t. the weight: im2col of the input, then GEMM ``grad_out @ columns^T``."""
    return _backward(grad_out, x, None, params, False, True)[1]


def backward_both(grad_out, x, w, params):
    """Both gradients in one pass over the samples (the unfolded columns are reused)."""
    return _backward(grad_out, x, w, params, True, True)
