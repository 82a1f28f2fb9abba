"""Direct convolution with the *samples* in the vector lanes: stride-1 layers of few channels on
small planes, run over a large batch (LeNet's layers and their input gradients).

The other tiles put output positions (``_direct_blocked``) or output channels (``_direct_lanes``)
in the lanes.  A layer with six output channels on a 14 x 14 plane suits neither: six channels
fill six of sixteen lanes, and a flattened 14-wide row padded to 18 computes four dropped columns
for every fourteen, while the full correlation of an input gradient (padding 4 around a 10 x 10
gradient) spends half its multiply-adds on that padding.  With the samples in the lanes every
vector is full whatever the plane and the channel count, and the zero padding is not read at all:
each output position sums only the taps that land inside the input (loop bounds, not zeros).

The price is two transpositions: the input to samples-last (C * H * W, N) and the output back,
each ``pack_weight``'s transpose through registers, which is why the rule (``suits``) asks the
phase-plane kernel to waste ``WASTE_RATIO`` times the useful work first.

A tile is ``shape.channels`` output channels x ``shape.vectors`` vectors of samples (the forward
tile's shape for the layer, ``tile_shape_for``) at one output position: per (input channel, tap)
inside the input, ``vectors`` loads of the samples' input value and ``channels`` broadcasts of
weights.  Tasks are (vector chunk of samples, channel block, output row).
"""
from __future__ import annotations

import functools

import numpy as np
from numba import prange

from .. import _simd
from .._config import get_num_threads, get_workspace_limit, njit_kernel, njit_parallel, runs_serially
from .._cpu import tile_shape_for
from . import _direct_blocked as blocked
from . import _direct_lanes as lanes
from ._direct_blocked import pack_weight

MIN_BATCH_VECTORS = 2
"""Fewest whole vectors of samples the batch must fill (a batch of 4 in 16 lanes would compute
12 zero samples for every 4)."""

WASTE_RATIO = 2.0
"""How many times the useful multiply-adds the phase-plane kernel must compute (dropped columns,
zero padding, zero channels of its last block) for this kernel to run instead: its two
transpositions and short tap loops cost about that much.  The full correlation of LeNet's second
layer (an input gradient: 10 x 10 padded by 4) computes 2.5 times its useful work on the planes;
LeNet's first layer (28 x 28 padded by 2, six channels in a block of six) 1.96 times, and runs
faster there on AVX2."""


def suits(params) -> bool:
    """Whether ``params`` (a zero-padding forward correlation) runs with the samples in the lanes:
    float32/64, stride and dilation 1, one group, fewer output channels than the lane tile takes
    (``_direct_lanes.MIN_CHANNELS``), a batch of ``MIN_BATCH_VECTORS`` vectors, and
    ``WASTE_RATIO`` times less work than the phase-plane kernel."""
    if params.dtype.kind != "f" or params.dtype.itemsize not in (4, 8):
        return False
    if (params.stride_h, params.stride_w, params.dilation_h, params.dilation_w) != (1, 1, 1, 1):
        return False
    if params.groups != 1 or params.out_channels >= lanes.MIN_CHANNELS:
        return False
    if min(params.pad_top, params.pad_bottom, params.pad_left, params.pad_right) < 0:
        return False
    if not blocked.applies(params):
        return False
    shape = tile_shape_for(params.out_channels)
    if params.batch < MIN_BATCH_VECTORS * shape.vector_bytes // params.dtype.itemsize:
        return False
    return _repays(params, shape, get_workspace_limit(), get_num_threads())


@functools.lru_cache(maxsize=256)
def _repays(params, shape, workspace_limit, threads):
    """Whether the copies fit the workspace cap and the planes' work is ``WASTE_RATIO`` times
    ours.  Memoised (the dispatcher asks on every call) on everything the answer depends on."""
    flops, _, copied = work(params)
    return copied <= workspace_limit and blocked.work(params)[0] >= WASTE_RATIO * flops


def _valid_taps(out_size, kernel, pad_before, in_size):
    """Sum over the output positions of one axis of the taps that land inside the input (none
    for a position whose window lies wholly in padding past the kernel's reach)."""
    positions = np.arange(out_size)
    inside = (np.minimum(kernel, in_size + pad_before - positions)
              - np.maximum(0, pad_before - positions))
    return int(np.maximum(inside, 0).sum())


def work(params):
    """(multiply-add FLOPs performed, tile passes, bytes copied) of ``correlate``: every valid
    tap of every position for the tile's whole channel blocks and vectors of samples; a pass is
    one tile (one output position); the copies are the two transpositions."""
    return _work(params, tile_shape_for(params.out_channels))


@functools.lru_cache(maxsize=256)
def _work(params, shape):
    tile_samples = shape.vectors * shape.vector_bytes // params.dtype.itemsize
    width = -(-params.batch // tile_samples) * tile_samples
    blocks = -(-params.out_channels // shape.channels)
    taps = (_valid_taps(params.out_h, params.kernel_h, params.pad_top, params.in_h)
            * _valid_taps(params.out_w, params.kernel_w, params.pad_left, params.in_w))
    flops = 2.0 * blocks * shape.channels * width * params.in_channels * taps
    passes = float(width // tile_samples * blocks * params.out_h * params.out_w)
    copied = width * (params.in_channels * params.in_h * params.in_w
                      + params.out_channels * params.out_h * params.out_w)
    return flops, passes, float(copied * params.dtype.itemsize)


@njit_kernel
def _task(task, grid, weights, out, in_h, in_w, out_h, out_w, pad_top, pad_left, kernel_h,
          kernel_w, chunks, shape):
    """Output row ``task``'s (chunk of samples, channel block, row) of ``_kernel``."""
    width = grid.shape[1]
    tile_samples = shape.vectors * shape.vector_bytes // grid.itemsize
    blocks, in_channels = weights.shape[0], weights.shape[1]
    y = task % out_h
    block = (task // out_h) % blocks
    chunk = task // (out_h * blocks)
    n0 = chunk * tile_samples
    grid_flat = grid.reshape(grid.size)
    weight_flat = weights.reshape(weights.size)
    out_flat = out.reshape(out.size)
    r_lo = max(0, pad_top - y)
    r_hi = min(kernel_h, in_h + pad_top - y)
    plane = out_h * out_w
    for x in range(out_w):
        t_lo = max(0, pad_left - x)
        t_hi = min(kernel_w, in_w + pad_left - x)
        tile = _simd.tile_zeros(grid.dtype, shape)
        for k in range(in_channels):
            for r in range(r_lo, r_hi):
                row = ((k * in_h + y + r - pad_top) * in_w + x - pad_left) * width + n0
                taps = ((block * in_channels + k) * kernel_h + r) * kernel_w * shape.channels
                for t in range(t_lo, t_hi):
                    tile = _simd.tile_fma(tile, grid_flat, row + t * width, weight_flat,
                                          taps + t * shape.channels)
        _simd.tile_store(tile, out_flat, (block * shape.channels * plane + y * out_w + x) * width + n0,
                         plane * width)


@njit_parallel
def _kernel(grid, weights, out, in_h, in_w, out_h, out_w, pad_top, pad_left, kernel_h, kernel_w,
            chunks, shape):
    for task in prange(chunks * weights.shape[0] * out_h):
        _task(np.int64(task), grid, weights, out, in_h, in_w, out_h, out_w, pad_top, pad_left,
              kernel_h, kernel_w, chunks, shape)


@njit_kernel
def _kernel_serial(grid, weights, out, in_h, in_w, out_h, out_w, pad_top, pad_left, kernel_h,
                   kernel_w, chunks, shape):
    for task in range(chunks * weights.shape[0] * out_h):
        _task(np.int64(task), grid, weights, out, in_h, in_w, out_h, out_w, pad_top, pad_left,
              kernel_h, kernel_w, chunks, shape)


_TRANSPOSE_COLUMNS = 256
"""Columns of the source one transposition task takes (all its rows): a few tasks a thread for a
batch's planes."""


@njit_kernel
def _transpose_chunk(source, target, chunk, shape):
    """target[j, i] = source[i, j] for the chunk's columns j and every row i < ``source``'s rows
    (both 2-D C-contiguous), in squares of lanes transposed in registers, the edges value by
    value."""
    rows, columns = source.shape
    lanes = shape.vector_bytes // source.itemsize
    flat_source = source.reshape(source.size)
    flat_target = target.reshape(target.size)
    j0 = chunk * _TRANSPOSE_COLUMNS
    j1 = min(columns, j0 + _TRANSPOSE_COLUMNS)
    whole_rows = rows // lanes * lanes
    j = j0
    while j + lanes <= j1:
        for i in range(0, whole_rows, lanes):
            _simd.transpose_square(flat_source, i * columns + j, columns, flat_target,
                                   j * target.shape[1] + i, target.shape[1], shape.vector_bytes)
        j += lanes
    for jj in range(j0, j1):
        first = whole_rows if jj < j else 0
        for i in range(first, rows):
            target[jj, i] = source[i, jj]


@njit_parallel
def _transpose_kernel(source, target, shape):
    for chunk in prange(-(-source.shape[1] // _TRANSPOSE_COLUMNS)):
        _transpose_chunk(source, target, np.int64(chunk), shape)


@njit_kernel
def _transpose_serial(source, target, shape):
    for chunk in range(-(-source.shape[1] // _TRANSPOSE_COLUMNS)):
        _transpose_chunk(source, target, np.int64(chunk), shape)


def _transpose_into(source, target):
    """target[:cols, :rows] = source.T (``source`` (rows, cols), both C-contiguous); the rest of
    ``target`` is left as it is."""
    shape = blocked.pack_transpose_shape(source.shape[0] if source.shape[0] >= 1 else 1,
                                         source.itemsize)
    kernel = _transpose_serial if runs_serially(source.size * _MACS_PER_MOVED_VALUE) else _transpose_kernel
    kernel(source, target, shape)
    return target


_MACS_PER_MOVED_VALUE = 64
"""A moved value's cost in multiply-adds, for the serial threshold (as the padded copies')."""


def correlate(x, w, bias, pads):
    """conv2d of C-contiguous real ``x`` (N, C, H, W) with ``w`` (K, C, R, S) at stride 1 under
    zero padding ``pads`` = (top, bottom, left, right), ``bias`` a (K,) array or None, with the
    samples in the lanes (``suits``)."""
    batch, channels, in_h, in_w = x.shape
    out_channels, _, kernel_h, kernel_w = w.shape
    pad_top, pad_bottom, pad_left, pad_right = pads
    out_h = in_h + pad_top + pad_bottom - kernel_h + 1
    out_w = in_w + pad_left + pad_right - kernel_w + 1
    shape = tile_shape_for(out_channels)
    tile_samples = shape.vectors * shape.vector_bytes // x.dtype.itemsize
    chunks = -(-batch // tile_samples)
    width = chunks * tile_samples
    # (C * H * W, width): sample n of value i at [i, n], zeros past the batch
    grid = np.empty((channels * in_h * in_w, width), x.dtype)
    grid[:, batch:] = 0
    _transpose_into(x.reshape(batch, -1), grid)
    packed = pack_weight(w, 1, shape.channels)  # (1, blocks, C, R, S, channels)
    blocks = packed.shape[1]
    weights = packed.reshape(blocks, channels, -1)
    out = np.empty((blocks * shape.channels * out_h * out_w, width), x.dtype)
    serial = runs_serially(width * out_channels * out_h * out_w * channels * kernel_h * kernel_w)
    kernel = _kernel_serial if serial else _kernel
    kernel(grid, weights, out, in_h, in_w, out_h, out_w, pad_top, pad_left, kernel_h, kernel_w,
           chunks, shape)
    values = out_channels * out_h * out_w
    result = np.empty((width, values), x.dtype)
    _transpose_into(out[:values], result)
    result = result[:batch].reshape(batch, out_channels, out_h, out_w)
    if bias is not None:
        result += bias.reshape(1, -1, 1, 1)
    return result
