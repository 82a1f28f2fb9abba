"""im2col + GEMM: convolution as BLAS matrix products.

Stride 1 (any dilation, enough channels): no unfolding at all.  With the input padded once into a
flat buffer of rows ``padded_w`` long, the (Cg, out_h * padded_w) matrix that kernel tap (r, s)
multiplies is a *strided view* of that buffer starting at ``r*dh*padded_w + s*dw`` with row stride
``padded_h*padded_w``; so the output of group g is ``sum_taps W[r, s, g] (Kg, Cg) @ view(r, s)``,
R*S accumulating GEMMs (``beta = 1``) into a (Kg, out_h * padded_w) scratch whose columns
``ow >= out_w`` (reads that wrapped into the next row) are dropped when the scratch is compacted
into the output, bias added on the way.  This moves no more memory than the input itself, where an
unfold writes R*S copies of it.

Otherwise (strides, very few channels per group) the classic unfold:

For sample n and group g the output block ``out[n, g*Kg:(g+1)*Kg]`` viewed as (Kg, out_h*out_w) is
``weight_g (Kg, Cg*R*S) @ columns (Cg*R*S, out_h*out_w)``.  Row ``(c, r, s)`` of ``columns`` holds the
input samples that tap (c, r, s) meets at every output position, so it is written with contiguous
stores.  When the whole column matrix would exceed the workspace cap, output rows are processed in
chunks; a 1x1 stride-1 unpadded layer needs no unfolding at all (the input already is the matrix).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._blas import gemm_strided
from .._config import get_workspace_limit, njit_kernel, njit_parallel
from ._common import all_finite, valid_output_range

# Below this many input channels per group a tap's GEMM has too short an inner dimension for BLAS
# to run well, and unfolding (inner dimension Cg*R*S) wins.
SHIFTED_TAPS_MIN_CHANNELS = 8
# Below this many output positions per row block (out_h * padded_w: a tap's GEMM's other
# dimension) the R*S thin GEMMs lose to one unfolded GEMM with an R*S times longer inner dimension:
# the small planes of late CNN stages at batch 1 (7x7, 14x14) — docs/measurements.md.
SHIFTED_TAPS_MIN_POSITIONS = 256

NAME = "im2col"


def supports(params) -> str | None:
    """Every conv2d parameter combination."""
    return None


# Priced by the dispatcher's cost model (fastconv.dispatch.model): per-thread counts, float64
# counted double.
COST_FEATURES = ("call", "bytes_moved", "gemm_flops", "gemm_calls", "narrow_gemm_flops")


def cost_features(params, threads: int) -> tuple[float, ...]:
    """The features of the path ``forward`` takes on ``params``: shifted-tap GEMMs or unfold."""
    width = params.dtype.itemsize / 4.0
    itemsize = params.dtype.itemsize
    if is_pointwise(params):
        # forward's first case: a 1x1 stride-1 unpadded layer multiplies the input itself,
        # nothing is unfolded or padded; one GEMM per sample and group
        moved = 0
        gemm_flops = params.flops
        calls = params.batch * params.groups
        inner = params.in_channels_per_group
    elif uses_shifted_taps(params):
        # no unfold: the input is padded once and the GEMMs also compute the padded_w - out_w
        # dropped columns of every output row; one GEMM per tap, sample and group
        moved = (params.batch * params.in_channels * params.padded_h * params.padded_w
                 + params.batch * params.out_channels * params.out_h * params.padded_w)
        gemm_flops = params.flops * params.padded_w / params.out_w
        calls = params.batch * params.groups * params.kernel_h * params.kernel_w
        inner = params.in_channels_per_group
    else:
        depth = params.in_channels_per_group * params.kernel_h * params.kernel_w
        moved = params.batch * params.groups * depth * params.out_h * params.out_w
        gemm_flops = params.flops
        calls = params.batch * params.groups
        inner = depth
    # BLAS runs far below peak when an operand is thin (few output channels or a short inner
    # dimension): its packing and edge handling cost per element, not per multiply-add
    narrow = gemm_flops / min(params.out_channels_per_group, inner)
    return (1.0, moved * itemsize / threads, gemm_flops * width / threads, float(calls),
            narrow * width / threads)


@njit_kernel
def _unfold_tap(image, first_channel, crs, kernel_h, kernel_w, stride_h, stride_w, dilation_h,
                dilation_w, pad_top, pad_left, first_row, rows, out_w, dest):
    """Row ``crs`` = (c, r, s) of the column matrix: the input samples tap (c, r, s) meets at each
    of ``rows`` output rows, zeros where it meets padding."""
    in_h, in_w = image.shape[1], image.shape[2]
    taps = kernel_h * kernel_w
    c = crs // taps
    r = (crs // kernel_w) % kernel_h
    s = crs % kernel_w
    offset = s * dilation_w - pad_left
    lo, hi = valid_output_range(offset, stride_w, in_w, out_w)
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
def _unfold(image, first_channel, channels, kernel_h, kernel_w, stride_h, stride_w,
            dilation_h, dilation_w, pad_top, pad_left, first_row, rows, out_w, columns):
    """Fill ``columns`` (channels*R*S, rows*out_w) from ``image`` (C, H, W); one task per tap."""
    for crs in prange(channels * kernel_h * kernel_w):
        _unfold_tap(image, first_channel, crs, kernel_h, kernel_w, stride_h, stride_w, dilation_h,
                    dilation_w, pad_top, pad_left, first_row, rows, out_w, columns[crs])


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


@njit_parallel
def _pad_flat(x, first_sample, pad_top, pad_left, padded_h, padded_w, padded):
    """Copy samples ``first_sample ...`` of ``x`` into the interior of the zero-bordered flat
    buffer ``padded`` (count, C*padded_h*padded_w + tail); borders and tail stay zero."""
    count = padded.shape[0]
    channels, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    plane = padded_h * padded_w
    for task in prange(count * channels):
        i = task // channels
        c = task % channels
        base = c * plane + pad_top * padded_w + pad_left
        for row in range(in_h):
            start = base + row * padded_w
            padded[i, start:start + in_w] = x[first_sample + i, c, row]


@njit_kernel
def _compact(scratch, bias, out_plane, first_channel, out_h, out_w, padded_w):
    """out_plane[first_channel + k, oh*out_w + ow] = scratch[k, oh*padded_w + ow] + bias[...]."""
    for k in range(scratch.shape[0]):
        channel_bias = bias[first_channel + k]
        dest = out_plane[first_channel + k]
        src = scratch[k]
        for oh in range(out_h):
            for ow in range(out_w):
                dest[oh * out_w + ow] = src[oh * padded_w + ow] + channel_bias


@njit_kernel
def _shifted_taps_kernel(padded, taps, bias, out3, first_sample, groups, kernel_w, padded_h,
                         padded_w, dilation_h, dilation_w, out_h, out_w, scratch):
    """``taps`` is the weight as (R*S, K, Cg); ``padded`` a chunk of samples from ``_pad_flat``."""
    tap_count, out_channels, channels = taps.shape
    out_per_group = out_channels // groups
    plane = padded_h * padded_w
    width = out_h * padded_w
    for i in range(padded.shape[0]):
        sample = padded[i]
        for g in range(groups):
            for tap in range(tap_count):
                r = tap // kernel_w
                s = tap % kernel_w
                gemm_strided(
                    False, False, out_per_group, width, channels, 1.0,
                    taps, (tap * out_channels + g * out_per_group) * channels, channels,
                    sample, g * channels * plane + r * dilation_h * padded_w + s * dilation_w, plane,
                    0.0 if tap == 0 else 1.0, scratch, 0, width,
                )
            _compact(scratch, bias, out3[first_sample + i], g * out_per_group, out_h, out_w,
                     padded_w)


def uses_shifted_taps(params) -> bool:
    """Whether ``forward`` runs the no-unfold stride-1 path (the cost model asks too)."""
    return (
        params.stride_h == params.stride_w == 1
        and params.in_channels_per_group >= SHIFTED_TAPS_MIN_CHANNELS
        and params.out_h * params.padded_w >= SHIFTED_TAPS_MIN_POSITIONS
    )


def _shifted_taps_forward(x, w, bias, params, out3):
    padded_h, padded_w = params.padded_h, params.padded_w
    # a tap's window may run (S-1)*dw elements past the last plane of a sample
    tail = (params.kernel_w - 1) * params.dilation_w
    per_sample = (params.in_channels * padded_h * padded_w + tail) * params.dtype.itemsize
    scratch_bytes = params.out_channels_per_group * params.out_h * padded_w * params.dtype.itemsize
    samples = int(max(1, min(params.batch, (get_workspace_limit() - scratch_bytes) // per_sample)))
    padded = np.zeros((samples, params.in_channels * padded_h * padded_w + tail), params.dtype)
    scratch = np.empty((params.out_channels_per_group, params.out_h * padded_w), params.dtype)
    taps = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(
        params.kernel_h * params.kernel_w, params.out_channels, params.in_channels_per_group
    )
    bias = np.zeros(params.out_channels, params.dtype) if bias is None else bias
    for first in range(0, params.batch, samples):
        chunk = padded[:min(samples, params.batch - first)]
        _pad_flat(x, first, params.pad_top, params.pad_left, padded_h, padded_w, chunk)
        _shifted_taps_kernel(chunk, taps, bias, out3, first, params.groups, params.kernel_w,
                             padded_h, padded_w, params.dilation_h, params.dilation_w,
                             params.out_h, params.out_w, scratch)


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


def is_pointwise(params) -> bool:
    """A 1x1 kernel at stride 1 without padding: the input itself is the GEMM's matrix."""
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
    if is_pointwise(params):
        _pointwise_kernel(x.reshape(params.batch, params.in_channels, -1), w2, out3, params.groups)
    elif uses_shifted_taps(params):
        _shifted_taps_forward(x, w, bias, params, out3)
        return out  # bias already added during compaction
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
# The unfold/fold kernels of this (general) backward path are serial: on a loaded machine a
# parallel region followed at once by a multithreaded OpenBLAS call slowed the GEMMs by an order of
# magnitude (docs/measurements.md).  An isolated test with Numba's TBB layer later showed no such
# slowdown, so this choice deserves a re-measurement on a quiet machine.
@njit_kernel
def _unfold_serial(image, first_channel, channels, kernel_h, kernel_w, stride_h, stride_w,
                   dilation_h, dilation_w, pad_top, pad_left, first_row, rows, out_w, columns):
    """``_unfold`` without the parallel loop (see the note above)."""
    for crs in range(channels * kernel_h * kernel_w):
        _unfold_tap(image, first_channel, crs, kernel_h, kernel_w, stride_h, stride_w, dilation_h,
                    dilation_w, pad_top, pad_left, first_row, rows, out_w, columns[crs])


@njit_kernel
def _fold(columns, image, first_channel, channels, kernel_h, kernel_w, stride_h, stride_w,
          dilation_h, dilation_w, pad_top, pad_left, first_row, rows, out_w):
    """col2im, the adjoint of ``_unfold``: add every row ``(c, r, s)`` of ``columns`` back onto the
    input samples it was read from (serial: see the note above)."""
    in_h, in_w = image.shape[1], image.shape[2]
    taps = kernel_h * kernel_w
    for c in range(channels):
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
def _backward_kernel(grad_out3, x, weight3, grad_in, grad_w2, kernel_h, kernel_w, stride_h,
                     stride_w, dilation_h, dilation_w, pad_top, pad_left, out_h, out_w,
                     rows_per_chunk, columns_buffer, need_input, need_weight):
    """Per (sample, group, chunk of output rows), with G the chunk of ``grad_out3`` (N, K, P):
    ``grad_w2[group] += G @ unfold(x)^T`` and ``grad_in += fold(W_group^T @ G)``.  GEMMs read G
    in place (row stride P) and accumulate into ``grad_w2`` directly (``beta = 1``)."""
    batch, out_channels, plane = grad_out3.shape
    groups, out_per_group, depth = weight3.shape[0], grad_w2.shape[0] // weight3.shape[0], grad_w2.shape[1]
    channels = depth // (kernel_h * kernel_w)
    for n in range(batch):
        for g in range(groups):
            for first_row in range(0, out_h, rows_per_chunk):
                rows = min(rows_per_chunk, out_h - first_row)
                width = rows * out_w
                columns = columns_buffer[:depth * width].reshape((depth, width))
                grad_offset = (n * out_channels + g * out_per_group) * plane + first_row * out_w
                if need_weight:
                    _unfold_serial(x[n], g * channels, channels, kernel_h, kernel_w, stride_h,
                                   stride_w, dilation_h, dilation_w, pad_top, pad_left, first_row,
                                   rows, out_w, columns)
                    gemm_strided(False, True, out_per_group, depth, width, 1.0,
                                 grad_out3, grad_offset, plane, columns, 0, width,
                                 1.0, grad_w2, g * out_per_group * depth, depth)
                if need_input:
                    gemm_strided(True, False, depth, width, out_per_group, 1.0,
                                 weight3, g * out_per_group * depth, depth,
                                 grad_out3, grad_offset, plane, 0.0, columns, 0, width)
                    _fold(columns, grad_in[n], g * channels, channels, kernel_h, kernel_w,
                          stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left,
                          first_row, rows, out_w)


def _backward(grad_out, x, w, params, need_input, need_weight):
    """The general backward: unfold / fold around two GEMMs per (sample, group, row chunk), all in
    one compiled loop (see :func:`_backward_kernel`)."""
    depth = params.in_channels_per_group * params.kernel_h * params.kernel_w
    grad_out3 = np.ascontiguousarray(grad_out).reshape(params.batch, params.out_channels, -1)
    rows = rows_per_chunk(params)
    columns_buffer = np.empty(depth * rows * params.out_w, dtype=params.dtype)
    placeholder = np.zeros((1, 1, 1, 1), dtype=params.dtype)  # for an operand a gradient skips
    grad_in = np.zeros(params.input_shape, dtype=params.dtype) if need_input else placeholder
    grad_w2 = np.zeros((params.out_channels, depth), dtype=params.dtype)
    weight3 = (w.reshape(params.groups, params.out_channels_per_group, depth) if need_input
               else np.zeros((params.groups, 1, 1), dtype=params.dtype))
    _backward_kernel(
        grad_out3, x if need_weight else placeholder, weight3, grad_in, grad_w2,
        params.kernel_h, params.kernel_w, params.stride_h, params.stride_w, params.dilation_h,
        params.dilation_w, params.pad_top, params.pad_left, params.out_h, params.out_w, rows,
        columns_buffer, need_input, need_weight,
    )
    grad_w = grad_w2.reshape(params.weight_shape) if need_weight else None
    return (grad_in if need_input else None), grad_w


# --- backward, stride 1: the adjoint of the shifted-tap forward -------------------------------
# With the output gradient expanded to rows of padded_w (zeros in the dropped columns ow >= out_w),
# the forward's R*S GEMMs transpose directly:
#   grad_W[r, s, group] += G (Kg, L) @ view(r, s)^T (L, Cg)           (per sample)
#   grad_padded[window(r, s)] += W[r, s, group]^T (Cg, Kg) @ G (Kg, L)
# and the input gradient is the interior of grad_padded.  The dropped columns multiply zeros, which
# is exact for finite data only (0 * inf is NaN), so this path runs on finite operands; the unfold
# path above is exact for every value.
@njit_parallel
def _expand_rows(grad_out, first_sample, padded_w, expanded):
    """expanded[i, k, oh*padded_w + ow] = grad_out[first_sample + i, k, oh, ow]; zeros beyond out_w."""
    count, out_channels = expanded.shape[0], expanded.shape[1]
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    for task in prange(count * out_channels):
        i = task // out_channels
        k = task % out_channels
        dest = expanded[i, k]
        for oh in range(out_h):
            dest[oh * padded_w:oh * padded_w + out_w] = grad_out[first_sample + i, k, oh]
            dest[oh * padded_w + out_w:(oh + 1) * padded_w] = 0


@njit_parallel
def _crop_interior(grad_padded, first_sample, pad_top, pad_left, padded_h, padded_w, grad_in):
    count = grad_padded.shape[0]
    channels, in_h, in_w = grad_in.shape[1], grad_in.shape[2], grad_in.shape[3]
    plane = padded_h * padded_w
    for task in prange(count * channels):
        i = task // channels
        c = task % channels
        base = c * plane + pad_top * padded_w + pad_left
        for row in range(in_h):
            start = base + row * padded_w
            grad_in[first_sample + i, c, row] = grad_padded[i, start:start + in_w]


@njit_kernel
def _shifted_taps_backward_kernel(padded, expanded, taps, grad_padded, grad_taps, groups, kernel_w,
                                  padded_h, padded_w, dilation_h, dilation_w, out_h,
                                  need_input, need_weight):
    tap_count, out_channels, channels = taps.shape
    out_per_group = out_channels // groups
    plane = padded_h * padded_w
    width = out_h * padded_w
    for i in range(expanded.shape[0]):
        gradient = expanded[i]
        for g in range(groups):
            for tap in range(tap_count):
                window = (g * channels * plane + (tap // kernel_w) * dilation_h * padded_w
                          + (tap % kernel_w) * dilation_w)
                tap_block = (tap * out_channels + g * out_per_group) * channels
                if need_weight:
                    gemm_strided(False, True, out_per_group, channels, width, 1.0,
                                 gradient, g * out_per_group * width, width,
                                 padded[i], window, plane, 1.0, grad_taps, tap_block, channels)
                if need_input:
                    gemm_strided(True, False, channels, width, out_per_group, 1.0,
                                 taps, tap_block, channels, gradient, g * out_per_group * width, width,
                                 1.0, grad_padded[i], window, plane)


def _shifted_taps_backward(grad_out, x, w, params, need_input, need_weight):
    padded_h, padded_w = params.padded_h, params.padded_w
    tail = (params.kernel_w - 1) * params.dilation_w
    flat = params.in_channels * padded_h * padded_w + tail
    width = params.out_h * padded_w
    per_sample = (flat * (int(need_input) + int(need_weight)) + params.out_channels * width)
    samples = int(max(1, min(params.batch,
                             get_workspace_limit() // (per_sample * params.dtype.itemsize))))
    tap_count = params.kernel_h * params.kernel_w
    if need_input:
        taps = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(
            tap_count, params.out_channels, params.in_channels_per_group)
    else:  # the weight gradient alone never reads the weights (the kernel takes its shape only)
        taps = np.empty((tap_count, params.out_channels, params.in_channels_per_group), params.dtype)
    padded = np.zeros((samples, flat), params.dtype) if need_weight else np.zeros((1, 1), params.dtype)
    grad_padded = np.zeros((samples, flat), params.dtype) if need_input else np.zeros((1, 1), params.dtype)
    expanded = np.empty((samples, params.out_channels * width), params.dtype)
    grad_taps = np.zeros((tap_count, params.out_channels, params.in_channels_per_group), params.dtype)
    grad_in = np.empty(params.input_shape, params.dtype) if need_input else None
    for first in range(0, params.batch, samples):
        count = min(samples, params.batch - first)
        _expand_rows(grad_out, first, padded_w, expanded[:count].reshape(
            count, params.out_channels, width))
        if need_weight:
            _pad_flat(x, first, params.pad_top, params.pad_left, padded_h, padded_w, padded[:count])
        if need_input:
            grad_padded[:count] = 0
        _shifted_taps_backward_kernel(
            padded[:count] if need_weight else padded, expanded[:count], taps,
            grad_padded[:count] if need_input else grad_padded, grad_taps, params.groups,
            params.kernel_w, padded_h, padded_w, params.dilation_h, params.dilation_w,
            params.out_h, need_input, need_weight)
        if need_input:
            _crop_interior(grad_padded[:count], first, params.pad_top, params.pad_left,
                           padded_h, padded_w, grad_in)
    grad_w = None
    if need_weight:
        grad_w = np.ascontiguousarray(grad_taps.reshape(
            params.kernel_h, params.kernel_w, params.out_channels, params.in_channels_per_group
        ).transpose(2, 3, 0, 1))
    return grad_in, grad_w


def _backward_dispatch(grad_out, x, w, params, need_input, need_weight):
    if uses_shifted_taps(params) and all_finite(grad_out, x, w):
        return _shifted_taps_backward(grad_out, x, w, params, need_input, need_weight)
    return _backward(grad_out, x, w, params, need_input, need_weight)


def backward_input(grad_out, w, params):
    """Gradient w.r.t. the (zero-padding form) input.  ``grad_out`` must have exactly
    ``params.output_shape``."""
    return _backward_dispatch(grad_out, None, w, params, True, False)[0]


def backward_weight(grad_out, x, params):
    """Gradient w.r.t. the weight."""
    return _backward_dispatch(grad_out, x, None, params, False, True)[1]


def backward_both(grad_out, x, w, params):
    """Both gradients in one pass over the samples."""
    return _backward_dispatch(grad_out, x, w, params, True, True)
