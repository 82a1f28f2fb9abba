"""Direct 3-D convolution (conv3d) and its gradients on the padded, flattened volume of each
channel.

Layout: the input is padded once (zeros or a padding mode, :func:`fastconv._padding.pad_ncdhw`) to
``(N, C, Dp, Hp, Wp)`` and each channel's volume read as one flat vector, as in ``direct_nd``.  A
tap ``(t, r, s)`` of output depth slice ``od`` then reads, for every output position of that slice,
the element at a fixed offset ``(od*stride_d + t*dil_d)*Hp*Wp + r*dil_h*Wp + s*dil_w`` from the
position's own place:

* stride 1 in height and width: the whole slice is one contiguous vector of ``(OH-1)*Wp + OW``
  positions (the ``Wp - OW`` columns at the end of each row are computed and thrown away, like the
  2-D direct kernel's flattened plane), so every tap is one shifted contiguous multiply-add; the
  vector is cut into L1-sized chunks;
* otherwise each output row is a vector of ``OW`` elements read with step ``stride_w``.

One parallel task is (sample, block of up to four output channels of one group, output depth
slice, chunk or row): each loaded input vector feeds four accumulators, and the task's
accumulators are written once, cropped, with the bias.  Depth stride costs nothing: it only moves the slice's base.

The input gradient is the forward kernel itself, once per stride phase, on the zero-framed output
gradient with the taps that reach that phase flipped and their channel axes swapped (the
transposed correlation, with no zeros multiplied at any stride); the weight gradient is one task
per (output channel, input channel of its group, kernel plane) summing dot products over the
batch.  Every
kernel keeps float32 in float32.
"""
from __future__ import annotations

import itertools

import numpy as np
from numba import prange

from .._config import njit_parallel, runs_serially
from .._cpu import tile_shape_for, lane_tile_shape
from .._padding import pad_ncdhw, unpad_gradient_ncdhw
from . import _direct_blocked as blocked
from . import _direct_lanes as lanes
from ._common import all_finite, bias_or_zeros
from .direct_nd import BLOCK_BYTES

CHANNEL_BLOCK = 4
"""Output channels per task: each loaded input vector feeds this many accumulators."""


def chunk_positions(itemsize: int) -> int:
    """Flat output positions per task on the stride-1 path: the four channels' accumulators take
    half of a 32 KiB L1 data cache (``direct_nd.BLOCK_BYTES``), leaving room for the input."""
    return max(64, BLOCK_BYTES // (CHANNEL_BLOCK * itemsize))


@njit_parallel
def _forward_padded(x_flat, padded_h, padded_w, weight, bias, has_bias, out,
                    stride_d, stride_h, stride_w, dil_d, dil_h, dil_w, chunk):
    """``out = conv3d(x, weight) + bias`` with ``x_flat`` the (N, C, Dp*Hp*Wp) padded input (no
    implicit padding left).  ``out`` (N, K, OD, OH, OW) is written entirely.

    A task is (sample, channel block, output depth slice, piece).  At stride 1 in height and width
    a piece is ``chunk`` consecutive flat positions of the slice (row pitch Wp; positions past
    ``OW`` in a row are computed and dropped); otherwise a piece is one output row, read with step
    ``stride_w``."""
    batch, in_channels, _ = x_flat.shape
    out_channels, channels_per_group, kernel_t, kernel_r, kernel_s = weight.shape
    _, _, out_d, out_h, out_w = out.shape
    groups = in_channels // channels_per_group
    out_per_group = out_channels // groups
    blocks_per_group = (out_per_group + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
    plane_size = padded_h * padded_w
    flat_rows = stride_h == 1 and stride_w == 1
    flat_length = (out_h - 1) * padded_w + out_w
    if flat_rows:
        pieces, piece_capacity, step = (flat_length + chunk - 1) // chunk, min(chunk, flat_length), 1
    else:
        pieces, piece_capacity, step = out_h, out_w, stride_w
    tasks = batch * groups * blocks_per_group * out_d * pieces
    for task in prange(tasks):
        piece = task % pieces
        rest = task // pieces
        od = rest % out_d
        rest //= out_d
        block = rest % blocks_per_group
        rest //= blocks_per_group
        group = rest % groups
        n = rest // groups
        k0 = group * out_per_group + block * CHANNEL_BLOCK
        k_count = min(CHANNEL_BLOCK, (group + 1) * out_per_group - k0)
        if flat_rows:
            first = piece * chunk  # first flat position of the piece
            length = min(chunk, flat_length - first)
            piece_offset = first
        else:
            first = 0
            length = out_w
            piece_offset = piece * stride_h * padded_w
        acc = np.zeros((CHANNEL_BLOCK, piece_capacity), dtype=x_flat.dtype)
        acc0, acc1, acc2, acc3 = acc[0], acc[1], acc[2], acc[3]
        for c in range(channels_per_group):
            volume = x_flat[n, group * channels_per_group + c]
            for t in range(kernel_t):
                plane_base = (od * stride_d + t * dil_d) * plane_size + piece_offset
                for r in range(kernel_r):
                    for s in range(kernel_s):
                        source = plane_base + r * dil_h * padded_w + s * dil_w
                        if k_count == CHANNEL_BLOCK:
                            w0 = weight[k0, c, t, r, s]
                            w1 = weight[k0 + 1, c, t, r, s]
                            w2 = weight[k0 + 2, c, t, r, s]
                            w3 = weight[k0 + 3, c, t, r, s]
                            if step == 1:
                                vector = volume[source:source + length]
                                for i in range(length):
                                    value = vector[i]
                                    acc0[i] += w0 * value
                                    acc1[i] += w1 * value
                                    acc2[i] += w2 * value
                                    acc3[i] += w3 * value
                            else:
                                for i in range(length):
                                    value = volume[source + i * step]
                                    acc0[i] += w0 * value
                                    acc1[i] += w1 * value
                                    acc2[i] += w2 * value
                                    acc3[i] += w3 * value
                        else:  # the group's last, partial block (every block when depthwise)
                            for kk in range(k_count):
                                tap = weight[k0 + kk, c, t, r, s]
                                lane = acc[kk]
                                if step == 1:
                                    vector = volume[source:source + length]
                                    for i in range(length):
                                        lane[i] += tap * vector[i]
                                else:
                                    for i in range(length):
                                        lane[i] += tap * volume[source + i * step]
        for kk in range(k_count):
            lane = acc[kk]
            plane_out = out[n, k0 + kk, od]
            shift = bias[k0 + kk] if has_bias else bias[0]  # bias[0] is a zero when has_bias is False
            if flat_rows:
                oh = first // padded_w
                ow = first - oh * padded_w
                for i in range(length):
                    if ow < out_w:
                        plane_out[oh, ow] = lane[i] + shift
                    ow += 1
                    if ow == padded_w:
                        ow = 0
                        oh += 1
            else:
                row_out = plane_out[piece]
                for i in range(length):
                    row_out[i] = lane[i] + shift


@njit_parallel
def _weight_gradient_padded(x_flat, padded_h, padded_w, grad_rows, length, grad_weight, out_d,
                            row_pitch, step, stride_d, dil_d, dil_h, dil_w):
    """``grad_weight[k, c, t, r, s] = sum over n, od, oh, ow of grad[n, k, od, oh, ow] *
    x[n, group*C/groups + c, od*sd + t*dd, oh*sh + r*dh, ow*sw + s*dw]`` on the padded input.

    ``grad_rows`` (N, K, OD*rows, pitch) holds the output gradient as the vectors (their first
    ``length`` elements) each tap is dotted with: one per depth slice, widened to row pitch Wp
    with zeros past ``OW`` (stride 1 in height and width, finite input only: a zero times an Inf
    read past a row would be NaN), or one per output row (read from the input every
    ``row_pitch`` elements with step ``step``).
    One task per (k, c, t): its taps are private, so the batch reduction needs no atomics, and
    the kernel depth multiplies the tasks of a layer with few channels.  A dot product starts from
    its first term rather than a zero literal so that float32 stays float32."""
    batch, in_channels, _ = x_flat.shape
    out_channels, channels_per_group, kernel_t, kernel_r, kernel_s = grad_weight.shape
    vectors = grad_rows.shape[2]
    rows = vectors // out_d
    groups = in_channels // channels_per_group
    out_per_group = out_channels // groups
    plane_size = padded_h * padded_w
    for task in prange(out_channels * channels_per_group * kernel_t):
        t = task % kernel_t
        k = task // (channels_per_group * kernel_t)
        c = (task // kernel_t) % channels_per_group
        channel = (k // out_per_group) * channels_per_group + c
        taps = np.zeros((kernel_r, kernel_s), dtype=grad_weight.dtype)
        for n in range(batch):
            volume = x_flat[n, channel]
            for vector_index in range(vectors):
                od = vector_index // rows
                row = vector_index - od * rows
                gradient = grad_rows[n, k, vector_index]
                row_base = (od * stride_d + t * dil_d) * plane_size + row * row_pitch
                for r in range(kernel_r):
                    for s in range(kernel_s):
                        source = row_base + r * dil_h * padded_w + s * dil_w
                        if step == 1:
                            window = volume[source:source + length]
                            dot = gradient[0] * window[0]
                            for i in range(1, length):
                                dot += gradient[i] * window[i]
                        else:
                            dot = gradient[0] * volume[source]
                            for i in range(1, length):
                                dot += gradient[i] * volume[source + i * step]
                        taps[r, s] += dot
        grad_weight[k, c, t] = taps


@njit_parallel
def _input_gradient_scatter(grad, weight, grad_padded, stride_d, stride_h, stride_w,
                            dil_d, dil_h, dil_w):
    """grad_padded (zeroed by the caller) += every product ``weight * grad`` of the definition,
    scattered to the padded input sample it came from.  Used when the weight holds NaN or Inf:
    the phase correlations multiply taps by the zeros framing the gradient, and ``0 * inf`` would
    put NaN where the definition has no term.  One task per (sample, input channel), so the
    scatter never races."""
    batch, out_channels, out_d, out_h, out_w = grad.shape
    in_channels = grad_padded.shape[1]
    channels_per_group, kernel_t, kernel_r, kernel_s = weight.shape[1:]
    groups = in_channels // channels_per_group
    out_per_group = out_channels // groups
    for task in prange(batch * in_channels):
        n = task // in_channels
        channel = task % in_channels
        group = channel // channels_per_group
        c = channel % channels_per_group
        target = grad_padded[n, channel]
        for k in range(group * out_per_group, (group + 1) * out_per_group):
            for od in range(out_d):
                for oh in range(out_h):
                    grad_row = grad[n, k, od, oh]
                    for t in range(kernel_t):
                        for r in range(kernel_r):
                            row = target[od * stride_d + t * dil_d, oh * stride_h + r * dil_h]
                            for s in range(kernel_s):
                                tap = weight[k, c, t, r, s]
                                for ow in range(out_w):
                                    row[ow * stride_w + s * dil_w] += tap * grad_row[ow]


def _padded_flat(x, params):
    """The input padded as ``params`` says (every mode, zeros included) and flattened per channel."""
    padded = pad_ncdhw(x, params.pads, params.padding_mode) if any(params.pads) else x
    return padded.reshape(padded.shape[0], padded.shape[1], -1), padded.shape[-3:]


def _run_forward(x_flat, padded_dhw, weight, bias, out, stride, dilation):
    if tuple(stride) != (1, 1, 1) and _runs_on_lanes(x_flat, weight, out):
        _run_lanes(x_flat, padded_dhw, weight, bias, out, stride, dilation)
        return
    if _runs_on_tiles(x_flat, weight, stride):
        _run_tiles(x_flat, padded_dhw, weight, bias, out, dilation)
        return
    has_bias = bias is not None
    bias_values = bias if has_bias else np.zeros(1, dtype=x_flat.dtype)
    _forward_padded(x_flat, padded_dhw[1], padded_dhw[2], weight, bias_values, has_bias, out,
                    *stride, *dilation, chunk_positions(x_flat.dtype.itemsize))


# --- the lane tile: output channels in the vector lanes, any stride -----------------------------
# The 2-D direct backend's lane kernel (``_direct_lanes``) takes a layer of any number of
# dimensions as two lists of offsets into the flattened padded volumes: one per (input channel,
# tap) pair and one per output position (``od*sd*Hp*Wp + oh*sh*Wp + ow*sw``).  So every stride and
# dilation runs on it, no dropped rows or columns are computed and the sums land in the output's
# own layout.  It runs the strided layers it suits (``_direct_lanes.suits``: enough channels,
# pairs and positions), which the loop kernel below took at a tenth of the speed; at stride 1 the
# tall-plane tile kernel was as fast (32 channels, k3) or faster (one input channel, k5: its
# positions in the lanes load one vector per tap where the lane tile broadcasts twelve values).
def _position_offsets(out_size, stride, padded_h, padded_w):
    """Offset of every output position (depth, row, column order) in a padded volume."""
    d, h, w = np.meshgrid(*(np.arange(size) for size in out_size), indexing="ij")
    return (d * stride[0] * padded_h * padded_w + h * stride[1] * padded_w
            + w * stride[2]).ravel().astype(np.int64)


def _runs_on_lanes(x_flat, weight, out) -> bool:
    groups = x_flat.shape[1] // weight.shape[1]
    return lanes.suits(x_flat.dtype, weight.shape[0] // groups, int(np.prod(weight.shape[1:])),
                       int(np.prod(out.shape)) // out.shape[1])


def _run_lanes(x_flat, padded_dhw, weight, bias, out, stride, dilation):
    batch, channels, volume = x_flat.shape
    out_channels, in_per_group = weight.shape[:2]
    groups = channels // in_per_group
    _, padded_h, padded_w = padded_dhw
    shape = lane_tile_shape(out_channels // groups, x_flat.dtype.itemsize)
    packed = lanes.packed_weight(weight, groups, shape)
    run_pairs = lanes.pairs_per_run(packed.shape[2], packed.shape[3], x_flat.dtype.itemsize)
    taps = _tap_offsets(in_per_group, volume, weight.shape[2:], dilation, padded_h, padded_w)
    positions = _position_offsets(out.shape[2:], stride, padded_h, padded_w)
    lanes.run(x_flat.reshape(batch, channels * volume), packed,
              lanes.with_sentinels(taps, run_pairs),
              lanes.padded_positions(positions, shape.channels),
              bias_or_zeros(bias, out_channels, out.dtype), out.reshape(batch, out_channels, -1),
              in_per_group * volume, run_pairs, shape)


# --- stride 1: the 2-D register-tile kernel on the volume read as one tall plane ----------------
# A padded volume (Dp, Hp, Wp) is a plane of Dp * Hp rows of Wp values, and tap (c, t, r, s) of a
# stride-1 layer is one fixed offset into it: c * volume + t*dil_d * Hp*Wp + r*dil_h * Wp +
# s*dil_w.  So the forward is the 2-D direct backend's register-tile kernel
# (``_direct_blocked``: C output channels x V vectors of positions in registers, every tap one
# contiguous shifted load) over (out_d - 1) * Hp + out_h output rows — each depth slice's
# ``Hp - out_h`` bottom rows are computed and dropped like the plane's discarded columns; the last
# slice's are not computed (their taps would read past the volume).  Layers with one output
# channel per group keep the four-channel kernel below (a tile would be mostly zero channels).
def _runs_on_tiles(x_flat, weight, stride) -> bool:
    groups = x_flat.shape[1] // weight.shape[1]
    return (tuple(stride) == (1, 1, 1) and x_flat.dtype.kind == "f"
            and weight.shape[0] // groups > 1)


def _tap_offsets(in_per_group, volume, kernel, dilation, padded_h, padded_w):
    """Offset of every tap (c, t, r, s), in that order, into a group's flattened volumes."""
    (kernel_t, kernel_r, kernel_s), (dil_d, dil_h, dil_w) = kernel, dilation
    c, t, r, s = np.meshgrid(np.arange(in_per_group), np.arange(kernel_t), np.arange(kernel_r),
                             np.arange(kernel_s), indexing="ij")
    offsets = (c * volume + t * dil_d * padded_h * padded_w + r * dil_h * padded_w + s * dil_w)
    return np.ascontiguousarray(offsets.ravel(), dtype=np.int64)


def _run_tiles(x_flat, padded_dhw, weight, bias, out, dilation):
    batch, channels, volume = x_flat.shape
    out_channels, in_per_group = weight.shape[:2]
    kernel = weight.shape[2:]
    groups = channels // in_per_group
    per_group_out = out_channels // groups
    _, padded_h, padded_w = padded_dhw
    out_d, out_h, out_w = out.shape[2:]
    rows = (out_d - 1) * padded_h + out_h
    offsets = _tap_offsets(in_per_group, volume, kernel, dilation, padded_h, padded_w)
    serial = runs_serially(out.size * offsets.shape[0])
    run, block = blocked.forward_kernel(x_flat.dtype, serial, per_group_out)
    packed = blocked.pack_weight(weight.reshape(out_channels, in_per_group, -1, kernel[2]),
                                 groups, block)
    packed = packed.reshape(groups, packed.shape[1], -1, block)
    if serial:
        rows_per_task = rows
    else:
        rows_per_task = blocked.tile_rows_per_task(rows, padded_w, x_flat.dtype.itemsize,
                                                   batch * groups, x_flat.dtype,
                                                   tile_shape_for(per_group_out))
    tall = np.empty((batch, out_channels, rows, out_w), dtype=out.dtype)
    run(x_flat.reshape(batch, channels * volume), packed, offsets,
        bias_or_zeros(bias, out_channels, out.dtype), tall, (kernel[2] - 1) * dilation[2] + 1,
        padded_w, rows_per_task)
    for d in range(out_d):  # slice copies: a fancy-indexed gather of the rows cost 3x more
        out[:, :, d] = tall[:, :, d * padded_h:d * padded_h + out_h]


def forward(x, weight, bias, params):
    """conv3d of the C-contiguous (N, C, D, H, W) ``x`` in ``params.dtype``."""
    x_flat, padded_dhw = _padded_flat(x, params)
    out = np.empty(params.output_shape, dtype=params.dtype)
    _run_forward(x_flat, padded_dhw, weight, bias, out, params.stride, params.dilation)
    return out


def backward_weight(grad, x, params):
    """Gradient w.r.t. the weight, (K, C/groups, T, R, S)."""
    x_flat, (_, padded_h, padded_w) = _padded_flat(x, params)
    batch, out_channels, out_d, out_h, out_w = grad.shape
    stride_d, stride_h, stride_w = params.stride
    finite = all_finite(x)
    # the register tiles reduce a large volume a segment at a time (L2-sized), the loop kernel
    # sweeps it whole once per four taps
    tiles = blocked.uses_weight_tiles(x_flat.dtype, out_channels // params.groups,
                                      params.in_channels_per_group * int(np.prod(params.kernel)))
    if (tuple(params.stride) == (1, 1, 1) and finite and x_flat.dtype.kind == "f" and (
            tiles or x_flat.shape[2] * (1 + blocked.CHANNEL_BLOCK) * x_flat.itemsize
            <= TALL_WEIGHT_BYTES)):
        return _weight_gradient_tall(grad, x_flat, (padded_h, padded_w), params)
    per_group_out = out_channels // params.groups
    pairs = params.in_channels_per_group * int(np.prod(params.kernel))
    if tuple(params.stride) != (1, 1, 1) and blocked.uses_weight_tiles(x_flat.dtype, per_group_out,
                                                                     pairs):
        return _weight_gradient_strided(grad, x_flat, (padded_h, padded_w), params)
    if stride_h == 1 and stride_w == 1 and finite:
        # one long vector per depth slice: the gradient widened to the input's row pitch
        length = (out_h - 1) * padded_w + out_w
        widened = np.zeros((batch, out_channels, out_d, out_h * padded_w), dtype=grad.dtype)
        widened.reshape(batch, out_channels, out_d, out_h, padded_w)[..., :out_w] = grad
        grad_rows, row_pitch, step = widened, 0, 1
    else:
        grad_rows = grad.reshape(batch, out_channels, out_d * out_h, out_w)
        length, row_pitch, step = out_w, stride_h * padded_w, stride_w
    grad_weight = np.empty(params.weight_shape, dtype=params.dtype)
    _weight_gradient_padded(x_flat, padded_h, padded_w, grad_rows, length, grad_weight, out_d,
                            row_pitch, step, stride_d, *params.dilation)
    return grad_weight


TALL_WEIGHT_BYTES = 1 << 20
"""The reduction kernel sweeps a sample's volume and four output-gradient volumes once per four
taps: beyond about an L2 cache of them (a 64³ volume: 6 MB) that sweep goes to memory and the
per-kernel-plane tasks below are faster (measured 2x either way on a Sapphire Rapids)."""


def _weight_gradient_tall(grad, x_flat, padded_hw, params):
    """The stride-1 weight gradient on the 2-D direct backend's reductions (its register tiles, or
    the loop kernel where they would be mostly padding), the volume read as one tall plane as in
    the forward: the output gradient laid over its rows (zeros in the dropped rows and columns, so
    ``x`` must be finite: 0 * Inf), every tap one offset."""
    batch, out_channels, out_d, out_h, out_w = grad.shape
    padded_h, padded_w = padded_hw
    volume = x_flat.shape[2]
    groups, per_group_in = params.groups, params.in_channels_per_group
    per_group_out = out_channels // groups
    block_size = 1 if per_group_out == 1 else blocked.CHANNEL_BLOCK
    blocks = -(-per_group_out // block_size)
    rows = (out_d - 1) * padded_h + out_h
    tall = np.zeros((batch, out_channels, rows, out_w), dtype=grad.dtype)
    for d in range(out_d):  # each depth slice's rows at its place in the tall plane
        tall[:, :, d * padded_h:d * padded_h + out_h] = grad[:, :, d]
    offsets = _tap_offsets(1, volume, params.kernel, params.dilation, padded_h, padded_w)
    reach_w = (params.kernel[2] - 1) * params.dilation[2] + 1
    length = rows * padded_w - (reach_w - 1)
    taps = offsets.shape[0]
    if blocked.uses_weight_tiles(grad.dtype, per_group_out, per_group_in * taps):
        sums = blocked.reduce_weight_gradient_tiles(
            x_flat.reshape(batch, -1), tall, offsets, groups, per_group_in, volume, padded_w,
            length, lane_tile_shape(per_group_out, grad.dtype.itemsize))
        return sums.reshape(params.weight_shape)
    wide = np.empty((batch, groups, blocks, block_size, rows * padded_w), dtype=grad.dtype)
    blocked.widen_output_gradient(tall, wide, padded_w)
    sums = blocked.reduce_weight_gradient(x_flat.reshape(batch, -1), wide, offsets, per_group_in,
                                          volume, length)
    by_channel = sums.transpose(0, 1, 4, 2, 3).reshape(groups, blocks * block_size, per_group_in,
                                                       taps)
    return np.ascontiguousarray(by_channel[:, :per_group_out]).reshape(params.weight_shape)


def _weight_gradient_strided(grad, x_flat, padded_hw, params):
    """A strided layer's weight gradient on the 2-D direct backend's register tiles, each output
    position's offset in the padded volume given (``od*sd*Hp*Wp + oh*sh*Wp + ow*sw``): no phase
    volumes, and only real positions are multiplied (the loop kernel below took ten times as
    long)."""
    batch, out_channels = grad.shape[:2]
    padded_h, padded_w = padded_hw
    volume = x_flat.shape[2]
    positions = _position_offsets(grad.shape[2:], params.stride, padded_h, padded_w)
    count = positions.size
    offsets = _tap_offsets(1, volume, params.kernel, params.dilation, padded_h, padded_w)
    sums = blocked.reduce_weight_gradient_tiles(
        x_flat.reshape(batch, -1), np.ascontiguousarray(grad).reshape(batch, out_channels, 1, count),
        offsets, params.groups, params.in_channels_per_group, volume, count, count,
        lane_tile_shape(out_channels // params.groups, grad.dtype.itemsize), positions=positions)
    return sums.reshape(params.weight_shape)


def transposed_weight(weight, groups):
    """(K, C/g, T, R, S) -> (C, K/g, T, R, S), every kernel flipped in all three axes: the weight of
    the forward correlation that computes the transposed one."""
    out_channels, per_group = weight.shape[:2]
    out_per_group = out_channels // groups
    grouped = weight.reshape((groups, out_per_group, per_group) + weight.shape[2:])
    swapped = grouped.transpose(0, 2, 1, 3, 4, 5)[..., ::-1, ::-1, ::-1]
    return np.ascontiguousarray(swapped.reshape((groups * per_group, out_per_group)
                                                + weight.shape[2:]))


def axis_phase(phase, stride, dilation, kernel, padded):
    """How one stride phase of one axis receives gradient: padded positions ``phase + stride*q``
    (``q < count``) are reached by the taps ``t`` with ``t*dilation = phase (mod stride)``, from
    output ``q - shift_t``, ``shift_t = (t*dilation - phase) // stride``.  The shifts of those taps
    step by ``dilation / gcd``, so the phase is a stride-1 correlation of the output gradient
    (with ``last shift`` leading zeros) with those taps reversed at that dilation.

    Returns ``(flipped_tap_indices, sub_dilation, gradient_offset, length, count)`` -- the
    reversed taps as indices into the flipped kernel, ascending -- or None when no tap reaches
    the phase (its gradient is zero)."""
    count = (padded - phase + stride - 1) // stride
    taps = [t for t in range(kernel) if (t * dilation - phase) % stride == 0]
    if not taps or count < 1:
        return None
    shifts = [(t * dilation - phase) // stride for t in taps]
    sub_dilation = shifts[1] - shifts[0] if len(taps) > 1 else 1
    length = count + (len(taps) - 1) * sub_dilation
    flipped = [kernel - 1 - t for t in reversed(taps)]
    return flipped, sub_dilation, shifts[-1], length, count


def _full_correlation_pads(params):
    """Padding of the output gradient that makes the input gradient one stride-1 correlation with
    the flipped kernel — (front, back, top, bottom, left, right) — or None: another stride, a
    padding mode (its gradient folds back), or zero padding beyond the kernel's reach."""
    if tuple(params.stride) != (1, 1, 1) or params.padding_mode != "zeros":
        return None
    pads = []
    for axis, reach in enumerate(params.dilated_kernel):
        pads += [reach - 1 - params.pads[2 * axis], reach - 1 - params.pads[2 * axis + 1]]
    return tuple(pads) if min(pads) >= 0 else None


def backward_input(grad, weight, params):
    """Gradient w.r.t. the (unpadded) input, (N, C, D, H, W).

    The gradient w.r.t. the padded input is the transposed correlation.  It is computed one stride
    phase ``(phase_d, phase_h, phase_w)`` at a time (:func:`axis_phase`): each phase is a stride-1
    forward correlation, on the forward kernel, of the zero-framed output gradient with the taps
    that reach it (flipped, channel axes swapped), written into a strided view -- no zeros are
    inserted between gradient values and none are multiplied.  At stride 1 there is one phase, the
    classic "full" correlation with the flipped kernel.  A weight holding NaN or Inf takes
    :func:`_input_gradient_scatter` instead.  Padding is then cropped or folded (:func:`_unpad`)."""
    batch = params.batch
    full_pads = _full_correlation_pads(params)
    if full_pads is not None and all_finite(weight):
        # stride 1 with zero padding inside the kernel's reach: the gradient is one "full"
        # correlation of the output gradient with the flipped kernel, straight into the input's
        # shape (no padded gradient to crop)
        framed = pad_ncdhw(np.ascontiguousarray(grad), full_pads, "zeros")
        grad_input = np.empty(params.input_shape, dtype=params.dtype)
        _run_forward(framed.reshape(batch, params.out_channels, -1), framed.shape[-3:],
                     transposed_weight(weight, params.groups), None, grad_input, (1, 1, 1),
                     params.dilation)
        return grad_input
    grad_padded = np.zeros((batch, params.in_channels) + params.padded_size, dtype=params.dtype)
    if not all_finite(weight):
        _input_gradient_scatter(grad, weight, grad_padded, *params.stride, *params.dilation)
        return _unpad(grad_padded, params)
    flipped_weight = transposed_weight(weight, params.groups)
    per_axis = [
        [axis_phase(phase, stride, dilation, kernel, padded) for phase in range(stride)]
        for stride, dilation, kernel, padded in zip(
            params.stride, params.dilation, params.kernel, params.padded_size)
    ]
    for phases in itertools.product(*(range(stride) for stride in params.stride)):
        plans = [per_axis[axis][phase] for axis, phase in enumerate(phases)]
        if any(plan is None for plan in plans):
            continue  # no tap reaches these positions: their gradient stays zero
        framed_size = tuple(plan[3] for plan in plans)
        framed = np.zeros((batch, params.out_channels) + framed_size, dtype=params.dtype)
        target, source = [slice(None), slice(None)], [slice(None), slice(None)]
        for plan, out in zip(plans, params.out_size):
            offset, length = plan[2], plan[3]
            kept = max(0, min(out, length - offset))
            target.append(slice(offset, offset + kept))
            source.append(slice(0, kept))
        framed[tuple(target)] = grad[tuple(source)]
        sub_weight = np.ascontiguousarray(
            flipped_weight[:, :, plans[0][0]][:, :, :, plans[1][0]][:, :, :, :, plans[2][0]])
        phase_grad = np.empty((batch, params.in_channels) + tuple(plan[4] for plan in plans),
                              dtype=params.dtype)
        _run_forward(framed.reshape(batch, params.out_channels, -1), framed_size, sub_weight,
                     None, phase_grad, (1, 1, 1), tuple(plan[1] for plan in plans))
        grad_padded[(slice(None), slice(None)) + tuple(
            slice(phase, None, stride) for phase, stride in zip(phases, params.stride))] = phase_grad
    return _unpad(grad_padded, params)


def _unpad(grad_padded, params):
    """The gradient w.r.t. the input from the one w.r.t. the padded input: cropped (zeros) or
    folded back onto the samples the padding copied (the other modes)."""
    if not any(params.pads):
        return grad_padded
    if params.padding_mode == "zeros":
        front, _, top, _, left, _ = params.pads
        depth, height, width = params.in_size
        return np.ascontiguousarray(
            grad_padded[:, :, front:front + depth, top:top + height, left:left + width])
    return unpad_gradient_ncdhw(grad_padded, params.in_size, params.pads, params.padding_mode)
