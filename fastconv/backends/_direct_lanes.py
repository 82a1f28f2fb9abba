"""Direct convolution with output channels in the vector lanes: the forward pass on the weight
gradient's register tile (``_direct_blocked``'s, turned around once more).

``_direct_blocked`` puts output *positions* in the lanes: every tap is one shifted vector of a
flattened input plane.  That costs a copy of the input into phase planes for a stride or dilation
(a stride-2 layer reads its input four times over), computes the columns past each row's end
(4 of every 14 positions of LeNet's second layer) and rounds every task up to whole vectors of
positions.  Here a tile is ``shape.channels`` output *positions* x ``shape.vectors`` vectors of
output channels (``fastconv._cpu.lane_tile_shape``), summed over every (input channel, tap) pair
of the group in registers (``fastconv._simd.tile_fma_gathered``): per pair, ``vectors`` loads of
packed weights and one broadcast of the input value under each position, wherever it lies.  So a
stride or dilation is only an offset (the input is read in place, or from one zero-padded copy),
no position past a row's end is computed, and a tile may span rows.  The price: the sums come out
channels-last and are turned into NCHW rows as they are written, a few stores per output value,
which a layer with few (input channel, tap) pairs per output does not repay (see
``lanes_apply``).

Tasks are (sample, group, run of positions, share of the channel blocks), each running its
blocks one after the other over the same positions, whose input stays in cache.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import prange

from .. import _simd
from .._config import get_num_threads, get_workspace_limit, njit_kernel, njit_parallel, runs_serially
from .._cpu import lane_tile_shape
from ._direct_blocked import pack_weight, pad_flat

MIN_PAIRS = 64
"""Fewest (input channel, tap) pairs per output value for the lane tile: below, the channels-last
sums' transposition (a few stores per output) costs more than the phase planes' waste saves (a
3-channel 3 x 3 first layer: 27 pairs; LeNet's first: 25)."""

MIN_POSITIONS = 64
"""Fewest output positions (all samples) per weight value for the lane tile: its blocks are
wider than the phase-plane kernel's (64 channels against 8 on AVX-512), and packing them costs
more; a batch-1 layer on a 7 x 7 plane (49 positions, a 512-channel weight of 9 MB) spends more
on that than the tile saves."""

MIN_CHANNELS = 16
"""Fewest output channels per group for the lane tile: each broadcast (a load) feeds one
multiply-add per channel, and fewer than 16 leave the loop load-bound (the 6-channel input
gradient of LeNet's second layer ran at 40% of the FMA rate on it, 1.4x the phase-plane
kernel's time on AVX2)."""

LANE_USE = 0.6
"""Least share of a block's lanes that real output channels must fill (the weight gradient's
``TILE_LANE_USE``): a 6-channel layer in 16 lanes computes 10 zero channels for every 6."""

SCRATCH_BYTES = 128 << 10
"""Most bytes of channels-last sums a task keeps before writing them out: within L2."""

RUN_WEIGHT_BYTES = 256 << 10
"""Most bytes of a block's packed weights one pass of a task's tiles reads: a run of pairs that
stays in L2 while every tile of the task reduces it.  A late ResNet layer's block (512 channels x
9 taps x 64 channels) is a megabyte, which each tile would otherwise stream from memory again; its
runs' partial sums are added up in the task's scratch."""

TASKS_PER_THREAD = 4


def lanes_apply(params) -> bool:
    """Whether the conv2d forward pass of ``params`` runs on the lane tile (``suits``), padded
    (not cropped: the signal API's 'valid' in zero-padding form may crop)."""
    if min(params.pad_top, params.pad_bottom, params.pad_left, params.pad_right) < 0:
        return False
    return suits(params.dtype, params.out_channels_per_group,
                 params.in_channels_per_group * params.kernel_h * params.kernel_w,
                 params.batch * params.out_h * params.out_w)


def suits(dtype, per_group_out, pairs, positions) -> bool:
    """Whether a layer runs on the lane tile: float32/float64, at least ``MIN_CHANNELS`` output
    channels per group that fill ``LANE_USE`` of the tile's lanes, at least ``MIN_PAIRS`` (input
    channel, tap) pairs per output value and ``MIN_POSITIONS`` output positions (all samples)."""
    if dtype.kind != "f" or dtype.itemsize not in (4, 8):
        return False
    if per_group_out < MIN_CHANNELS or pairs < MIN_PAIRS or positions < MIN_POSITIONS:
        return False
    shape = lane_tile_shape(per_group_out, dtype.itemsize)
    block = shape.vectors * shape.vector_bytes // dtype.itemsize
    return per_group_out >= LANE_USE * -(-per_group_out // block) * block


def work(params):
    """(multiply-add FLOPs performed, tile passes, bytes copied) of ``correlate`` on the lane tile:
    the padded channels of the last block and positions of each task's last tile included; a pass
    is one tile over every pair; the copies are the zero-padded input (none when unpadded) and the
    channels-last sums written out."""
    shape = lane_tile_shape(params.out_channels_per_group, params.dtype.itemsize)
    block = shape.vectors * shape.vector_bytes // params.dtype.itemsize
    blocks = -(-params.out_channels_per_group // block)
    positions = params.out_h * params.out_w
    pairs = params.in_channels_per_group * params.kernel_h * params.kernel_w
    serial = runs_serially(params.batch * params.out_channels * positions * pairs)
    per_task, _ = _split(params.batch, params.groups, blocks, positions, block,
                         params.dtype.itemsize, shape.channels, 1 if serial else get_num_threads())
    tiles = (positions // per_task) * (per_task // shape.channels) + -(
        -(positions % per_task) // shape.channels)
    units = params.batch * params.groups * blocks
    flops = 2.0 * units * tiles * shape.channels * block * pairs
    passes = float(units * tiles)
    padded = (params.pad_top or params.pad_bottom or params.pad_left or params.pad_right)
    copied = (params.batch * params.in_channels * params.padded_h * params.padded_w if padded else 0)
    copied += params.batch * params.out_channels * positions
    return flops, passes, float(copied * params.dtype.itemsize)


def _split(batch, groups, blocks, positions, block, itemsize, tile_positions, threads):
    """(positions per task, block shares per task): about ``TASKS_PER_THREAD`` tasks a thread,
    from runs of positions of at least four tiles each (within ``SCRATCH_BYTES`` of sums), then
    from the channel blocks (a batch-1 layer on a small plane)."""
    target = TASKS_PER_THREAD * threads
    wanted = -(-target // (batch * groups))
    chunks = max(1, min(wanted, positions // (4 * tile_positions)))
    per_task = min(-(-positions // chunks), max(4 * tile_positions, SCRATCH_BYTES // (block * itemsize)))
    per_task = -(-per_task // tile_positions) * tile_positions
    tasks = batch * groups * -(-positions // per_task)
    return per_task, max(1, min(blocks, -(-target // tasks)))


@functools.lru_cache(maxsize=256)
def pair_offsets(channels, kernel_h, kernel_w, dilation, plane_h, plane_w, run):
    """Offset of pair (c, r, s) in a group's padded planes, in (c, r, s) order (the packed weights'
    order), in runs ended by -1 (``with_sentinels``).  Memoised; read-only."""
    c, r, s = np.meshgrid(np.arange(channels), np.arange(kernel_h), np.arange(kernel_w),
                          indexing="ij")
    offsets = c * plane_h * plane_w + r * dilation[0] * plane_w + s * dilation[1]
    return with_sentinels(offsets.ravel(), run)


def with_sentinels(offsets, run):
    """``offsets`` (the pairs', in the packed weights' order) in runs of at most ``run``, each
    ended by -1: the reduction loop stops at the sentinel, so LLVM cannot count its trips and does
    not unroll it (unrolled, it hoisted two pairs' broadcasts and spilled accumulators).
    Read-only."""
    runs = -(-offsets.size // run)
    out = np.full(offsets.size + runs, -1, np.int64)
    for i in range(runs):
        values = offsets[i * run:(i + 1) * run]
        out[i * (run + 1):i * (run + 1) + values.size] = values
    out.flags.writeable = False
    return out


def pairs_per_run(pairs, block, itemsize):
    """Pairs of one run: all of them when the block's weights fit ``RUN_WEIGHT_BYTES``, else
    equal runs that do."""
    runs = -(-pairs * block * itemsize // RUN_WEIGHT_BYTES)
    return -(-pairs // runs)


@functools.lru_cache(maxsize=32)
def position_offsets(out_h, out_w, stride, plane_w, tile_positions):
    """Offset of output position q (row-major) in a padded plane, padded for whole tiles
    (``padded_positions``).  Memoised (a few layers' worth: a large plane's offsets are
    megabytes); read-only."""
    rows, cols = np.divmod(np.arange(out_h * out_w, dtype=np.int64), out_w)
    return padded_positions(rows * stride[0] * plane_w + cols * stride[1], tile_positions)


def padded_positions(offsets, tile_positions):
    """``offsets`` followed by copies of the last one up to a whole tile past the end (a task's
    last tile reads them, and its sums past the end are dropped).  Read-only."""
    out = np.full(offsets.size + tile_positions, offsets[-1], np.int64)
    out[:offsets.size] = offsets
    out.flags.writeable = False
    return out


@njit_kernel
def _lane_task(task, planes, packed, pairs, positions, bias, out, group_values, split, shape):
    """Task ``task`` of ``_lane_kernel``: one (sample, group, run of positions, share of blocks).
    Each tile's sums are stored channels-last in the task's scratch (the first run of pairs) or
    added to them (the others), and written out per channel, bias added, when the block is done."""
    per_task, block_chunks, run = split
    groups, blocks, pair_count, block_size = packed.shape
    weights = packed.reshape(packed.size)
    count = out.shape[2]
    per_group_out = out.shape[1] // groups
    chunks = -(-count // per_task)
    share = task % block_chunks
    chunk = (task // block_chunks) % chunks
    g = (task // (block_chunks * chunks)) % groups
    n = task // (block_chunks * chunks * groups)
    q0 = chunk * per_task
    q1 = min(count, q0 + per_task)
    tile_positions = shape.channels
    tile_values = tile_positions * block_size
    scratch = np.empty((per_task + tile_positions) * block_size, dtype=out.dtype)
    partial = np.empty(tile_values, dtype=out.dtype)
    sample = planes[n]
    base = g * group_values
    for block in range(share * blocks // block_chunks, (share + 1) * blocks // block_chunks):
        for first_pair in range(0, pair_count, run):
            entry0 = first_pair // run * (run + 1)  # where the run starts in ``pairs``
            block_weights = ((g * blocks + block) * pair_count + first_pair) * block_size
            for q in range(q0, q1, tile_positions):
                offsets = positions[q:q + tile_positions]
                tile = _simd.tile_zeros(planes.dtype, shape)
                entry = entry0
                offset = pairs[entry]
                while offset >= 0:
                    tile = _simd.tile_fma_gathered(
                        tile, weights, block_weights + (entry - entry0) * block_size, sample,
                        base + offset, offsets)
                    entry += 1
                    offset = pairs[entry]
                start = (q - q0) * block_size
                if first_pair == 0:
                    _simd.tile_store(tile, scratch, start, block_size)
                else:
                    _simd.tile_store(tile, partial, 0, block_size)
                    sums = scratch[start:start + tile_values]
                    for i in range(tile_values):
                        sums[i] += partial[i]
        for j in range(min(block_size, per_group_out - block * block_size)):
            k = g * per_group_out + block * block_size + j
            target = out[n, k]
            b = bias[k]
            for q in range(q0, q1):
                target[q] = scratch[(q - q0) * block_size + j] + b


@njit_parallel
def _lane_kernel(planes, packed, pairs, positions, bias, out, group_values, split, shape):
    """out[n, k, q] = bias[k] + sum over the pairs of group g of packed[g, block, pair, j] *
    planes[n, g * group_values + offset(pair) + positions[q]], with k = g * Kg + block * size + j:
    ``planes`` (N, C * plane) padded and flattened, ``packed`` (G, blocks, pairs, block size),
    ``pairs`` the pairs' offsets in runs of ``split[2]``, each ended by -1, ``out`` (N, K,
    positions)."""
    chunks = -(-out.shape[2] // split[0])
    for task in prange(out.shape[0] * packed.shape[0] * chunks * split[1]):
        _lane_task(np.int64(task), planes, packed, pairs, positions, bias, out, group_values,
                   split, shape)


@njit_kernel
def _lane_kernel_serial(planes, packed, pairs, positions, bias, out, group_values, split, shape):
    """``_lane_kernel`` on the calling thread, for problems too small to repay waking the others."""
    chunks = -(-out.shape[2] // split[0])
    for task in range(out.shape[0] * packed.shape[0] * chunks * split[1]):
        _lane_task(np.int64(task), planes, packed, pairs, positions, bias, out, group_values,
                   split, shape)


def packed_weight(w, groups, shape):
    """``w`` (K, C/groups, taps...) as the lane tile reads it: (G, blocks, pairs, block), a pair's
    block of output channels adjacent, zeros past the group's channels."""
    out_channels, per_group_in = w.shape[:2]
    block = shape.vectors * shape.vector_bytes // w.dtype.itemsize
    packed = pack_weight(w.reshape(out_channels, per_group_in, -1, w.shape[-1]), groups, block)
    return packed.reshape(groups, packed.shape[1], -1, block)


def run(planes, packed, pairs, positions, bias, out, group_values, run_pairs, shape):
    """The lane kernel: ``out`` (N, K, count) from ``planes`` (N, C * values per channel) padded
    and flattened, ``packed`` (``packed_weight``), ``pairs`` the pairs' offsets in a group's
    planes in runs of ``run_pairs`` (``with_sentinels``), ``positions`` the output positions'
    offsets (``padded_positions``), ``group_values`` the values of one group's planes; on the
    calling thread when the problem is small."""
    batch, count = out.shape[0], out.shape[2]
    groups, blocks, pair_count, block = packed.shape
    serial = runs_serially(out.size * pair_count)
    split = _split(batch, groups, blocks, count, block, planes.itemsize, shape.channels,
                   1 if serial else get_num_threads())
    split = (np.int64(split[0]), np.int64(split[1]), np.int64(run_pairs))
    kernel = _lane_kernel_serial if serial else _lane_kernel
    kernel(planes, packed, pairs, positions, bias, out, group_values, split, shape)


def correlate(x, w, bias, pads, groups, stride=(1, 1), dilation=(1, 1), shape=None):
    """conv2d of C-contiguous real ``x`` (N, C, H, W) with ``w`` (K, C/groups, R, S) under zero
    padding ``pads`` = (top, bottom, left, right), ``bias`` a (K,) array, on the lane tile
    (``shape``: ``lane_tile_shape`` of the layer unless given)."""
    batch, channels, in_h, in_w = x.shape
    out_channels, per_group_in, kernel_h, kernel_w = w.shape
    pad_top, pad_bottom, pad_left, pad_right = pads
    plane_h, plane_w = in_h + pad_top + pad_bottom, in_w + pad_left + pad_right
    out_h = (plane_h - (kernel_h - 1) * dilation[0] - 1) // stride[0] + 1
    out_w = (plane_w - (kernel_w - 1) * dilation[1] - 1) // stride[1] + 1
    out = np.empty((batch, out_channels, out_h * out_w), x.dtype)
    if out.size == 0:
        return out.reshape(batch, out_channels, out_h, out_w)
    if shape is None:
        shape = lane_tile_shape(out_channels // groups, x.dtype.itemsize)
    packed = packed_weight(w, groups, shape)
    run_pairs = pairs_per_run(packed.shape[2], packed.shape[3], x.dtype.itemsize)
    pairs = pair_offsets(per_group_in, kernel_h, kernel_w, tuple(dilation), plane_h, plane_w,
                         run_pairs)
    positions = position_offsets(out_h, out_w, tuple(stride), plane_w, shape.channels)
    # a slice of the batch at a time: the padded copy stays within the workspace cap
    sample_bytes = channels * plane_h * plane_w * x.dtype.itemsize
    step = max(1, min(batch, get_workspace_limit() // max(1, sample_bytes)))
    for start in range(0, batch, step):
        stop = min(batch, start + step)
        planes = pad_flat(x[start:stop], pad_top, pad_bottom, pad_left, pad_right)
        run(planes.reshape(stop - start, -1), packed, pairs, positions, bias, out[start:stop],
            per_group_in * plane_h * plane_w, run_pairs, shape)
    return out.reshape(batch, out_channels, out_h, out_w)
