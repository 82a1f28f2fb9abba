"""Direct convolution on flattened (phase) planes, blocked over output channels: the direct
backend's kernels for every floating-point problem.

The first direct kernel streamed one output row through memory per tap, indexing its input with a
runtime stride, so LLVM could not vectorise it; this form vectorises every tap (the speed-ups are
in docs/measurements.md):

* **Flattened planes.**  Pad each input plane once (zeros, as the definition says) and view it as one
  row of ``padded_h * padded_w`` values.  Output position ``p = oh * padded_w + ow`` then reads input
  ``p + r * padded_w + s`` for tap (r, s): every tap is one contiguous shifted vector over *all*
  output rows of the task, whatever the image width.  The ``padded_w - out_w`` columns computed past
  each row's end are discarded (they cost ``(S - 1) / padded_w`` extra work).
* **Register tiles** (float32/float64): a few output channels x a few vectors of positions, summed
  over every tap in vector registers (explicit LLVM vectors, ``fastconv._simd``), so each input
  vector loaded feeds one fused multiply-add per channel and the accumulators are stored once per
  tile.  The tile's shape follows the register file of the CPU the kernel is compiled for
  (``fastconv._cpu``: 8 x 3 zmm on AVX-512, 6 x 2 ymm on AVX2).  Complex values keep a loop kernel
  (four channels x four taps per pass over accumulators in L1).
* **Phase planes** for strides and dilations (see ``plane_layout``); a one-accumulator variant for
  one output channel per group (depthwise layers, single images).
* **Tasks** are (sample, group, block of output rows), each running every channel block so the
  input rows it reads stay in cache.

The same kernels compute the input gradient (a correlation of the zero-padded output gradient with
the flipped, transposed weights: one for stride 1, one per input phase otherwise).  The weight
gradient uses the flattened form too: each (input channel, tap) pair's gradient is a dot product
of an output-gradient plane (zeros in the discarded columns) with the shifted input plane.  Real
values reduce them on register tiles turned around from the forward's (output channels in the
vector lanes, pairs broadcast, the sum over positions in the accumulators); complex values and
layers whose tiles would be mostly padding take a loop kernel of sixteen (four channels x four
taps) reductions per pass.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numba import prange

from .. import _simd
from .._config import get_num_threads, get_workspace_limit, njit_kernel, njit_parallel, runs_serially
from .._cpu import TileShape, lane_tile_shape, tile_shape, tile_shape_for
from ._common import bias_or_zeros, valid_output_range

CHANNEL_BLOCK = 4
"""Output channels accumulated together by the complex forward kernel and the weight gradient
(weights are packed with zero channels up to a multiple)."""

ACCUMULATOR_BYTES = 16 << 10
"""Bytes of accumulators per task: CHANNEL_BLOCK rows of output positions, kept in L1."""


def applies(params) -> bool:
    """Real or complex floating point, any stride, dilation and groups (one output channel per
    group runs the one-accumulator kernel)."""
    return params.dtype.kind in "fc"


def gradients_apply(params) -> bool:
    """The weight-gradient kernel takes what the forward takes."""
    return applies(params)


def copied_bytes(params) -> int:
    """Bytes of the padded (phase) planes ``correlate`` writes before its kernels run: zero where a
    one-channel layer's tasks pad their own rows instead (serial problems, stacks of planes)."""
    pads = (params.pad_top, params.pad_bottom, params.pad_left, params.pad_right)
    stride, dilation = (params.stride_h, params.stride_w), (params.dilation_h, params.dilation_w)
    if params.out_channels == params.groups:
        serial = runs_serially(params.flops // 2)
        if pads_own_rows(params.batch, params.groups, stride, dilation, pads, serial):
            return 0
    layout = plane_layout(params.out_h, params.out_w, params.kernel_h, params.kernel_w, stride,
                          dilation)
    phases = layout.row_phases.shape[0] * layout.col_phases.shape[0]
    return (params.batch * params.in_channels * phases * layout.plane_h * layout.plane_w
            * params.dtype.itemsize)


def work(params):
    """(multiply-add FLOPs actually performed, passes) of ``correlate`` for a problem ``applies``
    accepts: the cost model's features.  A pass is one register tile (real values) or one sweep
    over a task's accumulators (complex values; one output channel per group)."""
    one_channel = params.out_channels_per_group == 1
    shape = tile_shape_for(params.out_channels_per_group)
    if one_channel:
        block = 1
    else:
        block = forward_kernel(params.dtype, channels=params.out_channels_per_group)[1]
    blocks = _channel_blocks(params.out_channels_per_group, block)
    layout = plane_layout(params.out_h, params.out_w, params.kernel_h, params.kernel_w,
                          (params.stride_h, params.stride_w), (params.dilation_h, params.dilation_w))
    plane_w = layout.plane_w
    taps = params.in_channels_per_group * params.kernel_h * params.kernel_w
    tasks = _tasks_without_rows(params.dtype, params.batch, params.groups, blocks)
    if one_channel or params.dtype.kind == "c":
        rows = rows_per_task(params.out_h, plane_w, params.dtype.itemsize, tasks, block)
    else:
        rows = tile_rows_per_task(params.out_h, plane_w, params.dtype.itemsize, tasks, params.dtype,
                                  shape)
    chunks = -(-params.out_h // rows)
    positions = params.out_h * plane_w  # per plane, with the discarded columns
    planes = params.batch * params.groups * blocks  # (sample, group, channel block) planes
    if one_channel or params.dtype.kind == "c":
        passes_per_task = taps // 8 + taps % 8 if one_channel else taps // 4 + taps % 4
        passes = planes * chunks * passes_per_task
    else:  # whole tiles: each task's positions rounded up to the tile's lanes
        lanes = shape.position_bytes // params.dtype.itemsize
        tiles_per_plane = chunks * -(-min(positions, rows * plane_w) // lanes)
        positions = tiles_per_plane * lanes
        passes = planes * tiles_per_plane
    flops = 2 * planes * block * positions * taps
    return float(flops), float(passes)


def weight_tile_work(params):
    """(multiply-add FLOPs performed, tile passes, bytes copied) of the weight gradient on register
    tiles (``uses_weight_tiles``): the padded channels of every block and pairs of every run over
    every position read (the discarded columns included); a pass is one run's tile over one
    segment; the copies are the input's phase planes and the output gradient's transposition."""
    shape = lane_tile_shape(params.out_channels_per_group, params.dtype.itemsize)
    block_size = shape.vectors * shape.vector_bytes // params.dtype.itemsize
    blocks = _channel_blocks(params.out_channels_per_group, block_size)
    pairs = params.in_channels_per_group * params.kernel_h * params.kernel_w
    runs = -(-pairs // shape.channels)
    layout = plane_layout(params.out_h, params.out_w, params.kernel_h, params.kernel_w,
                          (params.stride_h, params.stride_w), (params.dilation_h, params.dilation_w))
    length = params.out_h * layout.plane_w - (layout.reach_w - 1)
    segment = max(64, SEGMENT_BYTES // (block_size * params.dtype.itemsize))
    units = params.batch * params.groups * blocks
    flops = 2 * units * block_size * runs * shape.channels * length
    passes = units * runs * -(-length // segment)
    transposed = units * block_size * length * params.dtype.itemsize
    planes = 0 if planes_are_the_input(params, layout) else copied_bytes(params)
    return float(flops), float(passes), float(planes + transposed)


def planes_are_the_input(params, layout) -> bool:
    """Whether ``phase_planes`` returns a view of the input (stride 1, no padding, no dilation
    reach past the plane: a pointwise or unpadded layer), so nothing is copied."""
    return (layout.row_phases.shape[0] * layout.col_phases.shape[0] == 1
            and (params.stride_h, params.stride_w) == (1, 1)
            and params.pad_top == params.pad_left == 0
            and (layout.plane_h, layout.plane_w) == (params.in_h, params.in_w))


# --- input planes ------------------------------------------------------------------------------
# A strided (or dilated) layer becomes a stride-1 one on *phase planes*: input channel c splits into
# one plane per (row phase a, column phase b) that some tap reads, plane[i, j] = padded input
# [i * stride_h + a, j * stride_w + b], and tap (r, s) reads phase ((r * dh) % sh, (s * dw) % sw) at
# shift ((r * dh) // sh, (s * dw) // sw).  Every tap is still one contiguous shifted vector, no
# structural zeros are multiplied, and for stride 1 the phase plane is just the padded plane.
class PlaneLayout(NamedTuple):
    row_phases: np.ndarray  # the row phases a that some tap reads (int64)
    col_phases: np.ndarray
    plane_h: int  # rows of each phase plane: out_h + the largest row shift
    plane_w: int
    reach_w: int  # the largest column shift + 1: positions past out_w that taps read


@functools.lru_cache(maxsize=256)
def plane_layout(out_h, out_w, kernel_h, kernel_w, stride, dilation) -> PlaneLayout:
    """Memoised (a repeated layer pays nothing); the arrays are read-only."""
    (stride_h, stride_w), (dilation_h, dilation_w) = stride, dilation
    rows = sorted({(r * dilation_h) % stride_h for r in range(kernel_h)})
    cols = sorted({(s * dilation_w) % stride_w for s in range(kernel_w)})
    max_u = (kernel_h - 1) * dilation_h // stride_h
    max_v = (kernel_w - 1) * dilation_w // stride_w
    return PlaneLayout(_read_only(np.array(rows, np.int64)), _read_only(np.array(cols, np.int64)),
                       out_h + max_u, out_w + max_v, max_v + 1)


def _read_only(array):
    array.flags.writeable = False
    return array


@njit_kernel
def _copy_columns(row, source, count, stride_w):
    """row[j] = source[j * stride_w] for j < count; unit and unit-two strides are spelled out so
    LLVM vectorises them with a constant step.  (The callers slice both rows so the loops index
    from 0: an index ``start + j`` that Numba cannot prove non-negative gets a wrap-around select
    that stops LLVM vectorising.)"""
    if stride_w == 1:
        for j in range(count):
            row[j] = source[j]
    elif stride_w == 2:
        for j in range(count):
            row[j] = source[2 * j]
    else:
        for j in range(count):
            row[j] = source[j * stride_w]


@njit_kernel
def _phase_planes_task(index, x, out, row_phases, col_phases, stride_h, stride_w, pad_top,
                       pad_left, plane_h, plane_w):
    """The phase planes of (sample, channel) ``index`` of ``_phase_planes_kernel``: its phases read
    the same input rows, which stay in L1 between them.  Only the padding is zeroed, so every value
    is written once.  (Zeroing by loops: Numba's slice assignment costs more per call than a short
    row does.)"""
    channels, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    col_count = col_phases.shape[0]
    phases = row_phases.shape[0] * col_count
    c = index % channels
    n = index // channels
    if stride_w == 2 and col_count == 2:  # column phases 0 and 1: both from one pass per row
        for row_phase in range(row_phases.shape[0]):
            _column_phase_pair(x[n, c], out[n, c * phases + 2 * row_phase],
                               out[n, c * phases + 2 * row_phase + 1], row_phases[row_phase],
                               stride_h, pad_top, pad_left, plane_h, plane_w)
        return
    for phase in range(phases):
        a = row_phases[phase // col_count]
        col_offset = col_phases[phase % col_count] - pad_left
        flat = out[n, c * phases + phase]
        lo, hi = valid_output_range(col_offset, stride_w, in_w, plane_w)
        for i in range(plane_h):
            ih = i * stride_h + a - pad_top
            start = i * plane_w
            if ih < 0 or ih >= in_h or lo >= hi:
                for j in range(start, start + plane_w):
                    flat[j] = 0
                continue
            for j in range(start, start + lo):
                flat[j] = 0
            for j in range(start + hi, start + plane_w):
                flat[j] = 0
            _copy_columns(flat[start + lo:start + hi], x[n, c, ih, lo * stride_w + col_offset:],
                          hi - lo, stride_w)


@njit_kernel
def _column_phase_pair(image, even, odd, row_phase, stride_h, pad_top, pad_left, plane_h,
                       plane_w):
    """The two column phases of a stride-2 row phase at once: even[i, j] = padded[i * sh + a,
    2j], odd[i, j] = padded[i * sh + a, 2j + 1] (padded = ``image`` with its zero padding).  Where
    both read inside the row, one loop takes each pair of adjacent inputs apart, which LLVM
    vectorises as whole-vector loads and shuffles (a stride-2 loop per phase ran several times
    slower); the edges are element by element."""
    in_h, in_w = image.shape
    lo_even, hi_even = valid_output_range(-pad_left, 2, in_w, plane_w)
    lo_odd, hi_odd = valid_output_range(1 - pad_left, 2, in_w, plane_w)
    lo = max(lo_even, lo_odd)
    hi = max(lo, min(hi_even, hi_odd))
    for i in range(plane_h):
        ih = i * stride_h + row_phase - pad_top
        start = i * plane_w
        even_row = even[start:start + plane_w]
        odd_row = odd[start:start + plane_w]
        if ih < 0 or ih >= in_h:
            for j in range(plane_w):
                even_row[j] = 0
                odd_row[j] = 0
            continue
        source = image[ih]
        for j in range(lo):
            column = 2 * j - pad_left
            even_row[j] = source[column] if 0 <= column < in_w else 0
            odd_row[j] = source[column + 1] if 0 <= column + 1 < in_w else 0
        _take_pairs_apart(even_row[lo:hi], odd_row[lo:hi], source[2 * lo - pad_left:], hi - lo)
        for j in range(hi, plane_w):
            column = 2 * j - pad_left
            even_row[j] = source[column] if 0 <= column < in_w else 0
            odd_row[j] = source[column + 1] if 0 <= column + 1 < in_w else 0


@njit_kernel
def _take_pairs_apart(even, odd, source, count):
    """even[j] = source[2j], odd[j] = source[2j + 1] for j < count (sliced so the loop indexes
    from 0, as ``_copy_columns``)."""
    for j in range(count):
        even[j] = source[2 * j]
        odd[j] = source[2 * j + 1]


@njit_parallel
def _phase_planes_kernel(x, out, row_phases, col_phases, stride_h, stride_w, pad_top, pad_left,
                         plane_h, plane_w):
    """out[n, c * P + p, i * plane_w + j] = x[n, c, i * sh + a - pad_top, j * sw + b - pad_left] for
    phase p = (a, b); zero where that is padding or past the input.  One task per (sample,
    channel); the index as int64, one signature of the task function."""
    for index in prange(x.shape[0] * x.shape[1]):
        _phase_planes_task(np.int64(index), x, out, row_phases, col_phases, stride_h, stride_w,
                           pad_top, pad_left, plane_h, plane_w)


_MACS_PER_COPIED_VALUE = 64


@njit_kernel
def _padded_plane(index, x, out, pad_top, pad_left, plane_h, plane_w):
    """out[n, c, i * plane_w + j] = x[n, c, i - pad_top, j - pad_left] for (sample, channel)
    ``index``, zero where that is outside ``x`` (a negative pad crops).  The stride-1 case of
    ``_phase_planes_task`` as its own small kernel: most layers need only this, and compiling the
    phase planes' general kernel took seconds of a first call."""
    channels, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    image = x[index // channels, index % channels]
    flat = out[index // channels, index % channels]
    lo = min(plane_w, max(0, pad_left))
    hi = max(lo, min(plane_w, pad_left + in_w))
    for i in range(plane_h):
        row = flat[i * plane_w:(i + 1) * plane_w]
        ih = i - pad_top
        if ih < 0 or ih >= in_h or lo == hi:
            for j in range(plane_w):
                row[j] = 0
            continue
        for j in range(lo):
            row[j] = 0
        source = image[ih, lo - pad_left:]
        inside = row[lo:hi]
        for j in range(hi - lo):
            inside[j] = source[j]
        for j in range(hi, plane_w):
            row[j] = 0


@njit_parallel
def _padded_planes_kernel(x, out, pad_top, pad_left, plane_h, plane_w):
    for index in prange(x.shape[0] * x.shape[1]):
        _padded_plane(np.int64(index), x, out, pad_top, pad_left, plane_h, plane_w)


@njit_kernel
def _padded_planes_serial(x, out, pad_top, pad_left, plane_h, plane_w):
    for index in range(x.shape[0] * x.shape[1]):
        _padded_plane(np.int64(index), x, out, pad_top, pad_left, plane_h, plane_w)


@njit_kernel
def _phase_planes_serial(x, out, row_phases, col_phases, stride_h, stride_w, pad_top, pad_left,
                         plane_h, plane_w):
    """``_phase_planes_kernel`` on the calling thread: a small copy does not repay waking the
    others (for a layer of a few thousand values that cost more than its convolution)."""
    for index in range(x.shape[0] * x.shape[1]):
        _phase_planes_task(np.int64(index), x, out, row_phases, col_phases, stride_h, stride_w,
                           pad_top, pad_left, plane_h, plane_w)


def phase_planes(x, pads, stride, layout):
    """(N, C, H, W) -> (N, C * phases, plane_h * plane_w): the flattened (phase) planes."""
    batch, channels, in_h, in_w = x.shape
    phases = layout.row_phases.shape[0] * layout.col_phases.shape[0]
    pad_top, _, pad_left, _ = pads
    if phases == 1 and stride == (1, 1) and pad_top == pad_left == 0 and (
            layout.plane_h, layout.plane_w) == (in_h, in_w):
        return x.reshape(batch, channels, in_h * in_w)  # a view: C-contiguous input
    out = np.empty((batch, channels * phases, layout.plane_h * layout.plane_w), dtype=x.dtype)
    # a copied value costs the time of ~64 of a register tile's multiply-adds (one scalar store
    # against a fraction of a vector FMA): below that share of the serial threshold, one thread
    serial = runs_serially(out.size * _MACS_PER_COPIED_VALUE)
    if phases == 1 and stride == (1, 1):  # only padding (or cropping): the small kernel
        kernel = _padded_planes_serial if serial else _padded_planes_kernel
        kernel(x, out, pad_top, pad_left, layout.plane_h, layout.plane_w)
        return out
    kernel = _phase_planes_serial if serial else _phase_planes_kernel
    kernel(x, out, layout.row_phases, layout.col_phases, stride[0], stride[1], pad_top, pad_left,
           layout.plane_h, layout.plane_w)
    return out


def pad_flat(x, pad_top, pad_bottom, pad_left, pad_right):
    """(N, C, H, W) -> (N, C, (H + pads) * (W + pads)) zero-padded flattened planes."""
    _, _, in_h, in_w = x.shape
    padded_h, padded_w = in_h + pad_top + pad_bottom, in_w + pad_left + pad_right
    layout = PlaneLayout(np.zeros(1, np.int64), np.zeros(1, np.int64), padded_h, padded_w, 1)
    return phase_planes(x, (pad_top, pad_bottom, pad_left, pad_right), (1, 1), layout)


def _channel_blocks(per_group: int, block: int = CHANNEL_BLOCK) -> int:
    return -(-per_group // block)


def pack_weight(w, groups, block=CHANNEL_BLOCK):
    """(K, Cg, R, S) -> (G, blocks, Cg, R, S, block): the block's channels innermost, so a tap's
    weights for the block are adjacent; channels past the group's end are zero.  Compiled: NumPy's
    copy through a six-axis transpose cost more than a small layer's convolution.  Large weights
    (a late ResNet layer's are megabytes, repacked on every call) are packed on every thread."""
    out_channels, per_group_in, kernel_h, kernel_w = w.shape
    blocks = _channel_blocks(out_channels // groups, block)
    packed = np.empty((groups, blocks, per_group_in, kernel_h, kernel_w, block), w.dtype)
    grouped = w.reshape(groups, out_channels // groups, -1)
    taps = grouped.shape[2]
    chunks = -(-taps // _PACK_TAPS)
    kernel = _pack_weight_kernel if runs_serially(w.size) else _pack_weight_parallel
    kernel(grouped.reshape(-1), packed.reshape(-1), groups, out_channels // groups, taps, block,
           chunks, pack_transpose_shape(block, w.dtype.itemsize))
    return packed


def pack_transpose_shape(block, itemsize):
    """The vectors ``pack_weight`` transposes squares of: the forward tile's width, narrowed to
    the widest power of two of lanes a block holds (an 8-channel block of float32: 32 bytes)."""
    widest = 1 << (block * itemsize).bit_length() - 1
    return TileShape(1, 1, max(itemsize, min(tile_shape().vector_bytes, widest)))


_PACK_TAPS = 256
"""Taps of one packing task: a block's rows of them (64 KiB for 64 float32 channels) stay in L2
while they are written tap-major, and a late layer's thousands of taps split into tasks for every
thread."""


@njit_kernel
def _pack_chunk(source, target, g, b, chunk, per_group_out, taps, block, shape):
    """target[g, b, t, j] = source[g, b * block + j, t] for the chunk's taps t, zero past the
    group's channels (both flattened): squares of ``lanes`` channels x ``lanes`` taps are
    transposed in registers (``_simd.transpose_square``), the edges one value at a time."""
    lanes = shape.vector_bytes // source.itemsize
    valid = min(block, per_group_out - b * block)
    whole = valid // lanes * lanes
    source_first = (g * per_group_out + b * block) * taps
    target_first = (g * -(-per_group_out // block) + b) * taps * block
    t0 = chunk * _PACK_TAPS
    t1 = min(taps, t0 + _PACK_TAPS)
    t = t0
    while t + lanes <= t1:
        for j in range(0, whole, lanes):
            _simd.transpose_square(source, source_first + j * taps + t, taps, target,
                                   target_first + t * block + j, block, shape.vector_bytes)
        t += lanes
    for u in range(t, t1):
        for j in range(whole):
            target[target_first + u * block + j] = source[source_first + j * taps + u]
    for u in range(t0, t1):
        for j in range(whole, valid):
            target[target_first + u * block + j] = source[source_first + j * taps + u]
        for j in range(valid, block):
            target[target_first + u * block + j] = 0


@njit_kernel
def _pack_weight_kernel(source, target, groups, per_group_out, taps, block, chunks, shape):
    blocks = -(-per_group_out // block)
    for task in range(groups * blocks * chunks):
        _pack_chunk(source, target, task // (blocks * chunks), task // chunks % blocks,
                    task % chunks, per_group_out, taps, block, shape)


@njit_parallel
def _pack_weight_parallel(source, target, groups, per_group_out, taps, block, chunks, shape):
    blocks = -(-per_group_out // block)
    for task in prange(groups * blocks * chunks):
        _pack_chunk(source, target, np.int64(task // (blocks * chunks)),
                    np.int64(task // chunks % blocks), np.int64(task % chunks), per_group_out,
                    taps, block, shape)


def forward_kernel(dtype, serial=False, channels=None):
    """(kernel, output channels per packed block) of the forward pass for ``dtype``: register tiles
    for real values, of the target CPU's shape for a layer of ``channels`` output channels per
    group (``tile_shape_for``; None: the default shape), on the calling thread when ``serial``;
    complex values (no LLVM vector type) take the four-channel loop kernel.  Both kernels take the
    same arguments."""
    if dtype.kind == "c":
        return _forward_kernel, CHANNEL_BLOCK
    shape = tile_shape() if channels is None else tile_shape_for(channels)
    return _tile_kernels(shape, serial), shape.channels


@functools.lru_cache(maxsize=32)
def _tile_kernels(shape, serial):
    """The tile kernel with its tile shape bound, called like ``_forward_kernel``."""
    if serial:
        def run(planes, packed, offsets, bias, out, reach_w, padded_w, rows_per_task):
            _tile_kernel_serial(planes, packed, offsets, bias, out, reach_w, padded_w,
                                rows_per_task, 1, shape)
    else:
        def run(planes, packed, offsets, bias, out, reach_w, padded_w, rows_per_task):
            tasks = planes.shape[0] * packed.shape[0] * -(-out.shape[2] // rows_per_task)
            _tile_kernel(planes, packed, offsets, bias, out, reach_w, padded_w, rows_per_task,
                         _block_chunks(tasks, packed.shape[1]), shape)
    return run


def _tasks_without_rows(dtype, batch, groups, blocks):
    """Parallel tasks of the forward kernel for ``dtype`` before rows are split: the tile kernel
    runs every channel block of a (sample, group) in one task; the loop kernel one block a task."""
    return batch * groups * (blocks if dtype.kind == "c" else 1)


@njit_kernel
def _write_rows(src, dst, oh0, oh1, padded_w, b):
    """dst[oh] = the first out_w values of src's row (oh - oh0) + b, for the task's rows oh0..oh1:
    accumulators (rows of ``padded_w``, discarded columns included) into one output plane."""
    out_w = dst.shape[1]
    for oh in range(oh0, oh1):
        row = src[(oh - oh0) * padded_w:]
        target = dst[oh]
        for ow in range(out_w):
            target[ow] = row[ow] + b


# --- forward, complex values: four output channels x four taps per pass --------------------------
# Every tap (c, r, s) of a group is an offset into the group's flattened planes (which are adjacent
# in memory): ``c * plane_size + r * padded_w + s``.  Taps are taken four at a time from that one
# list, across kernel rows and channels alike, so a pass does 16 multiply-adds per four input loads
# and four accumulator load/stores whatever the kernel's shape.  Four is measured, not guessed: the
# 16 weights stay in vector registers (with eight taps, 32 weights did not fit beside the inputs
# and accumulators, became memory operands, and the loop ran load-bound; docs/measurements.md).
# The shifted inputs are sliced before each loop so the loop
# indexes with ``q`` alone (an index ``base + q`` that Numba cannot prove non-negative gets a
# wrap-around select that stops LLVM vectorising).  ``taps`` is (taps, CHANNEL_BLOCK).
@njit_kernel
def _four_taps(a0, a1, a2, a3, planes, base, offsets, taps, length):
    x0, x1 = planes[base + offsets[0]:], planes[base + offsets[1]:]
    x2, x3 = planes[base + offsets[2]:], planes[base + offsets[3]:]
    w00, w01, w02, w03 = taps[0, 0], taps[1, 0], taps[2, 0], taps[3, 0]
    w10, w11, w12, w13 = taps[0, 1], taps[1, 1], taps[2, 1], taps[3, 1]
    w20, w21, w22, w23 = taps[0, 2], taps[1, 2], taps[2, 2], taps[3, 2]
    w30, w31, w32, w33 = taps[0, 3], taps[1, 3], taps[2, 3], taps[3, 3]
    for q in range(length):
        v0, v1, v2, v3 = x0[q], x1[q], x2[q], x3[q]
        a0[q] += w00 * v0 + w01 * v1 + w02 * v2 + w03 * v3
        a1[q] += w10 * v0 + w11 * v1 + w12 * v2 + w13 * v3
        a2[q] += w20 * v0 + w21 * v1 + w22 * v2 + w23 * v3
        a3[q] += w30 * v0 + w31 * v1 + w32 * v2 + w33 * v3


@njit_kernel
def _one_tap(a0, a1, a2, a3, planes, base, offsets, taps, length):
    x0 = planes[base + offsets[0]:]
    w0, w1, w2, w3 = taps[0, 0], taps[0, 1], taps[0, 2], taps[0, 3]
    for q in range(length):
        v0 = x0[q]
        a0[q] += w0 * v0
        a1[q] += w1 * v0
        a2[q] += w2 * v0
        a3[q] += w3 * v0


@njit_parallel
def _forward_kernel(planes, packed, offsets, bias, out, reach_w, padded_w, rows_per_task):  # complex
    """out[n, k] = bias[k] + sum over the group's taps, on flattened padded planes.

    ``planes`` (N, C * plane_size) and ``packed`` (G, blocks, taps, CHANNEL_BLOCK) with ``offsets``
    (taps,) the offset of each tap within its group's planes."""
    batch = planes.shape[0]
    groups, blocks, tap_count, _ = packed.shape
    out_channels, out_h = out.shape[1], out.shape[2]
    per_group_out = out_channels // groups
    group_size = planes.shape[1] // groups  # values of one group's planes
    row_chunks = -(-out_h // rows_per_task)
    # the last reach_w - 1 positions of the last row are discarded columns whose taps would read
    # past the plane's end: stop before them
    readable = out_h * padded_w - (reach_w - 1)
    for task in prange(batch * groups * blocks * row_chunks):
        chunk = task % row_chunks
        block = (task // row_chunks) % blocks
        g = (task // (row_chunks * blocks)) % groups
        n = task // (row_chunks * blocks * groups)
        oh0 = chunk * rows_per_task
        oh1 = min(out_h, oh0 + rows_per_task)
        first = oh0 * padded_w
        length = min(oh1 * padded_w, readable) - first
        acc = np.zeros((CHANNEL_BLOCK, rows_per_task * padded_w), dtype=out.dtype)
        a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
        group_planes = planes[n, g * group_size:(g + 1) * group_size]
        taps = packed[g, block]
        t = 0
        while t + 4 <= tap_count:
            _four_taps(a0, a1, a2, a3, group_planes, first, offsets[t:t + 4], taps[t:t + 4], length)
            t += 4
        while t < tap_count:
            _one_tap(a0, a1, a2, a3, group_planes, first, offsets[t:t + 1], taps[t:t + 1], length)
            t += 1
        for j in range(min(CHANNEL_BLOCK, per_group_out - block * CHANNEL_BLOCK)):
            k = g * per_group_out + block * CHANNEL_BLOCK + j
            _write_rows(acc[j], out[n, k], oh0, oh1, padded_w, bias[k])



@njit_kernel
def _task_span(task, groups, row_chunks, rows_per_task, out_h, padded_w, readable):
    """Task ``task`` of a (sample, group, block of output rows) decomposition: (n, g, oh0, oh1,
    first flat position, positions to compute) — stopping at ``readable``, past which the taps of
    the last row's discarded columns would read beyond the plane."""
    chunk = task % row_chunks
    g = (task // row_chunks) % groups
    n = task // (row_chunks * groups)
    oh0 = chunk * rows_per_task
    oh1 = min(out_h, oh0 + rows_per_task)
    first = oh0 * padded_w
    return n, g, oh0, oh1, first, min(oh1 * padded_w, readable) - first


# --- forward, real values: register tiles --------------------------------------------------------
# A tile is ``shape.channels`` output channels x ``shape.vectors`` vectors of output positions,
# summed over every tap of the group in registers (``fastconv._simd``): per tap, ``vectors`` input
# loads (the tap's shifted positions), ``channels`` weight broadcasts and ``channels * vectors``
# fused multiply-adds; the accumulators are stored once per tile.  The shape comes from the CPU the
# kernel is compiled for (``fastconv._cpu.tile_shape``) and is part of the kernel's signature, so
# each shape is its own cached specialisation.  The last tile of a run loads only the positions
# the task reads (masked loads), so nothing past the planes is touched; it is a separate loop
# because a runtime branch inside the tap loop is not unswitched by LLVM.
@njit_kernel
def _tile_task(task, planes, packed, offsets, bias, out, reach_w, padded_w, rows_per_task,
               block_chunks, shape):
    """Task ``task`` of ``_tile_kernel``: one (sample, group, block of rows) and its share of the
    channel blocks — all of them unless the other tasks are too few (the input rows a task reads
    stay in L2 across its blocks)."""
    groups, blocks, tap_count, channels = packed.shape
    weights = packed.reshape(packed.size)
    out_channels, out_h = out.shape[1], out.shape[2]
    per_group_out = out_channels // groups
    group_size = planes.shape[1] // groups
    row_chunks = -(-out_h // rows_per_task)
    readable = out_h * padded_w - (reach_w - 1)
    positions = shape.vectors * shape.vector_bytes // planes.itemsize  # per tile and channel
    # room for a whole last tile: its lanes past ``length`` hold zeros and are not copied out
    row_stride = rows_per_task * padded_w + positions
    n, g, oh0, oh1, first, length = _task_span(task // block_chunks, groups, row_chunks,
                                               rows_per_task, out_h, padded_w, readable)
    share = task % block_chunks
    whole = length - length % positions  # positions in whole tiles
    acc = np.empty(channels * row_stride, dtype=out.dtype)
    group_planes = planes[n, g * group_size:(g + 1) * group_size]
    for block in range(share * blocks // block_chunks, (share + 1) * blocks // block_chunks):
        block_weights = (g * blocks + block) * tap_count * channels
        for start in range(0, whole, positions):
            tile = _simd.tile_zeros(planes.dtype, shape)
            for t in range(tap_count):
                tile = _simd.tile_fma(tile, group_planes, first + start + offsets[t], weights,
                                      block_weights + t * channels)
            _simd.tile_store(tile, acc, start, row_stride)
        if whole < length:
            tile = _simd.tile_zeros(planes.dtype, shape)
            for t in range(tap_count):
                tile = _simd.tile_fma_first(tile, group_planes, first + whole + offsets[t],
                                            length - whole, weights, block_weights + t * channels)
            _simd.tile_store(tile, acc, whole, row_stride)
        for j in range(min(channels, per_group_out - block * channels)):
            k = g * per_group_out + block * channels + j
            _write_rows(acc[j * row_stride:(j + 1) * row_stride], out[n, k], oh0, oh1, padded_w,
                        bias[k])


@njit_parallel
def _tile_kernel(planes, packed, offsets, bias, out, reach_w, padded_w, rows_per_task,
                 block_chunks, shape):
    """``_forward_kernel`` on register tiles, for float32/float64: ``packed`` (G, blocks, taps,
    shape.channels); each (sample, group, rows) task split ``block_chunks`` ways over blocks."""
    tasks = planes.shape[0] * packed.shape[0] * -(-out.shape[2] // rows_per_task) * block_chunks
    # the index as int64: prange types it uint64 in the parallel body, int64 elsewhere, and each
    # signature of the task function would be compiled separately
    for task in prange(tasks):
        _tile_task(np.int64(task), planes, packed, offsets, bias, out, reach_w, padded_w,
                   rows_per_task, block_chunks, shape)


@njit_kernel
def _tile_kernel_serial(planes, packed, offsets, bias, out, reach_w, padded_w, rows_per_task,
                        block_chunks, shape):
    """``_tile_kernel`` on the calling thread, for problems too small to repay waking the others."""
    tasks = planes.shape[0] * packed.shape[0] * -(-out.shape[2] // rows_per_task) * block_chunks
    for task in range(tasks):
        _tile_task(np.int64(task), planes, packed, offsets, bias, out, reach_w, padded_w,
                   rows_per_task, block_chunks, shape)


# --- one output channel per group (depthwise): one accumulator, eight taps per pass --------------
@njit_kernel
def _eight_taps_one_channel(acc, planes, base, offsets, taps, length):
    x0, x1 = planes[base + offsets[0]:], planes[base + offsets[1]:]
    x2, x3 = planes[base + offsets[2]:], planes[base + offsets[3]:]
    x4, x5 = planes[base + offsets[4]:], planes[base + offsets[5]:]
    x6, x7 = planes[base + offsets[6]:], planes[base + offsets[7]:]
    w0, w1, w2, w3, w4, w5, w6, w7 = taps[0], taps[1], taps[2], taps[3], taps[4], taps[5], taps[6], taps[7]
    for q in range(length):
        acc[q] += ((w0 * x0[q] + w1 * x1[q] + w2 * x2[q] + w3 * x3[q])
                   + (w4 * x4[q] + w5 * x5[q] + w6 * x6[q] + w7 * x7[q]))


@njit_kernel
def _one_tap_one_channel(acc, planes, base, offsets, taps, length):
    x0 = planes[base + offsets[0]:]
    w0 = taps[0]
    for q in range(length):
        acc[q] += w0 * x0[q]


@njit_parallel
def _one_channel_kernel(planes, weights, offsets, bias, out, reach_w, padded_w, rows_per_task):
    """``_forward_kernel`` for one output channel per group: ``weights`` (G, taps)."""
    batch = planes.shape[0]
    groups, tap_count = weights.shape
    out_h = out.shape[2]
    group_size = planes.shape[1] // groups
    row_chunks = -(-out_h // rows_per_task)
    readable = out_h * padded_w - (reach_w - 1)
    for task in prange(batch * groups * row_chunks):
        n, g, oh0, oh1, first, length = _task_span(task, groups, row_chunks, rows_per_task, out_h,
                                                   padded_w, readable)
        acc = np.zeros(rows_per_task * padded_w, dtype=out.dtype)
        group_planes = planes[n, g * group_size:(g + 1) * group_size]
        taps = weights[g]
        t = 0
        while t + 8 <= tap_count:
            _eight_taps_one_channel(acc, group_planes, first, offsets[t:t + 8], taps[t:t + 8], length)
            t += 8
        while t < tap_count:
            _one_tap_one_channel(acc, group_planes, first, offsets[t:t + 1], taps[t:t + 1], length)
            t += 1
        _write_rows(acc, out[n, g], oh0, oh1, padded_w, bias[g])


_ZERO = np.int64(0)  # the base offset of a task's own buffer: typed int64 like the other callers'
# ``first``, so the pass functions have one signature (a literal 0 would compile a second)


@njit_kernel
def _one_channel_padded_task(task, x, weights, offsets, bias, out, pad_top, pad_left, kernel_h,
                             padded_w, rows_per_task):
    """Task ``task`` of ``_one_channel_padding_kernel``: one (sample, group, block of rows)."""
    in_h, in_w = x.shape[2], x.shape[3]
    groups, tap_count = weights.shape
    per_group_in = x.shape[1] // groups
    out_h, out_w = out.shape[2], out.shape[3]
    reach_w = padded_w - out_w + 1
    channel_size = (rows_per_task + kernel_h - 1) * padded_w
    row_chunks = -(-out_h // rows_per_task)
    chunk = task % row_chunks
    g = (task // row_chunks) % groups
    n = task // (row_chunks * groups)
    oh0 = chunk * rows_per_task
    oh1 = min(out_h, oh0 + rows_per_task)
    buffer = np.zeros(per_group_in * channel_size, dtype=out.dtype)
    for c in range(per_group_in):
        for i in range(oh1 - oh0 + kernel_h - 1):  # padded rows oh0 .. oh1 + kernel_h - 2
            ih = oh0 + i - pad_top
            if 0 <= ih < in_h:
                # a loop, not a slice assignment: that one compiles Numba's shape-mismatch error
                # message machinery, seconds of a first call
                _copy_columns(buffer[c * channel_size + i * padded_w + pad_left:],
                              x[n, g * per_group_in + c, ih], in_w, 1)
    length = (oh1 - oh0) * padded_w - (reach_w - 1)
    acc = np.zeros(rows_per_task * padded_w, dtype=out.dtype)
    taps = weights[g]
    t = 0
    while t + 8 <= tap_count:
        _eight_taps_one_channel(acc, buffer, _ZERO, offsets[t:t + 8], taps[t:t + 8], length)
        t += 8
    while t < tap_count:
        _one_tap_one_channel(acc, buffer, _ZERO, offsets[t:t + 1], taps[t:t + 1], length)
        t += 1
    _write_rows(acc, out[n, g], oh0, oh1, padded_w, bias[g])


@njit_parallel
def _one_channel_padding_kernel(x, weights, offsets, bias, out, pad_top, pad_left, kernel_h,
                                padded_w, rows_per_task):
    """``_one_channel_kernel`` at stride 1 without dilation, reading ``x`` (N, C, H, W) itself: each
    task zero-pads the input rows it reads into its own small buffer, so no padded copy of the
    whole input goes through memory (these layers do ~2 FLOPs per byte: that copy was half their
    memory traffic).  ``offsets``: tap offsets in a buffer of ``rows_per_task + kernel_h - 1`` rows
    per input channel of the group."""
    tasks = x.shape[0] * weights.shape[0] * -(-out.shape[2] // rows_per_task)
    for task in prange(tasks):  # int64 index: one signature of the task function (_tile_kernel)
        _one_channel_padded_task(np.int64(task), x, weights, offsets, bias, out, pad_top, pad_left,
                                 kernel_h, padded_w, rows_per_task)


@njit_kernel
def one_channel_padding_serial(x, weights, offsets, bias, out, pad_top, pad_left, kernel_h,
                               padded_w, rows_per_task):
    """``_one_channel_padding_kernel`` on the calling thread: for problems too small to repay
    waking the other threads."""
    tasks = x.shape[0] * weights.shape[0] * -(-out.shape[2] // rows_per_task)
    for task in range(tasks):
        _one_channel_padded_task(task, x, weights, offsets, bias, out, pad_top, pad_left, kernel_h,
                                 padded_w, rows_per_task)


def one_channel_padding_kernel(serial):
    """The per-task-padding one-channel kernel, serial or parallel (same arguments)."""
    return one_channel_padding_serial if serial else _one_channel_padding_kernel


@functools.lru_cache(maxsize=256)
def tap_offsets(channels, kernel_h, kernel_w, stride, dilation, out_h, out_w):
    """Offset of tap (c, r, s) from output position 0 in a group's adjacent phase planes, in
    (c, r, s) order (the packed weights' order).  Memoised; read-only."""
    layout = plane_layout(out_h, out_w, kernel_h, kernel_w, stride, dilation)
    (stride_h, stride_w), (dilation_h, dilation_w) = stride, dilation
    c, r, s = np.meshgrid(np.arange(channels), np.arange(kernel_h), np.arange(kernel_w), indexing="ij")
    row_in, col_in = r * dilation_h, s * dilation_w
    row_phase = np.searchsorted(layout.row_phases, row_in % stride_h)
    col_phase = np.searchsorted(layout.col_phases, col_in % stride_w)
    phases = layout.row_phases.shape[0] * layout.col_phases.shape[0]
    plane = c * phases + row_phase * layout.col_phases.shape[0] + col_phase
    offsets = (plane * layout.plane_h * layout.plane_w
               + (row_in // stride_h) * layout.plane_w + col_in // stride_w)
    return _read_only(offsets.ravel().astype(np.int64))


def rows_per_task(out_h, padded_w, itemsize, tasks_without_rows, channels=CHANNEL_BLOCK,
                  min_positions=1):
    """Output rows per task: ``channels`` accumulator rows within ACCUMULATOR_BYTES, and about four
    tasks per thread when the (sample, group, block) tasks alone are too few — but no task smaller
    than ``min_positions`` positions where the plane allows (a register tile's positions are
    computed whole, so tasks of a few rows would be mostly masked lanes)."""
    fit = max(1, ACCUMULATOR_BYTES // (channels * padded_w * itemsize))
    wanted_chunks = -(-4 * get_num_threads() // max(1, tasks_without_rows))
    sizable_chunks = max(1, out_h * padded_w // min_positions)
    chunks = max(1, min(out_h, wanted_chunks, sizable_chunks))
    return int(max(1, min(fit, -(-out_h // chunks))))


def serial_rows_per_task(out_h, padded_w, itemsize) -> int:
    """Output rows per task of a one-channel kernel on the calling thread: as many as keep the
    accumulator row block within ACCUMULATOR_BYTES.  (Whole planes per task made each call allocate
    plane-sized buffers, which the allocator maps fresh and the kernel then page-faults in.)"""
    return int(max(1, min(out_h, ACCUMULATOR_BYTES // (padded_w * itemsize))))


def tile_rows_per_task(out_h, padded_w, itemsize, tasks_without_rows, dtype, shape):
    """``rows_per_task`` for the register-tile kernel of ``shape``: tasks of at least four tiles."""
    positions = shape.position_bytes // dtype.itemsize
    return rows_per_task(out_h, padded_w, itemsize, tasks_without_rows, shape.channels,
                         min_positions=4 * positions)


def _block_chunks(tasks, blocks):
    """Channel blocks are split over tasks only when (sample, group, rows) tasks are too few to keep
    every thread busy (small images, batch 1)."""
    return max(1, min(blocks, -(-4 * get_num_threads() // max(1, tasks))))


def pads_own_rows(batch, groups, stride, dilation, pads, serial: bool) -> bool:
    """Whether a one-output-channel-per-group layer runs ``_one_channel_padding_kernel`` (or its
    serial twin): a problem on the calling thread at unit stride and dilation without cropping,
    or a stack of planes (``pads_per_task``)."""
    return ((serial and stride == dilation == (1, 1) and min(pads) >= 0)
            or pads_per_task(batch, groups, stride, dilation, pads, get_num_threads()))


def pads_per_task(batch, groups, stride, dilation, pads, threads) -> bool:
    """Whether a one-output-channel-per-group layer runs ``_one_channel_padding_kernel`` (each task
    zero-pads the rows it reads) instead of one padded copy of the whole input.

    Only for stacks of planes (at least four per thread): their tasks span whole planes or long
    row blocks, and skipping the copy halves the memory traffic of these ~2 FLOPs-per-byte layers.
    A few large planes are split into tasks of a few rows each, and every task would copy its
    ``kernel_h - 1`` extra rows again: there the shared copy is cheaper (docs/measurements.md)."""
    return (stride == dilation == (1, 1) and min(pads) >= 0
            and batch * groups >= 4 * threads)


def correlate(x, w, bias, pads, groups, stride=(1, 1), dilation=(1, 1)):
    """conv2d of C-contiguous ``x`` (N, C, H, W) with ``w`` (K, C/groups, R, S) under zero padding
    ``pads`` = (top, bottom, left, right); ``bias`` a (K,) array."""
    batch, _, in_h, in_w = x.shape
    out_channels, _, kernel_h, kernel_w = w.shape
    pad_top, pad_bottom, pad_left, pad_right = pads
    out_h = (in_h + pad_top + pad_bottom - (kernel_h - 1) * dilation[0] - 1) // stride[0] + 1
    out_w = (in_w + pad_left + pad_right - (kernel_w - 1) * dilation[1] - 1) // stride[1] + 1
    out = np.empty((batch, out_channels, out_h, out_w), x.dtype)
    if out.size == 0:
        return out
    layout = plane_layout(out_h, out_w, kernel_h, kernel_w, stride, dilation)
    one_channel = out_channels == groups
    offsets = tap_offsets(w.shape[1], kernel_h, kernel_w, stride, dilation, out_h, out_w)
    if one_channel:
        kernel = _one_channel_kernel
        packed = np.ascontiguousarray(w.reshape(groups, -1))
        serial = runs_serially(out.size * offsets.shape[0])
        rows = (serial_rows_per_task(out_h, layout.plane_w, x.dtype.itemsize) if serial
                else rows_per_task(out_h, layout.plane_w, x.dtype.itemsize, batch * groups,
                                   channels=1))
        # small problems run as one serial task that pads its own buffer (no padded copy)
        if pads_own_rows(batch, groups, stride, dilation, pads, serial):
            local_offsets = tap_offsets(w.shape[1], kernel_h, kernel_w, stride, dilation, rows, out_w)
            one_channel_padding_kernel(serial)(x, packed, local_offsets, bias, out, pad_top,
                                               pad_left, kernel_h, layout.plane_w, rows)
            return out
    else:
        serial = runs_serially(out.size * offsets.shape[0])
        per_group_out = out_channels // groups
        kernel, block = forward_kernel(x.dtype, serial, per_group_out)
        packed = pack_weight(w, groups, block)
        packed = packed.reshape(groups, packed.shape[1], -1, block)
        tasks = _tasks_without_rows(x.dtype, batch, groups, packed.shape[1])
        if serial:
            rows = out_h
        elif x.dtype.kind == "c":
            rows = rows_per_task(out_h, layout.plane_w, x.dtype.itemsize, tasks, block)
        else:
            rows = tile_rows_per_task(out_h, layout.plane_w, x.dtype.itemsize, tasks, x.dtype,
                                      tile_shape_for(per_group_out))
    # a slice of the batch at a time: the planes' copy stays within the workspace cap
    phases = layout.row_phases.shape[0] * layout.col_phases.shape[0]
    sample_bytes = x.shape[1] * phases * layout.plane_h * layout.plane_w * x.dtype.itemsize
    step = max(1, min(batch, get_workspace_limit() // max(1, sample_bytes)))
    for start in range(0, batch, step):
        stop = min(batch, start + step)
        planes = phase_planes(x[start:stop], pads, stride, layout)
        kernel(planes.reshape(stop - start, -1), packed, offsets, bias, out[start:stop],
               layout.reach_w, layout.plane_w, rows)
    return out


# --- input gradient of a strided or dilated layer: one stride-1 correlation per input phase ------
# grad_in at padded position (i * sh + a, j * sw + b) collects grad_out[oh, ow] * w[r, s] over the
# taps whose input offset (r * dh, s * dw) has phase (a, b), from oh = i - (r * dh) // sh (and the
# same for columns): for each phase, a stride-1 correlation of the output gradient (zero-padded by
# the largest shift) with that phase's taps, flipped.  The forward kernels run it with sparse tap
# lists, so no zero is inserted between output-gradient values and none is multiplied.
def input_gradient(grad_out, w, params):
    """grad_in (N, C, H, W) of conv2d at any stride and dilation (``params`` in zero-padding form)."""
    stride_h, stride_w = params.stride_h, params.stride_w
    dilation_h, dilation_w = params.dilation_h, params.dilation_w
    groups, per_group_in = params.groups, params.in_channels_per_group
    per_group_out = params.out_channels_per_group
    kernel_h, kernel_w = params.kernel_h, params.kernel_w
    in_h, in_w = params.in_h, params.in_w
    max_u = (kernel_h - 1) * dilation_h // stride_h
    max_v = (kernel_w - 1) * dilation_w // stride_w
    # Padded input row i * sh + a is input row i * sh + a - pad_top: phase a's rows in grad_in
    # start at i0 = ceil((pad_top - a) / sh).  (conv_transpose2d's output_padding arrives as
    # negative bottom/right padding; rows past the output gradient's reach just receive zeros.)
    row_phases = [(a, -(-(params.pad_top - a) // stride_h)) for a in range(stride_h)]
    col_phases = [(b, -(-(params.pad_left - b) // stride_w)) for b in range(stride_w)]
    row_starts = {a: i0 * stride_h + a - params.pad_top for a, i0 in row_phases}
    col_starts = {b: j0 * stride_w + b - params.pad_left for b, j0 in col_phases}
    # one zero-padded copy of the output gradient serves every phase: max_u rows above (the
    # largest shift), and below/right enough for the furthest phase's last row plus one (reads of
    # discarded columns run one row past)
    need_h = max(i0 + len(range(row_starts[a], in_h, stride_h)) for a, i0 in row_phases)
    need_w = max(j0 + len(range(col_starts[b], in_w, stride_w)) for b, j0 in col_phases)
    pads = (max_u, max(0, need_h + 1 - params.out_h), max_v, max(0, need_w + 1 - params.out_w))
    plane_h = params.out_h + pads[0] + pads[1]
    plane_w = params.out_w + pads[2] + pads[3]
    transposed = w.reshape(groups, per_group_out, per_group_in, kernel_h, kernel_w).transpose(0, 2, 1, 3, 4)
    one_channel = per_group_in == 1
    # its output channels are the layer's input channels
    kernel, block = ((_one_channel_kernel, 1) if one_channel
                     else forward_kernel(params.dtype, channels=per_group_in))
    grad_in = np.empty(params.input_shape, dtype=params.dtype)
    phases = []  # (target view, packed weights, tap offsets)
    for a, i0 in row_phases:
        taps_r = [r for r in range(kernel_h) if (r * dilation_h) % stride_h == a]
        for b, j0 in col_phases:
            taps_s = [s for s in range(kernel_w) if (s * dilation_w) % stride_w == b]
            target = grad_in[:, :, row_starts[a]::stride_h, col_starts[b]::stride_w]
            if not taps_r or not taps_s:
                target[...] = 0  # no tap reaches this phase
                continue
            if target.size == 0:
                continue
            k, r, s = np.meshgrid(np.arange(per_group_out), taps_r, taps_s, indexing="ij")
            offsets = (k * plane_h * plane_w + (i0 + max_u - r * dilation_h // stride_h) * plane_w
                       + (j0 + max_v - s * dilation_w // stride_w))
            phase_weights = transposed[:, :, :, taps_r][:, :, :, :, taps_s]  # (G, Cg, Kg, Ra, Sb)
            if one_channel:
                packed = np.ascontiguousarray(phase_weights.reshape(groups, -1))
            else:
                packed = pack_weight(phase_weights.reshape(groups * per_group_in, per_group_out,
                                                           len(taps_r), len(taps_s)), groups, block)
                packed = packed.reshape(groups, packed.shape[1], -1, block)
            phases.append((target, packed, offsets.ravel().astype(np.int64)))
    if not phases:
        return grad_in
    batch, itemsize = params.batch, params.dtype.itemsize
    zero_bias = bias_or_zeros(None, params.in_channels, params.dtype)
    plane_bytes = params.out_channels * plane_h * plane_w * itemsize
    step = max(1, min(batch, get_workspace_limit() // max(1, plane_bytes)))
    for start in range(0, batch, step):
        stop = min(batch, start + step)
        planes = pad_flat(grad_out[start:stop], *pads).reshape(stop - start, -1)
        for target, packed, offsets in phases:
            out_h = target.shape[2]
            blocks = 1 if one_channel else packed.shape[1]
            tasks = _tasks_without_rows(params.dtype, stop - start, groups, blocks)
            if one_channel or params.dtype.kind == "c":
                rows = rows_per_task(out_h, plane_w, itemsize, tasks, block)
            else:
                rows = tile_rows_per_task(out_h, plane_w, itemsize, tasks, params.dtype,
                                          tile_shape_for(per_group_in))
            # the target is a strided view of grad_in: the kernel writes the phase in place
            kernel(planes, packed, offsets, zero_bias, target[start:stop], max_v + 1, plane_w, rows)
    return grad_in


def backward_input_pads(params):
    """Zero padding of grad_output for the input gradient as a stride-1 correlation, or None when
    the forward padding exceeds the kernel's reach (a cropped full correlation: ``input_gradient``
    handles it)."""
    pads = (
        params.kernel_h - 1 - params.pad_top, params.in_h - params.out_h + params.pad_top,
        params.kernel_w - 1 - params.pad_left, params.in_w - params.out_w + params.pad_left,
    )
    return pads if min(pads) >= 0 else None


def transposed_flipped_weight(w, groups):
    """(K, Cg, R, S) -> (C, Kg, R, S): w'[g*Cg + c, k] = w[g*Kg + k, c] rotated by 180 degrees."""
    out_channels, per_group_in, kernel_h, kernel_w = w.shape
    per_group_out = out_channels // groups
    grouped = w.reshape(groups, per_group_out, per_group_in, kernel_h, kernel_w)[..., ::-1, ::-1]
    return np.ascontiguousarray(grouped.transpose(0, 2, 1, 3, 4)).reshape(
        groups * per_group_in, per_group_out, kernel_h, kernel_w
    )


# --- weight gradient: sixteen (or eight) reductions per pass ------------------------------------
# grad_w[k, c, tap] = sum over samples and output positions p of grad_out[k, p] * plane[c][p + offset
# (tap)], with grad_out widened to the planes' row length (zeros in the discarded columns) and the
# same phase planes and tap offsets as the forward: any stride and dilation.  Four channels x four
# taps are sixteen scalar reductions in one loop (eight taps for one output channel per group),
# which LLVM turns into vector accumulators held in registers.
@njit_kernel
def _four_tap_sums(sums, g0, g1, g2, g3, planes, base, offsets, length):
    """sums[t, j] += sum_q g_j[q] * planes[base + offsets[t] + q] for t < 4, j < 4."""
    x0, x1 = planes[base + offsets[0]:], planes[base + offsets[1]:]
    x2, x3 = planes[base + offsets[2]:], planes[base + offsets[3]:]
    zero = sums.dtype.type(0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
    for q in range(length):
        v0, v1, v2, v3 = x0[q], x1[q], x2[q], x3[q]
        h0, h1, h2, h3 = g0[q], g1[q], g2[q], g3[q]
        s00 += h0 * v0
        s01 += h1 * v0
        s02 += h2 * v0
        s03 += h3 * v0
        s10 += h0 * v1
        s11 += h1 * v1
        s12 += h2 * v1
        s13 += h3 * v1
        s20 += h0 * v2
        s21 += h1 * v2
        s22 += h2 * v2
        s23 += h3 * v2
        s30 += h0 * v3
        s31 += h1 * v3
        s32 += h2 * v3
        s33 += h3 * v3
    sums[0, 0] += s00
    sums[0, 1] += s01
    sums[0, 2] += s02
    sums[0, 3] += s03
    sums[1, 0] += s10
    sums[1, 1] += s11
    sums[1, 2] += s12
    sums[1, 3] += s13
    sums[2, 0] += s20
    sums[2, 1] += s21
    sums[2, 2] += s22
    sums[2, 3] += s23
    sums[3, 0] += s30
    sums[3, 1] += s31
    sums[3, 2] += s32
    sums[3, 3] += s33


@njit_kernel
def _one_tap_sums(sums, g0, g1, g2, g3, planes, base, offsets, length):
    """sums[0, j] += sum_q g_j[q] * planes[base + offsets[0] + q] for j < 4."""
    x0 = planes[base + offsets[0]:]
    zero = sums.dtype.type(0)
    s0 = s1 = s2 = s3 = zero
    for q in range(length):
        v0 = x0[q]
        s0 += g0[q] * v0
        s1 += g1[q] * v0
        s2 += g2[q] * v0
        s3 += g3[q] * v0
    sums[0, 0] += s0
    sums[0, 1] += s1
    sums[0, 2] += s2
    sums[0, 3] += s3


@njit_kernel
def _eight_tap_sums_one_channel(sums, g0, planes, base, offsets, length):
    """sums[t, 0] += sum_q g0[q] * planes[base + offsets[t] + q] for t < 8."""
    x0, x1 = planes[base + offsets[0]:], planes[base + offsets[1]:]
    x2, x3 = planes[base + offsets[2]:], planes[base + offsets[3]:]
    x4, x5 = planes[base + offsets[4]:], planes[base + offsets[5]:]
    x6, x7 = planes[base + offsets[6]:], planes[base + offsets[7]:]
    zero = sums.dtype.type(0)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    for q in range(length):
        h = g0[q]
        s0 += h * x0[q]
        s1 += h * x1[q]
        s2 += h * x2[q]
        s3 += h * x3[q]
        s4 += h * x4[q]
        s5 += h * x5[q]
        s6 += h * x6[q]
        s7 += h * x7[q]
    sums[0, 0] += s0
    sums[1, 0] += s1
    sums[2, 0] += s2
    sums[3, 0] += s3
    sums[4, 0] += s4
    sums[5, 0] += s5
    sums[6, 0] += s6
    sums[7, 0] += s7


@njit_kernel
def _one_tap_sums_one_channel(sums, g0, planes, base, offsets, length):
    x0 = planes[base + offsets[0]:]
    total = sums.dtype.type(0)
    for q in range(length):
        total += g0[q] * x0[q]
    sums[0, 0] += total


@njit_parallel
def _widen_kernel(grad_out, out, padded_w):
    """out[n, g, b, j, oh * padded_w + ow] = grad_out[n, g*Kg + b*B + j, oh, ow] (B = the block
    size, out.shape[3]); zeros elsewhere (discarded columns, and the zero channels that pad the
    last block)."""
    batch, groups, blocks, block_size, _ = out.shape
    out_channels, out_h, out_w = grad_out.shape[1], grad_out.shape[2], grad_out.shape[3]
    per_group_out = out_channels // groups
    for index in prange(batch * groups * blocks * block_size):
        j = index % block_size
        block = (index // block_size) % blocks
        g = (index // (block_size * blocks)) % groups
        n = index // (block_size * blocks * groups)
        flat = out[n, g, block, j]
        flat[:] = 0
        k_in_group = block * block_size + j
        if k_in_group < per_group_out:
            for oh in range(out_h):
                flat[oh * padded_w:oh * padded_w + out_w] = grad_out[n, g * per_group_out + k_in_group, oh]


@njit_parallel
def _weight_kernel(planes, wide, offsets, partial, channel_size, length, samples_per_task):
    """partial[t, g, b, c, tap, j] = sum over task t's samples of the dot product of widened
    output-gradient plane (g, b, j) with input channel (g, c)'s phase planes at the tap's offset.
    ``channel_size``: values of one input channel's phase planes."""
    batch, groups, blocks, block_size, _ = wide.shape
    per_group_in, tap_count = partial.shape[3], partial.shape[4]
    sample_chunks = partial.shape[0]
    for task in prange(sample_chunks * groups * blocks * per_group_in):
        c = task % per_group_in
        block = (task // per_group_in) % blocks
        g = (task // (per_group_in * blocks)) % groups
        chunk = task // (per_group_in * blocks * groups)
        sums = partial[chunk, g, block, c]
        sums[:] = 0
        base = (g * per_group_in + c) * channel_size
        for n in range(chunk * samples_per_task, min(batch, (chunk + 1) * samples_per_task)):
            sample = planes[n]
            grads = wide[n, g, block]
            t = 0
            if block_size == 1:
                while t + 8 <= tap_count:
                    _eight_tap_sums_one_channel(sums[t:t + 8], grads[0], sample, base,
                                                offsets[t:t + 8], length)
                    t += 8
                while t < tap_count:
                    _one_tap_sums_one_channel(sums[t:t + 1], grads[0], sample, base,
                                              offsets[t:t + 1], length)
                    t += 1
            else:
                while t + 4 <= tap_count:
                    _four_tap_sums(sums[t:t + 4], grads[0], grads[1], grads[2], grads[3], sample,
                                   base, offsets[t:t + 4], length)
                    t += 4
                while t < tap_count:
                    _one_tap_sums(sums[t:t + 1], grads[0], grads[1], grads[2], grads[3], sample,
                                  base, offsets[t:t + 1], length)
                    t += 1


# --- weight gradient, real values: register tiles over output channels ---------------------------
# The reduction runs over every position of every sample, so its tile keeps output channels in the
# vector lanes and the reduction in the accumulators (``fastconv._cpu.lane_tile_shape``): per
# position, ``vectors`` loads of the output gradient stored channels last, ``pairs`` broadcasts of
# input values at (input channel, tap) offsets, ``pairs * vectors`` fused multiply-adds; the tile
# is stored once per segment of positions.  A task transposes each segment of its output-gradient
# block into a buffer that stays in L2 while every run of pairs of the task reduces it (a whole
# transposed copy would be written to and read back from memory, and cost page faults, on large
# planes).  The loop kernel above instead reduced sixteen dot products per pass and summed each
# one's vector across its lanes after every sample and group of taps.
_TRANSPOSE_CHANNELS = 8
"""Source rows the transposition reads at once: fewer than an L1 set's ways (a block's rows all
at once can share one set when a plane is a multiple of 4 KiB, and evict each other)."""


@njit_kernel
def _transpose_segment(grad_out, n, first_channel, channels, padded_w, start, stop, segment):
    """segment[p - start, j] = grad_out[n, first_channel + j, p // padded_w, p % padded_w] for
    positions start <= p < stop of the rows at pitch ``padded_w``; zeros in the discarded columns
    (p % padded_w >= out_w) and in the channels j >= ``channels`` that pad the block."""
    out_w = grad_out.shape[3]
    segment[:stop - start] = 0
    for oh in range(start // padded_w, (stop - 1) // padded_w + 1):
        row_start = oh * padded_w
        first = max(start, row_start) - row_start
        last = min(stop - row_start, out_w)
        # position by position, a position's channels one contiguous (vectorised) store
        for j0 in range(0, channels, _TRANSPOSE_CHANNELS):
            j1 = min(channels, j0 + _TRANSPOSE_CHANNELS)
            source = grad_out[n, first_channel + j0:first_channel + j1, oh]
            for ow in range(first, last):
                target = segment[row_start + ow - start, j0:j1]
                for j in range(j1 - j0):
                    target[j] = source[j, ow]


_TRANSPOSE_PAIRS = 16


@njit_kernel
def _weight_tile_task(task, planes, grad_out, pair_offsets, positions, partial, group_values,
                      padded_w, length, split, shape):
    """Task ``task`` of ``_weight_tile_kernel``: one (slice of samples and positions, group,
    channel block, group of runs of ``shape.channels`` pairs).  ``split`` = (samples per slice,
    positions per slice, runs per task, positions per segment).  Its runs' sums gather in a
    task-sized buffer (pair-major, as the tiles store them) and reach ``partial`` (channel-major,
    the weight's layout) once, when the task ends."""
    samples_per_slice, positions_per_slice, runs_per_task, segment_size = split
    batch = planes.shape[0]
    groups, per_group_out, pairs = partial.shape[1], partial.shape[2], partial.shape[3]
    block_size = shape.vectors * shape.vector_bytes // planes.itemsize
    blocks = -(-per_group_out // block_size)
    run_size = shape.channels * block_size  # values of one run's sums
    runs = pair_offsets.shape[0] // shape.channels
    run_groups = -(-runs // runs_per_task)
    position_slices = -(-length // positions_per_slice)
    run_group = task % run_groups
    block = (task // run_groups) % blocks
    g = (task // (run_groups * blocks)) % groups
    chunk = task // (run_groups * blocks * groups)
    sample_slice, position_slice = chunk // position_slices, chunk % position_slices
    first_run = run_group * runs_per_task
    last_run = min(runs, first_run + runs_per_task)
    first_channel = block * block_size  # within the group
    channels = min(block_size, per_group_out - first_channel)
    task_sums = np.zeros((last_run - first_run) * run_size, dtype=partial.dtype)
    segment = np.empty((segment_size, block_size), dtype=partial.dtype)
    grads = segment.reshape(segment_size * block_size)
    segment_sums = np.empty(run_size, dtype=partial.dtype)
    first_position = position_slice * positions_per_slice
    last_position = min(length, first_position + positions_per_slice)
    base = g * group_values
    for n in range(sample_slice * samples_per_slice,
                   min(batch, (sample_slice + 1) * samples_per_slice)):
        sample = planes[n]
        for start in range(first_position, last_position, segment_size):
            stop = min(last_position, start + segment_size)
            _transpose_segment(grad_out, n, g * per_group_out + first_channel, channels,
                               padded_w, start, stop, segment)
            for run in range(first_run, last_run):
                offsets = pair_offsets[run * shape.channels:(run + 1) * shape.channels]
                tile = _simd.tile_zeros(planes.dtype, shape)
                for p in range(start, stop):
                    tile = _simd.tile_fma_gathered(tile, grads, (p - start) * block_size, sample,
                                                   base + positions[p], offsets)
                _simd.tile_store(tile, segment_sums, 0, block_size)
                run_sums = task_sums[(run - first_run) * run_size:(run - first_run + 1) * run_size]
                for i in range(run_size):
                    run_sums[i] += segment_sums[i]
    # channel-major on the way out, a few pairs at a time: their rows of sums (a few KiB) stay in
    # L1 while every channel takes its values
    first_pair = first_run * shape.channels
    last_pair = min(pairs, last_run * shape.channels)
    for pair0 in range(first_pair, last_pair, _TRANSPOSE_PAIRS):
        pair1 = min(last_pair, pair0 + _TRANSPOSE_PAIRS)
        for j in range(channels):
            target = partial[chunk, g, first_channel + j]
            for pair in range(pair0, pair1):
                target[pair] = task_sums[(pair - first_pair) * block_size + j]


@njit_parallel
def _weight_tile_kernel(planes, grad_out, pair_offsets, positions, partial, group_values, padded_w,
                        length, split, shape):
    """partial[slice, g, k, pair] = sum over the slice's samples and positions p of
    grad_out[n, g * Kg + k] (rows at pitch ``padded_w``, zeros past ``out_w``) at p times
    planes[n, g * group_values + pair_offsets[pair] + positions[p]]."""
    block_size = shape.vectors * shape.vector_bytes // planes.itemsize
    blocks = -(-partial.shape[2] // block_size)
    runs = pair_offsets.shape[0] // shape.channels
    tasks = partial.shape[0] * partial.shape[1] * blocks * -(-runs // split[2])
    for task in prange(tasks):
        _weight_tile_task(np.int64(task), planes, grad_out, pair_offsets, positions, partial,
                          group_values, padded_w, length, split, shape)


SEGMENT_BYTES = 128 << 10
"""Bytes of transposed output gradient (a segment of positions x the channel block) every run of
a task reduces before the next segment: well inside the smallest L2 these kernels meet."""

TASKS_PER_THREAD = 4
"""Tasks the weight-gradient tiles aim for per thread: tasks differ in size by at most one run,
so a few per thread balance them."""

MIN_SLICE_POSITIONS = 256
"""Fewest positions worth a slice of their own (a slice's partial sums cost a tile store per run)."""


def weight_tile_split(batch, groups, blocks, runs, run_values, length, block_size, itemsize,
                      threads):
    """(samples per slice, positions per slice, runs per task, positions per segment) of the
    weight-gradient tiles, for ``TASKS_PER_THREAD`` tasks per thread: the (group, block) units
    split into slices of the batch, then (a batch too small) of the positions, each slice summing
    into its own partial sums; the runs split where slices cannot reach the count (every run group
    transposes the output gradient again) or where a task's sums (``run_values`` a run) would
    outgrow ``TASK_SUMS_BYTES``."""
    target = TASKS_PER_THREAD * threads
    units = groups * blocks
    wanted = -(-target // units)
    sample_slices = min(batch, wanted)
    position_slices = max(1, min(-(-wanted // sample_slices), length // MIN_SLICE_POSITIONS))
    run_groups = min(runs, -(-target // (units * sample_slices * position_slices)))
    runs_per_task = min(-(-runs // run_groups), max(1, TASK_SUMS_BYTES // (run_values * itemsize)))
    segment = max(64, SEGMENT_BYTES // (block_size * itemsize))
    return (-(-batch // sample_slices), -(-length // position_slices), runs_per_task, segment)


TASK_SUMS_BYTES = 256 << 10
"""Most bytes of sums one task gathers before writing them out: they stay in L2, so turning them
channel-major on the way out reads no memory (a whole large weight's sums would: a 512 x 512 x 3
x 3 layer's are 9 MB)."""


@functools.lru_cache(maxsize=64)
def pair_offsets(per_group_in, channel_size, offsets_key, run):
    """Offsets of every (input channel, tap) pair in a group's planes, channel-major, padded to a
    multiple of ``run`` with the last pair (its sums are computed and dropped)."""
    tap_offsets_ = np.frombuffer(offsets_key, dtype=np.int64)
    pairs = (np.arange(per_group_in, dtype=np.int64)[:, None] * channel_size
             + tap_offsets_[None, :]).ravel()
    padded = -(-pairs.size // run) * run
    out = np.full(padded, pairs[-1], dtype=np.int64)
    out[:pairs.size] = pairs
    out.flags.writeable = False
    return out


def reduce_weight_gradient_tiles(planes, grad_out, offsets, groups, per_group_in, channel_size,
                                 padded_w, length, shape, split=None, positions=None):
    """(G, Kg, Cg * taps) weight-gradient sums on register tiles (``_weight_tile_kernel``):
    ``grad_out`` (N, K, rows, out_w) read at row pitch ``padded_w`` over ``length`` positions,
    ``planes`` (N, C * channel_size), ``offsets`` the taps' offsets within a channel's planes;
    ``split`` as ``weight_tile_split`` returns (its default); ``positions`` the offset of each
    position in the planes (default: position p at p, the flattened stride-1 plane; a strided
    conv3d passes its own, with ``padded_w`` = ``length``, and needs no phase volumes)."""
    batch = planes.shape[0]
    per_group_out = grad_out.shape[1] // groups
    block_size = shape.vectors * shape.vector_bytes // planes.itemsize
    blocks = -(-per_group_out // block_size)
    pairs = pair_offsets(per_group_in, channel_size, np.ascontiguousarray(offsets, np.int64)
                         .tobytes(), shape.channels)
    runs = pairs.size // shape.channels
    if split is None:
        split = weight_tile_split(batch, groups, blocks, runs, shape.channels * block_size,
                                  length, block_size, planes.itemsize, get_num_threads())
    slices = -(-batch // split[0]) * -(-length // split[1])
    partial = np.empty((slices, groups, per_group_out, per_group_in * offsets.shape[0]),
                       dtype=planes.dtype)
    if positions is None:
        positions = _identity_positions(length)
    _weight_tile_kernel(planes, grad_out, pairs, positions, partial, per_group_in * channel_size,
                        padded_w, length, tuple(np.int64(v) for v in split), shape)
    return partial[0] if slices == 1 else partial.sum(axis=0)


_identity = np.arange(0, dtype=np.int64)


def _identity_positions(length):
    """0, 1, ..., length - 1 (read-only): a view of one shared array, grown when a longer one is
    asked for, so repeated layers allocate nothing and no per-length copies are kept."""
    global _identity
    identity = _identity
    if identity.size < length:
        identity = np.arange(max(length, 2 * identity.size), dtype=np.int64)
        identity.flags.writeable = False
        _identity = identity
    return identity[:length]


def widen_output_gradient(grad_out, wide, padded_w):
    """``wide[n, g, b, j]`` = output-gradient channel (g, b, j)'s rows at pitch ``padded_w``, zeros
    elsewhere: the reduction kernel's operand (``_widen_kernel``)."""
    _widen_kernel(grad_out, wide, padded_w)


def reduce_weight_gradient(planes, wide, offsets, per_group_in, channel_size, length,
                           samples_per_task=None):
    """(G, blocks, Cg, taps, block) sums of ``wide`` against ``planes`` (N, C * channel_size) at
    each tap's offset over ``length`` positions (``_weight_kernel``); the samples split over tasks
    when (group, block, channel) tasks alone cannot occupy the threads."""
    batch, groups, blocks, block_size, _ = wide.shape
    if samples_per_task is None:
        chunks = max(1, min(batch, -(-2 * get_num_threads() // (groups * blocks * per_group_in))))
        samples_per_task = -(-batch // chunks)
    samples = min(samples_per_task, batch)
    partial = np.empty((-(-batch // samples), groups, blocks, per_group_in, offsets.shape[0],
                        block_size), dtype=planes.dtype)
    _weight_kernel(planes, wide, offsets, partial, channel_size, length, samples)
    return partial.sum(axis=0)


def _weight_gradient_geometry(params):
    """(stride, pads, plane layout, values of one input channel's phase planes, the taps' offsets
    in them, positions reduced) of a weight gradient: past ``length``, the taps of the last row's
    discarded columns would read beyond the planes."""
    stride, dilation = (params.stride_h, params.stride_w), (params.dilation_h, params.dilation_w)
    pads = (params.pad_top, params.pad_bottom, params.pad_left, params.pad_right)
    layout = plane_layout(params.out_h, params.out_w, params.kernel_h, params.kernel_w, stride,
                          dilation)
    phases = layout.row_phases.shape[0] * layout.col_phases.shape[0]
    offsets = tap_offsets(1, params.kernel_h, params.kernel_w, stride, dilation, params.out_h,
                          params.out_w)
    length = params.out_h * layout.plane_w - (layout.reach_w - 1)
    return stride, pads, layout, phases * layout.plane_h * layout.plane_w, offsets, length


def weight_gradient(grad_out, x, params):
    """grad_w (K, Cg, R, S) of conv2d (``params`` in zero-padding form, ``applies``)."""
    groups = params.groups
    per_group_out, per_group_in = params.out_channels_per_group, params.in_channels_per_group
    if uses_weight_tiles(params.dtype, per_group_out,
                         per_group_in * params.kernel_h * params.kernel_w):
        return _weight_gradient_tiles(grad_out, x, params)
    block_size = 1 if per_group_out == 1 else CHANNEL_BLOCK
    blocks = -(-per_group_out // block_size)
    stride, pads, layout, channel_size, offsets, length = _weight_gradient_geometry(params)
    span = params.out_h * layout.plane_w  # the discarded columns hold zeros in ``wide``
    # split the samples when (group, block, channel) tasks alone cannot occupy the threads; each
    # sample slice writes its own partial sums, added at the end
    tasks = groups * blocks * per_group_in
    chunks = max(1, min(params.batch, -(-2 * get_num_threads() // tasks)))
    samples_per_task = -(-params.batch // chunks)
    # input planes and widened gradients, a slice of the batch at a time within the cap
    sample_bytes = (params.in_channels * channel_size
                    + groups * blocks * block_size * span) * params.dtype.itemsize
    step = max(1, min(params.batch, get_workspace_limit() // max(1, sample_bytes)))
    taps = params.kernel_h * params.kernel_w
    grad_w = np.zeros((groups, blocks, per_group_in, taps, block_size), dtype=params.dtype)
    for start in range(0, params.batch, step):
        stop = min(params.batch, start + step)
        planes = phase_planes(x[start:stop], pads, stride, layout).reshape(stop - start, -1)
        wide = np.empty((stop - start, groups, blocks, block_size, span), dtype=params.dtype)
        _widen_kernel(grad_out[start:stop], wide, layout.plane_w)
        grad_w += reduce_weight_gradient(planes, wide, offsets, per_group_in, channel_size, length,
                                         samples_per_task)
    by_channel = grad_w.transpose(0, 1, 4, 2, 3).reshape(
        groups, blocks * block_size, per_group_in, params.kernel_h, params.kernel_w
    )
    return np.ascontiguousarray(by_channel[:, :per_group_out]).reshape(params.weight_shape)


TILE_LANE_USE = 0.6
"""Least share of a weight-gradient tile's multiply-adds that must be real (not padding channels
of the last block or padding pairs of the last run) for the tiles to beat the loop kernel, which
pads to four channels and no pairs.  LeNet's first layer (6 channels x 25 taps) is the case in
point: a fifth real on AVX-512 (a 16-lane vector, runs of 24 pairs), about half on AVX2 (8 lanes,
runs of 12), and faster on the loop kernel on both."""


def uses_weight_tiles(dtype, per_group_out, pairs) -> bool:
    """Whether the weight gradient of ``per_group_out`` output channels and ``pairs`` (input
    channel, tap) pairs per group runs on register tiles: real values, more than one output channel
    per group (depthwise layers take the one-channel loop kernel), and at least ``TILE_LANE_USE``
    of the tile's work real."""
    if dtype.kind != "f" or per_group_out == 1:
        return False
    shape = lane_tile_shape(per_group_out, dtype.itemsize)
    block_size = shape.vectors * shape.vector_bytes // dtype.itemsize
    padded_channels = -(-per_group_out // block_size) * block_size
    padded_pairs = -(-pairs // shape.channels) * shape.channels
    return per_group_out * pairs >= TILE_LANE_USE * padded_channels * padded_pairs


def _weight_gradient_tiles(grad_out, x, params):
    """``weight_gradient`` on register tiles (``uses_weight_tiles``), a slice of the batch at a
    time within the workspace cap."""
    groups = params.groups
    per_group_out, per_group_in = params.out_channels_per_group, params.in_channels_per_group
    shape = lane_tile_shape(per_group_out, params.dtype.itemsize)
    stride, pads, layout, channel_size, offsets, length = _weight_gradient_geometry(params)
    sample_bytes = params.in_channels * channel_size * params.dtype.itemsize
    step = max(1, min(params.batch, get_workspace_limit() // max(1, sample_bytes)))
    sums = None
    for start in range(0, params.batch, step):
        stop = min(params.batch, start + step)
        planes = phase_planes(x[start:stop], pads, stride, layout).reshape(stop - start, -1)
        part = reduce_weight_gradient_tiles(planes, grad_out[start:stop], offsets, groups,
                                            per_group_in, channel_size, layout.plane_w, length,
                                            shape)
        sums = part if sums is None else sums + part
    return sums.reshape(params.weight_shape)
