"""Direct convolution: the defining sum, written out.

Layout: NCHW input, (K, C/groups, R, S) weight, NCHW output.  Three kernel families:

* ``_direct_blocked``: every floating-point problem, any stride, dilation and groups — flattened
  (phase) planes, register tiles of eight output channels (one accumulator for depthwise and
  single images); its input and weight gradients run on the same kernels.
* ``_direct_lanes``: the forward of the layers it suits (``lanes_apply``: 16 or more output
  channels per group, many (input channel, tap) pairs per output) on the lane tile — output
  channels in the vector lanes, positions broadcast from wherever they lie, so strides need no
  phase planes.
* the fused single-channel stride-1 kernel below: integers (the signal API computes them exactly
  in integer arithmetic).

Zero padding is materialised by the blocked kernels (as the definition: 0 * inf = NaN) and clipped
by the single-channel kernel's loops.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from numba import prange

from .._config import get_num_threads, njit_kernel, njit_parallel, runs_serially
from . import _direct_batch_lanes as batch_lanes
from . import _direct_blocked as blocked
from . import _direct_lanes as lanes
from ._common import bias_or_zeros

NAME = "direct"


def supports(params) -> str | None:
    """Every conv2d parameter combination."""
    return None


# The dispatcher's cost model (fastconv.dispatch.model) prices a call as the dot product of these
# features with per-ISA coefficients (seconds per unit).  Counts are per thread, with float64
# counted double because it fills half a vector.
COST_FEATURES = ("call", "parallel_call", "one_channel_flops", "blocked_flops", "blocked_passes",
                 "copied_bytes", "one_channel_positions")


def cost_features(params, threads: int) -> tuple[float, ...]:
    """The features of the path ``forward`` takes on ``params`` (zero-padding form).  A problem
    below the serial threshold runs on the calling thread and saves waking the thread pool, the
    largest fixed cost of a small call (``parallel_call``)."""
    width = params.dtype.itemsize / 4.0
    parallel = 0.0 if runs_serially(params.flops // 2) else 1.0
    if batch_lanes.suits(params):  # samples in the lanes: tile work and two transpositions
        flops, passes, copied = batch_lanes.work(params)
        return (1.0, parallel, 0.0, flops * width / threads, passes / threads, copied / threads, 0.0)
    if lanes.lanes_apply(params):  # output channels in the lanes: priced as tile work
        flops, passes, copied = lanes.work(params)
        return (1.0, parallel, 0.0, flops * width / threads, passes / threads, copied / threads, 0.0)
    if blocked.applies(params):
        # kernels on flattened (phase) planes: they also compute the discarded columns, the zero
        # channels that fill the last block and the lanes of a tile past a task's end; each pass
        # (a register tile, or a sweep over one accumulator) has a fixed cost that dominates on
        # small planes
        # and the padded copy of the input (or its phase planes) they read
        flops, passes = blocked.work(params)
        copied = blocked.copied_bytes(params) / threads
        if params.out_channels_per_group == 1:  # one accumulator per pass: load-bound
            # whatever the taps, every position's accumulator is zeroed, written back and (per-task
            # padding) its input row copied: a cost per position that a 1x1 kernel shows bare
            positions = params.batch * params.out_channels * params.out_h * params.padded_w
            return (1.0, parallel, flops * width / threads, 0.0, passes / threads, copied,
                    positions * width / threads)
        return (1.0, parallel, 0.0, flops * width / threads, passes / threads, copied, 0.0)
    # the fused single-channel kernel (integers), also one accumulator per pass
    return (1.0, parallel, params.flops * width / threads, 0.0, 0.0, 0.0, 0.0)


def weight_gradient_cost_features(params, threads: int) -> tuple[float, ...]:
    """The features of the path ``backward_weight`` takes, on the forward's coefficients: the
    register-tile reduction is priced as tile work of its own operation count, passes and copies
    (``_direct_blocked.weight_tile_work``); the loop kernel, as the forward of the same problem."""
    if not blocked.uses_weight_tiles(params.dtype, params.out_channels_per_group,
                                     params.in_channels_per_group * params.kernel_h
                                     * params.kernel_w):
        return cost_features(params, threads)
    width = params.dtype.itemsize / 4.0
    flops, passes, copied = blocked.weight_tile_work(params)
    parallel = 0.0 if runs_serially(params.flops // 2) else 1.0
    return (1.0, parallel, 0.0, flops * width / threads, passes / threads, copied / threads, 0.0)


def _unsupported(params, what):
    # conv2d, conv2d_backward and the signal API never produce such a problem (they compute in
    # floating point, or in integers with one channel at stride 1)
    return ValueError(
        f"direct: {what} needs floating-point data, or integers with one input channel per group "
        f"at stride 1 and no dilation; got {params.describe()}"
    )


def forward(x, w, bias, params):
    """conv2d of C-contiguous ``x`` (N, C, H, W) with ``w``; zero padding only (see ConvParams)."""
    if single_channel_stride1_applies(params):
        return single_channel_stride1_forward(x, w, bias, params)
    pads = (params.pad_top, params.pad_bottom, params.pad_left, params.pad_right)
    if batch_lanes.suits(params):
        return batch_lanes.correlate(x, w, bias, pads)
    if lanes.lanes_apply(params):
        return lanes.correlate(x, w, bias_or_zeros(bias, params.out_channels, params.dtype), pads,
                               params.groups, (params.stride_h, params.stride_w),
                               (params.dilation_h, params.dilation_w))
    if blocked.applies(params):
        return blocked.correlate(x, w, bias_or_zeros(bias, params.out_channels, params.dtype), pads,
                                 params.groups, (params.stride_h, params.stride_w),
                                 (params.dilation_h, params.dilation_w))
    raise _unsupported(params, "conv2d")


# --- backward ---------------------------------------------------------------------------------
def backward_input(grad_out, w, params):
    """Gradient of conv2d w.r.t. its (zero-padding form) input: (N, C, H, W) of ``params.dtype``.

    At stride 1 without dilation it is a forward correlation of the zero-padded output gradient
    with the flipped, transposed weights, so it runs on the forward's fast kernels (the flattened
    channel-blocked one, or the fused single-channel one for depthwise layers)."""
    transposed = transposed_params(params)
    if transposed is not None:
        return forward(np.ascontiguousarray(grad_out),
                       blocked.transposed_flipped_weight(w, params.groups), None, transposed)
    if blocked.applies(params):  # strided, dilated, or padding beyond the kernel's reach
        return blocked.input_gradient(np.ascontiguousarray(grad_out), w, params)
    raise _unsupported(params, "the input gradient")


def transposed_params(params):
    """The input gradient's problem as a stride-1 forward correlation, or None where it is not one
    (strided or dilated, or forward padding beyond the kernel's reach)."""
    if params.stride_h != 1 or params.stride_w != 1 or params.dilation_h != 1 or params.dilation_w != 1:
        return None
    pads = blocked.backward_input_pads(params)
    if pads is None:
        return None
    return replace(
        params, in_channels=params.out_channels, in_h=params.out_h, in_w=params.out_w,
        out_channels=params.in_channels, pad_top=pads[0], pad_bottom=pads[1], pad_left=pads[2],
        pad_right=pads[3], has_bias=False,
    )


def backward_weight(grad_out, x, params):
    """Gradient of conv2d w.r.t. its weight: (K, C/groups, R, S) of ``params.dtype``."""
    if blocked.gradients_apply(params):
        return blocked.weight_gradient(np.ascontiguousarray(grad_out), x, params)
    raise _unsupported(params, "the weight gradient")

# --- single input channel, stride 1, no dilation ---------------------------------------------
# Integers (see the module docstring):
#
# * input rows are read at unit stride, so every inner loop is a contiguous fused multiply-add;
# * taps are fused: two (or three) kernel rows and four taps along each (then 3, 2, 1) per pass, so
#   each pass over the output row does up to twelve multiply-adds per accumulator load/store, not one;
# * implicit zero padding is materialised per task into a small scratch block (the block's input rows,
#   padded), so the hot loops have no bounds to clip; with no padding the input is read in place.
#
# One task is a block of output rows of one (n, k) plane: big enough to amortise the scratch copy,
# small enough to give every thread work even for a single plane.


def single_channel_stride1_applies(params) -> bool:
    # Floating-point problems run faster on _direct_blocked's kernels: one output channel per group
    # (depthwise layers, single images) on its one-accumulator kernel, more on its register tiles,
    # even when two or three output channels per input channel leave most of a tile's eight empty
    # (docs/measurements.md).  This kernel keeps integers: exact integer arithmetic for the
    # signal API.
    return (
        params.in_channels_per_group == 1
        and params.stride_h == params.stride_w == 1
        and params.dilation_h == params.dilation_w == 1
        and not blocked.applies(params)
    )


@njit_kernel
def _accumulate_kernel_row(acc, src, first_col, taps, out_w):
    """acc[ow] += sum_s taps[s] * src[first_col + ow + s] for ow < out_w.  Taps are fused in fours so the accumulator is loaded and stored once per four.

    The shifted inputs are taken as slices before each loop so that the loop indexes with ``ow``
    alone: an index ``ow + s`` with ``s`` not provably >= 0 makes Numba emit its negative-index
    wrap-around select, and LLVM then refuses to vectorise the loop."""
    kernel_w = taps.shape[0]
    s = 0
    while s + 4 <= kernel_w:
        t0, t1, t2, t3 = taps[s], taps[s + 1], taps[s + 2], taps[s + 3]
        x0, x1, x2, x3 = src[first_col + s:], src[first_col + s + 1:], src[first_col + s + 2:], src[first_col + s + 3:]
        for ow in range(out_w):
            acc[ow] += t0 * x0[ow] + t1 * x1[ow] + t2 * x2[ow] + t3 * x3[ow]
        s += 4
    remaining = kernel_w - s
    if remaining == 3:
        t0, t1, t2 = taps[s], taps[s + 1], taps[s + 2]
        x0, x1, x2 = src[first_col + s:], src[first_col + s + 1:], src[first_col + s + 2:]
        for ow in range(out_w):
            acc[ow] += t0 * x0[ow] + t1 * x1[ow] + t2 * x2[ow]
    elif remaining == 2:
        t0, t1 = taps[s], taps[s + 1]
        x0, x1 = src[first_col + s:], src[first_col + s + 1:]
        for ow in range(out_w):
            acc[ow] += t0 * x0[ow] + t1 * x1[ow]
    elif remaining == 1:
        t0 = taps[s]
        x0 = src[first_col + s:]
        for ow in range(out_w):
            acc[ow] += t0 * x0[ow]


@njit_kernel
def _accumulate_two_kernel_rows(acc, src_a, src_b, first_col, taps_a, taps_b, out_w):
    """Two kernel rows in one pass: acc[ow] += sum_s taps_a[s] * src_a[ow + s] + taps_b[s] *
    src_b[ow + s].  Eight multiply-adds per load/store of the accumulator for the four-tap groups;
    the same slicing as ``_accumulate_kernel_row`` keeps every loop vectorisable."""
    kernel_w = taps_a.shape[0]
    s = 0
    while s + 4 <= kernel_w:
        a0, a1, a2, a3 = taps_a[s], taps_a[s + 1], taps_a[s + 2], taps_a[s + 3]
        b0, b1, b2, b3 = taps_b[s], taps_b[s + 1], taps_b[s + 2], taps_b[s + 3]
        xa0, xa1, xa2, xa3 = src_a[first_col + s:], src_a[first_col + s + 1:], src_a[first_col + s + 2:], src_a[first_col + s + 3:]
        xb0, xb1, xb2, xb3 = src_b[first_col + s:], src_b[first_col + s + 1:], src_b[first_col + s + 2:], src_b[first_col + s + 3:]
        for ow in range(out_w):
            acc[ow] += (a0 * xa0[ow] + a1 * xa1[ow] + a2 * xa2[ow] + a3 * xa3[ow]
                        + b0 * xb0[ow] + b1 * xb1[ow] + b2 * xb2[ow] + b3 * xb3[ow])
        s += 4
    remaining = kernel_w - s
    if remaining == 3:
        a0, a1, a2 = taps_a[s], taps_a[s + 1], taps_a[s + 2]
        b0, b1, b2 = taps_b[s], taps_b[s + 1], taps_b[s + 2]
        xa0, xa1, xa2 = src_a[first_col + s:], src_a[first_col + s + 1:], src_a[first_col + s + 2:]
        xb0, xb1, xb2 = src_b[first_col + s:], src_b[first_col + s + 1:], src_b[first_col + s + 2:]
        for ow in range(out_w):
            acc[ow] += (a0 * xa0[ow] + a1 * xa1[ow] + a2 * xa2[ow]
                        + b0 * xb0[ow] + b1 * xb1[ow] + b2 * xb2[ow])
    elif remaining == 2:
        a0, a1, b0, b1 = taps_a[s], taps_a[s + 1], taps_b[s], taps_b[s + 1]
        xa0, xa1, xb0, xb1 = src_a[first_col + s:], src_a[first_col + s + 1:], src_b[first_col + s:], src_b[first_col + s + 1:]
        for ow in range(out_w):
            acc[ow] += a0 * xa0[ow] + a1 * xa1[ow] + b0 * xb0[ow] + b1 * xb1[ow]
    elif remaining == 1:
        a0, b0 = taps_a[s], taps_b[s]
        xa0, xb0 = src_a[first_col + s:], src_b[first_col + s:]
        for ow in range(out_w):
            acc[ow] += a0 * xa0[ow] + b0 * xb0[ow]


@njit_kernel
def _accumulate_three_kernel_rows(acc, src_a, src_b, src_c, first_col, taps_a, taps_b,
                                  taps_c, out_w):
    """Three kernel rows in one pass (odd kernel heights end with one, so a 3x3 kernel is a single
    pass of nine fused multiply-adds); otherwise as ``_accumulate_two_kernel_rows``."""
    kernel_w = taps_a.shape[0]
    s = 0
    while s + 4 <= kernel_w:
        a0, a1, a2, a3 = taps_a[s], taps_a[s + 1], taps_a[s + 2], taps_a[s + 3]
        b0, b1, b2, b3 = taps_b[s], taps_b[s + 1], taps_b[s + 2], taps_b[s + 3]
        c0, c1, c2, c3 = taps_c[s], taps_c[s + 1], taps_c[s + 2], taps_c[s + 3]
        xa0, xa1, xa2, xa3 = src_a[first_col + s:], src_a[first_col + s + 1:], src_a[first_col + s + 2:], src_a[first_col + s + 3:]
        xb0, xb1, xb2, xb3 = src_b[first_col + s:], src_b[first_col + s + 1:], src_b[first_col + s + 2:], src_b[first_col + s + 3:]
        xc0, xc1, xc2, xc3 = src_c[first_col + s:], src_c[first_col + s + 1:], src_c[first_col + s + 2:], src_c[first_col + s + 3:]
        for ow in range(out_w):
            acc[ow] += (a0 * xa0[ow] + a1 * xa1[ow] + a2 * xa2[ow] + a3 * xa3[ow]
                        + b0 * xb0[ow] + b1 * xb1[ow] + b2 * xb2[ow] + b3 * xb3[ow]
                        + c0 * xc0[ow] + c1 * xc1[ow] + c2 * xc2[ow] + c3 * xc3[ow])
        s += 4
    remaining = kernel_w - s
    if remaining == 3:
        a0, a1, a2 = taps_a[s], taps_a[s + 1], taps_a[s + 2]
        b0, b1, b2 = taps_b[s], taps_b[s + 1], taps_b[s + 2]
        c0, c1, c2 = taps_c[s], taps_c[s + 1], taps_c[s + 2]
        xa0, xa1, xa2 = src_a[first_col + s:], src_a[first_col + s + 1:], src_a[first_col + s + 2:]
        xb0, xb1, xb2 = src_b[first_col + s:], src_b[first_col + s + 1:], src_b[first_col + s + 2:]
        xc0, xc1, xc2 = src_c[first_col + s:], src_c[first_col + s + 1:], src_c[first_col + s + 2:]
        for ow in range(out_w):
            acc[ow] += (a0 * xa0[ow] + a1 * xa1[ow] + a2 * xa2[ow]
                        + b0 * xb0[ow] + b1 * xb1[ow] + b2 * xb2[ow]
                        + c0 * xc0[ow] + c1 * xc1[ow] + c2 * xc2[ow])
    elif remaining == 2:
        a0, a1, b0, b1 = taps_a[s], taps_a[s + 1], taps_b[s], taps_b[s + 1]
        c0, c1 = taps_c[s], taps_c[s + 1]
        xa0, xa1, xb0, xb1 = src_a[first_col + s:], src_a[first_col + s + 1:], src_b[first_col + s:], src_b[first_col + s + 1:]
        xc0, xc1 = src_c[first_col + s:], src_c[first_col + s + 1:]
        for ow in range(out_w):
            acc[ow] += (a0 * xa0[ow] + a1 * xa1[ow] + b0 * xb0[ow] + b1 * xb1[ow]
                        + c0 * xc0[ow] + c1 * xc1[ow])
    elif remaining == 1:
        a0, b0, c0 = taps_a[s], taps_b[s], taps_c[s]
        xa0, xb0, xc0 = src_a[first_col + s:], src_b[first_col + s:], src_c[first_col + s:]
        for ow in range(out_w):
            acc[ow] += a0 * xa0[ow] + b0 * xb0[ow] + c0 * xc0[ow]


@njit_kernel
def _accumulate_kernel(acc, rows, first_row, taps, first_col, width):
    """acc[:width] += correlation of ``rows[first_row + r, first_col + ow + s]`` with every kernel
    row of ``taps`` (R, S): kernel rows in pairs, the last three together when R is odd.  Rows are
    passed whole (``rows[i]`` keeps Numba's contiguous layout; a column slice would not) with the
    column offset applied inside."""
    kernel_h = taps.shape[0]
    r = 0
    while kernel_h - r >= 2 and kernel_h - r != 3:
        _accumulate_two_kernel_rows(acc, rows[first_row + r], rows[first_row + r + 1], first_col,
                                    taps[r], taps[r + 1], width)
        r += 2
    if kernel_h - r == 3:
        _accumulate_three_kernel_rows(
            acc, rows[first_row + r], rows[first_row + r + 1], rows[first_row + r + 2], first_col,
            taps[r], taps[r + 1], taps[r + 2], width,
        )
    elif kernel_h - r == 1:
        _accumulate_kernel_row(acc, rows[first_row + r], first_col, taps[r], width)


@njit_parallel
def _single_channel_stride1_kernel(x, w, bias, out, pad_top, pad_left, out_per_group, block_rows):
    batch, _, in_h, in_w = x.shape
    out_channels, _, kernel_h, kernel_w = w.shape
    out_h, out_w = out.shape[2], out.shape[3]
    blocks = (out_h + block_rows - 1) // block_rows
    padded_w = out_w + kernel_w - 1
    # Interior columns [inner_lo, inner_hi): every tap reads inside the input row.  When the border
    # columns are few for the kernel's size, rows are read in place (no copy) and only the few border columns and the
    # border rows' missing kernel rows are handled separately; otherwise (big kernel, small input)
    # a zero-padded scratch copy of the block's rows keeps every loop vectorised.
    inner_lo = min(max(0, pad_left), out_w)
    inner_hi = max(inner_lo, min(out_w, in_w - kernel_w + 1 + pad_left))
    # Scalar border work ~ border columns * R * S per row against a copy of ~padded_w per row.
    border_cols = out_w - (inner_hi - inner_lo)
    in_place = inner_hi > inner_lo and border_cols * kernel_h * kernel_w <= 2 * padded_w
    for task in prange(batch * out_channels * blocks):
        block = task % blocks
        k = (task // blocks) % out_channels
        n = task // (blocks * out_channels)
        plane = x[n, k // out_per_group]
        taps = w[k, 0]
        oh0 = block * block_rows
        oh1 = min(out_h, oh0 + block_rows)
        if in_place:
            for oh in range(oh0, oh1):
                acc = out[n, k, oh]
                acc[:] = bias[k]
                first_ih = oh - pad_top
                r_lo = max(0, -first_ih)
                r_hi = min(kernel_h, in_h - first_ih)
                inner = acc[inner_lo:inner_hi]
                width = inner_hi - inner_lo
                if r_lo == 0 and r_hi == kernel_h:
                    _accumulate_kernel(inner, plane, first_ih, taps, inner_lo - pad_left, width)
                else:
                    for r in range(r_lo, r_hi):
                        _accumulate_kernel_row(inner, plane[first_ih + r], inner_lo - pad_left,
                                               taps[r], width)
                # border columns: clipped taps, scalar (at most R*S per column, few columns)
                for border in range(out_w - width):
                    ow = border if border < inner_lo else border + width
                    total = acc[ow]
                    for r in range(r_lo, r_hi):
                        in_row = plane[first_ih + r]
                        for s in range(kernel_w):
                            iw = ow - pad_left + s
                            if 0 <= iw < in_w:
                                total += taps[r, s] * in_row[iw]
                    acc[ow] = total
        else:
            span = oh1 - oh0 + kernel_h - 1
            # rows oh0 - pad_top .. + span of the zero-padded plane, columns -pad_left .. + padded_w;
            # only the padding is zeroed: a full memset would double the cost of the copy
            source = np.empty((span, padded_w), dtype=x.dtype)
            first_col = min(max(0, pad_left), padded_w)
            last_col = max(first_col, min(padded_w, in_w + pad_left))
            for t in range(span):
                ih = oh0 + t - pad_top
                if 0 <= ih < in_h:
                    source[t, :first_col] = 0
                    # a slice copy: an index ``j - pad_left`` would defeat vectorisation (see above)
                    source[t, first_col:last_col] = plane[ih, first_col - pad_left:last_col - pad_left]
                    source[t, last_col:] = 0
                else:
                    source[t, :] = 0
            for oh in range(oh0, oh1):
                acc = out[n, k, oh]
                acc[:] = bias[k]
                _accumulate_kernel(acc, source, oh - oh0, taps, 0, out_w)


def single_channel_block_rows(params) -> int:
    """Output rows per task: about four tasks per thread over all planes, at least 8 rows so the
    scratch halo (R - 1 rows) stays small next to the block."""
    planes = params.batch * params.out_channels
    blocks_wanted = max(1, -(-4 * get_num_threads() // planes))
    rows = -(-params.out_h // blocks_wanted)
    return int(max(1, min(params.out_h, max(rows, 8))))


def single_channel_stride1_forward(x, w, bias, params):
    """conv2d for one input channel per group, stride 1, no dilation (see the note above)."""
    out = np.empty(params.output_shape, dtype=params.dtype)
    _single_channel_stride1_kernel(
        x, w, bias_or_zeros(bias, params.out_channels, params.dtype), out,
        params.pad_top, params.pad_left, params.out_channels_per_group,
        single_channel_block_rows(params),
    )
    return out
