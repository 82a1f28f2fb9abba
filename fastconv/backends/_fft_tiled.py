"""Overlap-save FFT convolution on tiles: small kernel spectra, each input tile transformed once.

The full-size FFT path transforms every (output, input) kernel pair padded to the whole image; for
a multi-channel layer those K * C/groups transforms dominate.  Here the (padded) input is cut into
tiles of Lh x Lw samples that overlap by the dilated kernel's extent minus one (overlap-save, as
scipy's ``oaconvolve`` and NNPACK do):

* the kernel spectra are taken once per call at the tile size (K * C/groups small transforms);
* each tile of each input channel is transformed once and its spectrum reused by every output
  channel: per frequency bin, the channel mixing is a small complex matrix-vector product;
* each (tile, output channel) spectrum is inverted once; a circular correlation of length L with a
  kernel of extent R is exact at the first L - R + 1 positions, which are the ones kept.

One task (a ``prange`` iteration) runs a few consecutive tiles through gather, forward transform,
channel mixing, inverse transform and scatter while its buffers are still in cache; the transforms
run single-threaded inside the task (rocket-fft's compiled pocketfft), the parallelism is over tasks.

Stride subsamples the stride-1 correlation inside each tile; dilation spreads the kernel's taps in
its (tile-size) transform buffer, as on the full-size path.

The tile is chosen by a cost model (``choose``, bottom of this module): every pair of 2^a 3^b
lengths from the kernel's extent up to the full transform length, costed as transforms + mixing +
copies per tile (with a penalty when a tile's working set outgrows L2), the kernel spectra, and a
task's read of them; the full-size path is costed alike and wins for images about the kernel's
size.  Memory: the kernel spectra of an output-channel chunk (3x their complex size while being
laid out) plus each thread's task buffers, within the workspace cap (the chunk shrinks to fit).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import prange

from .. import _simd
from .. import _transforms as transforms
from .._config import get_num_threads, njit_inline, njit_kernel, njit_parallel

MIX_BYTES = 64
"""Bytes of interleaved (re, im) bins per accumulator of the channel mixing: 8 complex64 or 4
complex128 values, one AVX-512 register.  Two tiles x four output channels of accumulators, the two
input vectors and their swapped copies take 12 of the 32 registers; on AVX2 (two registers each)
LLVM spills a few, yet 32 bytes measured no faster there (within 10%, AVX2 code on Zen 4)."""

MIX_WEIGHT_BYTES = 16 << 10
"""Bytes of mixing weights one pass over a task's tiles reads: half of a 32 KiB L1 data cache."""


# --- kernels ----------------------------------------------------------------------------------
@njit_kernel
def _gather(x, tiles, first_tile, tiles_h, tiles_w, step_h, step_w, pad_top, pad_left):
    """tiles[g, c] = the tile_h x tile_w window of the zero-padded x[n, c] at the tile's origin
    (zeros where the window leaves the input)."""
    in_h, in_w = x.shape[2], x.shape[3]
    count, channels, tile_h, tile_w = tiles.shape
    for g in range(count):
        tile = first_tile + g
        n = tile // (tiles_h * tiles_w)
        row0 = ((tile // tiles_w) % tiles_h) * step_h - pad_top
        col0 = (tile % tiles_w) * step_w - pad_left
        lo = min(max(0, -col0), tile_w)
        hi = max(lo, min(tile_w, in_w - col0))
        for c in range(channels):
            for r in range(tile_h):
                dest = tiles[g, c, r]
                row = row0 + r
                if row < 0 or row >= in_h:
                    dest[:] = 0
                    continue
                source = x[n, c, row, col0 + lo:col0 + hi]
                inside = dest[lo:hi]
                for q in range(lo):
                    dest[q] = 0
                for q in range(hi - lo):  # indexed from 0 on slices, so the copy vectorises
                    inside[q] = source[q]
                for q in range(hi, tile_w):
                    dest[q] = 0


@njit_inline
def _load(array, start, width):
    """A MIX_BYTES vector at ``start``; masked to the first ``width`` lanes only for a spectrum's
    last, partial vector."""
    if width == MIX_BYTES // array.itemsize:
        return _simd.load(array, start, MIX_BYTES)
    return _simd.load_first(array, start, MIX_BYTES, width)


@njit_inline
def _store(array, start, value, width):
    if width == MIX_BYTES // array.itemsize:
        _simd.store(array, start, value)
    else:
        _simd.store_first(array, start, value, width)


@njit_inline
def _mac(x, x_swapped, w_flat, at, lanes, acc):
    """acc + x * conj(W) on interleaved (re, im) lanes: x * (wr, wr) + swap(x) * (wi, -wi), the
    two weight vectors at ``at`` and ``at + lanes``."""
    acc = _simd.fma(x, _simd.load(w_flat, at, MIX_BYTES), acc)
    return _simd.fma(x_swapped, _simd.load(w_flat, at + lanes, MIX_BYTES), acc)


@njit_inline
def _two_tiles_four_channels(x_flat, x_base, tile_stride, size, w_flat, w_base, channels, lanes,
                             width):
    """Accumulators of one vector of bins for two tiles x four output channels: each weight vector
    loaded feeds two tiles, each input vector four channels."""
    a0 = _simd.zeros(w_flat.dtype, MIX_BYTES)
    a1, a2, a3, b0, b1, b2, b3 = a0, a0, a0, a0, a0, a0, a0
    for c in range(channels):
        x = _load(x_flat, x_base + c * size, width)
        y = _load(x_flat, x_base + tile_stride + c * size, width)
        xs = _simd.swap_pairs(x)
        ys = _simd.swap_pairs(y)
        at = w_base + c * 8 * lanes
        a0 = _mac(x, xs, w_flat, at, lanes, a0)
        b0 = _mac(y, ys, w_flat, at, lanes, b0)
        a1 = _mac(x, xs, w_flat, at + 2 * lanes, lanes, a1)
        b1 = _mac(y, ys, w_flat, at + 2 * lanes, lanes, b1)
        a2 = _mac(x, xs, w_flat, at + 4 * lanes, lanes, a2)
        b2 = _mac(y, ys, w_flat, at + 4 * lanes, lanes, b2)
        a3 = _mac(x, xs, w_flat, at + 6 * lanes, lanes, a3)
        b3 = _mac(y, ys, w_flat, at + 6 * lanes, lanes, b3)
    return a0, a1, a2, a3, b0, b1, b2, b3


@njit_inline
def _one_tile_four_channels(x_flat, x_base, size, w_flat, w_base, channels, lanes, width):
    a0 = _simd.zeros(w_flat.dtype, MIX_BYTES)
    a1, a2, a3 = a0, a0, a0
    for c in range(channels):
        x = _load(x_flat, x_base + c * size, width)
        xs = _simd.swap_pairs(x)
        at = w_base + c * 8 * lanes
        a0 = _mac(x, xs, w_flat, at, lanes, a0)
        a1 = _mac(x, xs, w_flat, at + 2 * lanes, lanes, a1)
        a2 = _mac(x, xs, w_flat, at + 4 * lanes, lanes, a2)
        a3 = _mac(x, xs, w_flat, at + 6 * lanes, lanes, a3)
    return a0, a1, a2, a3


@njit_inline
def _one_tile_one_channel(x_flat, x_base, size, w_flat, w_base, channels, lanes, width):
    a0 = _simd.zeros(w_flat.dtype, MIX_BYTES)
    for c in range(channels):
        x = _load(x_flat, x_base + c * size, width)
        a0 = _mac(x, _simd.swap_pairs(x), w_flat, w_base + c * 2 * lanes, lanes, a0)
    return a0


@njit_kernel
def _mix(spectra, w_mix, blocks, products, channels):
    """products[g, j] = sum over c in j's group of spectra[g, c] * conj(W[j, c]), bin by bin.

    The mixing is pointwise, so each (tile, channel) spectrum is one flat run of interleaved
    (re, im) values cut into MIX_BYTES vectors.  Output channels go in blocks (``blocks`` rows:
    first channel j, channel count 4 or 1, first input channel, offset of the block's weights in
    ``w_mix``); a block's weights are (vectors, C/groups, count, 2, lanes) values, contiguous in
    the order the loops read them.  Loop order: block, a span of vectors
    whose block weights fit in L1 (read again for every pair of tiles), pair of tiles, vector,
    input channel; the accumulators of two tiles x four channels stay in registers.  The task's
    weights are read from memory once (they outgrow L2 with many channels), its spectra once per
    block (they stay in L2)."""
    count, all_channels = spectra.shape[0], spectra.shape[1]
    chunk_channels = products.shape[1]
    lanes = MIX_BYTES // w_mix.itemsize
    size = spectra.shape[2] * spectra.shape[3] * 2  # floats per spectrum
    vectors = -(-size // lanes)
    x_flat = spectra.reshape(spectra.size).view(w_mix.dtype)
    y_flat = products.reshape(products.size).view(w_mix.dtype)
    w_flat = w_mix
    tile_stride = all_channels * size
    out_stride = chunk_channels * size
    for b in range(blocks.shape[0]):
        j, block_channels, first_channel, offset = blocks[b, 0], blocks[b, 1], blocks[b, 2], blocks[b, 3]
        block_floats = channels * block_channels * 2 * lanes  # one vector of bins
        span = max(1, MIX_WEIGHT_BYTES // (block_floats * w_mix.itemsize))
        for v0 in range(0, vectors, span):
            v1 = min(vectors, v0 + span)
            for g in range(0, count, 2):
                pair = g + 1 < count
                for v in range(v0, v1):
                    start = v * lanes
                    width = min(lanes, size - start)
                    x_base = g * tile_stride + first_channel * size + start
                    y_base = (g * chunk_channels + j) * size + start
                    w_base = offset + v * block_floats
                    if block_channels == 4 and pair:
                        a0, a1, a2, a3, b0, b1, b2, b3 = _two_tiles_four_channels(
                            x_flat, x_base, tile_stride, size, w_flat, w_base, channels, lanes, width)
                        _store(y_flat, y_base, a0, width)
                        _store(y_flat, y_base + size, a1, width)
                        _store(y_flat, y_base + 2 * size, a2, width)
                        _store(y_flat, y_base + 3 * size, a3, width)
                        _store(y_flat, y_base + out_stride, b0, width)
                        _store(y_flat, y_base + out_stride + size, b1, width)
                        _store(y_flat, y_base + out_stride + 2 * size, b2, width)
                        _store(y_flat, y_base + out_stride + 3 * size, b3, width)
                    elif block_channels == 4:
                        a0, a1, a2, a3 = _one_tile_four_channels(x_flat, x_base, size, w_flat, w_base,
                                                                 channels, lanes, width)
                        _store(y_flat, y_base, a0, width)
                        _store(y_flat, y_base + size, a1, width)
                        _store(y_flat, y_base + 2 * size, a2, width)
                        _store(y_flat, y_base + 3 * size, a3, width)
                    else:
                        _store(y_flat, y_base, _one_tile_one_channel(
                            x_flat, x_base, size, w_flat, w_base, channels, lanes, width), width)
                        if pair:
                            _store(y_flat, y_base + out_stride, _one_tile_one_channel(
                                x_flat, x_base + tile_stride, size, w_flat, w_base, channels, lanes,
                                width), width)


@njit_kernel
def _scatter(planes, bias, out, first_tile, tiles_h, tiles_w, per_tile_h, per_tile_w,
             stride_h, stride_w, first_out_channel):
    """out[n, k, oh, ow] = planes[g, j, (oh - a*Ph)*sh, (ow - b*Pw)*sw] + bias[k] for the
    outputs of tile (n, a, b)."""
    out_h, out_w = out.shape[2], out.shape[3]
    count, chunk_channels = planes.shape[0], planes.shape[1]
    for g in range(count):
        tile = first_tile + g
        n = tile // (tiles_h * tiles_w)
        oh0 = ((tile // tiles_w) % tiles_h) * per_tile_h
        ow0 = (tile % tiles_w) * per_tile_w
        oh1 = min(out_h, oh0 + per_tile_h)
        ow1 = min(out_w, ow0 + per_tile_w)
        for j in range(chunk_channels):
            k = first_out_channel + j
            shift = bias[k]
            for oh in range(oh0, oh1):
                source = planes[g, j, (oh - oh0) * stride_h]
                # element loops indexed from 0 on slices: ``source[...] + shift`` would allocate a
                # temporary per row (allocations contend across threads), and an index such as
                # ``ow - ow0`` that Numba cannot prove non-negative gets a wrap-around select that
                # stops LLVM vectorising
                dest = out[n, k, oh, ow0:ow1]
                if stride_w == 1:
                    for q in range(ow1 - ow0):
                        dest[q] = source[q] + shift
                else:
                    for q in range(ow1 - ow0):
                        dest[q] = source[q * stride_w] + shift


@njit_parallel
def _tiled_real(x, kernel_spectra, blocks, bias, out, first_out_channel, channels, tile_h, tile_w,
                tiles_h, tiles_w, per_tile_h, per_tile_w, stride_h, stride_w, pad_top, pad_left,
                tiles_per_task):
    """Overlap-save for real data (real transforms); see the module docstring."""
    batch, all_channels = x.shape[0], x.shape[1]
    chunk_channels = blocks[-1, 0] + blocks[-1, 1]
    total = batch * tiles_h * tiles_w
    tasks = (total + tiles_per_task - 1) // tiles_per_task
    for task in prange(tasks):
        first = task * tiles_per_task
        count = min(tiles_per_task, total - first)
        tiles = np.empty((count, all_channels, tile_h, tile_w), dtype=x.dtype)
        _gather(x, tiles, first, tiles_h, tiles_w, per_tile_h * stride_h, per_tile_w * stride_w,
                pad_top, pad_left)
        spectra = transforms.rfft2_last(tiles, (tile_h, tile_w), 1)
        products = np.empty((count, chunk_channels) + spectra.shape[2:], dtype=spectra.dtype)
        _mix(spectra, kernel_spectra, blocks, products, channels)
        planes = transforms.irfft2_last(products, (tile_h, tile_w), 1)
        _scatter(planes, bias, out, first, tiles_h, tiles_w, per_tile_h, per_tile_w,
                 stride_h, stride_w, first_out_channel)


@njit_parallel
def _tiled_complex(x, kernel_spectra, blocks, bias, out, first_out_channel, channels, tile_h, tile_w,
                   tiles_h, tiles_w, per_tile_h, per_tile_w, stride_h, stride_w, pad_top, pad_left,
                   tiles_per_task):
    """``_tiled_real`` for complex data: full complex transforms."""
    batch, all_channels = x.shape[0], x.shape[1]
    chunk_channels = blocks[-1, 0] + blocks[-1, 1]
    total = batch * tiles_h * tiles_w
    tasks = (total + tiles_per_task - 1) // tiles_per_task
    for task in prange(tasks):
        first = task * tiles_per_task
        count = min(tiles_per_task, total - first)
        tiles = np.empty((count, all_channels, tile_h, tile_w), dtype=x.dtype)
        _gather(x, tiles, first, tiles_h, tiles_w, per_tile_h * stride_h, per_tile_w * stride_w,
                pad_top, pad_left)
        spectra = transforms.fft2_last(tiles, (tile_h, tile_w), 1)
        products = np.empty((count, chunk_channels) + spectra.shape[2:], dtype=spectra.dtype)
        _mix(spectra, kernel_spectra, blocks, products, channels)
        planes = transforms.ifft2_last(products, (tile_h, tile_w), 1)
        _scatter(planes, bias, out, first, tiles_h, tiles_w, per_tile_h, per_tile_w,
                 stride_h, stride_w, first_out_channel)


def per_tile(params, tile_h: int, tile_w: int) -> tuple[int, int]:
    """Outputs per tile along each axis: a tile of length L holds the exact stride-1 correlation
    at its first L - R + 1 positions (R the dilated kernel extent), every stride-th kept."""
    return ((tile_h - params.dilated_kernel_h) // params.stride_h + 1,
            (tile_w - params.dilated_kernel_w) // params.stride_w + 1)


def tile_grid(params, tile_h: int, tile_w: int) -> tuple[int, int]:
    per_h, per_w = per_tile(params, tile_h, tile_w)
    return -(-params.out_h // per_h), -(-params.out_w // per_w)


def kernel_spectra(kernels, tile_h, tile_w, complex_data, workers, first_out_channel, out_per_group):
    """The kernels' spectra at the tile size in the layout ``_mix`` reads, and its channel blocks
    (rows: first channel j, count, first input channel, offset): block by block, for each vector
    v of interleaved bins, the (C/groups, count, 2, lanes) values (wr, wr) and (wi, -wi) of W
    (zero past the last bin)."""
    from .fft import padded_fft2, padded_rfft2

    transform = padded_fft2 if complex_data else padded_rfft2
    spectra = transform(kernels, (tile_h, tile_w), workers)
    chunk_channels, channels = spectra.shape[:2]
    real_dtype = spectra.real.dtype
    lanes = MIX_BYTES // real_dtype.itemsize
    vectors = -(-2 * spectra.shape[2] * spectra.shape[3] // lanes)
    blocks = []
    offset = 0
    j = 0
    while j < chunk_channels:
        k = first_out_channel + j
        group = k // out_per_group
        count = 4 if min((group + 1) * out_per_group - k, chunk_channels - j) >= 4 else 1
        blocks.append((j, count, group * channels, offset))
        offset += vectors * channels * count * 2 * lanes
        j += count
    blocks = np.array(blocks, dtype=np.int64)
    w_mix = np.empty(offset, dtype=real_dtype)
    _mix_layout(spectra, blocks, w_mix)
    return w_mix, blocks


@njit_parallel
def _mix_layout(spectra, blocks, w_mix):
    """For block (j, count, _, offset): w_mix[offset + ((v * C + c) * count + q) * 2 + p) * lanes:]
    [:lanes] = the (wr, wr) (p = 0) or (wi, -wi) (p = 1) lanes of spectra[j + q, c]'s interleaved
    bins v * lanes / 2 ...; zeros past the last bin."""
    channels = spectra.shape[1]
    bins = spectra.shape[2] * spectra.shape[3]
    lanes = MIX_BYTES // w_mix.itemsize
    half = lanes // 2
    vectors = -(-bins // half)
    for task in prange(blocks.shape[0] * channels):
        b = task // channels
        c = task % channels
        j, count, offset = blocks[b, 0], blocks[b, 1], blocks[b, 3]
        for q in range(count):
            flat = spectra[j + q, c].reshape(bins)
            for v in range(vectors):
                at = offset + ((v * channels + c) * count + q) * 2 * lanes
                real_part = w_mix[at:at + lanes]
                imag_part = w_mix[at + lanes:at + 2 * lanes]
                for i in range(half):
                    f = v * half + i
                    if f < bins:
                        value = flat[f]
                        real_part[2 * i] = value.real
                        real_part[2 * i + 1] = value.real
                        imag_part[2 * i] = value.imag
                        imag_part[2 * i + 1] = -value.imag
                    else:
                        real_part[2 * i] = 0
                        real_part[2 * i + 1] = 0
                        imag_part[2 * i] = 0
                        imag_part[2 * i + 1] = 0


def forward(x, kernels, bias, out, params, plan):
    """Overlap-save conv2d of C-contiguous ``x`` with the (dilated, for complex data conjugated)
    ``kernels`` into ``out`` as ``plan`` (a TilePlan) says; output channels in chunks."""
    complex_data = params.dtype.kind == "c"
    run = _tiled_complex if complex_data else _tiled_real
    workers = get_num_threads()
    tile_h, tile_w = plan.tile_h, plan.tile_w
    tiles_h, tiles_w = tile_grid(params, tile_h, tile_w)
    per_h, per_w = per_tile(params, tile_h, tile_w)
    for k0 in range(0, params.out_channels, plan.out_chunk):
        k1 = min(params.out_channels, k0 + plan.out_chunk)
        spectra, blocks = kernel_spectra(kernels[k0:k1], tile_h, tile_w, complex_data, workers, k0,
                                         params.out_channels_per_group)
        run(x, spectra, blocks, bias, out, k0, params.in_channels_per_group, tile_h, tile_w,
            tiles_h, tiles_w, per_h, per_w, params.stride_h, params.stride_w, params.pad_top,
            params.pad_left, plan.tiles_per_task)
    return out


# --- choosing the tile ------------------------------------------------------------------------
# Costs below are in "transform flops": 2.5 * n * log2(n) for a complex transform of n points, half
# that for a real one.  The other constants are ratios to it measured on this project's machine
# (2-core Zen 4, float32), not seconds, so they carry over to CPUs whose FFT and vector units scale
# alike; the cache sizes come from the CPU itself.
MIX_COST = 1.5
"""One complex multiply-add of the tiled channel mixing (register tiles on cache-resident spectra)."""
FULL_MAC_COST = 10.0
"""One complex multiply-add of the full-size path's channel reduction, which streams spectra of the
whole image from memory."""
COPY_COST = 1.5
"""One value gathered into a tile or scattered out of it."""
TASK_COST = 1e5
"""Fixed cost of one task: four buffer allocations and two transform calls."""
WEIGHT_BYTE_COST = 0.35
"""One byte of kernel spectra a task streams from L3 or memory (many channels: they outgrow L2)."""
TILES_PER_TASK = (1, 2, 4, 8, 16, 32)
"""Tiles per task the planner considers: more amortise the task's read of the kernel spectra."""
_L2_FALLBACK = 1 << 20


@functools.lru_cache(maxsize=1)
def cache_bytes() -> int:
    """Per-core L2 size (Linux sysfs), else 1 MiB: the budget for one tile's working set."""
    try:
        for index in range(8):
            base = f"/sys/devices/system/cpu/cpu0/cache/index{index}/"
            with open(base + "level") as level:
                if level.read().strip() != "2":
                    continue
            with open(base + "size") as size:
                text = size.read().strip().upper()
            factor = {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
            return int(text.rstrip("KM")) * factor
    except (OSError, ValueError):
        pass
    return _L2_FALLBACK


def _fast_sizes(lo: int, hi: int) -> list[int]:
    """Transform lengths 2^a 3^b in [lo, hi] (pocketfft's fastest radices)."""
    sizes = []
    power_of_two = 1
    while power_of_two <= hi:
        size = power_of_two
        while size <= hi:
            if size >= lo:
                sizes.append(size)
            size *= 3
        power_of_two *= 2
    return sorted(sizes)


def _transform_cost(h: int, w: int, complex_data: bool) -> float:
    n = h * w
    cost = 2.5 * n * math.log2(max(n, 2))
    return cost if complex_data else cost / 2


def _kernel_transform_cost(params, h: int, w: int, complex_data: bool) -> float:
    """A kernel's transform at (h, w): row transforms of its R rows only, then every column."""
    bins = w if complex_data else w // 2 + 1
    rows = params.dilated_kernel_h * 2.5 * w * math.log2(max(w, 2)) * (1 if complex_data else 0.5)
    return rows + bins * 2.5 * h * math.log2(max(h, 2))


@dataclass(frozen=True)
class TilePlan:
    """How the tiled path runs one problem: tile size, output channels per chunk (each chunk
    transforms the input tiles again), tiles per task; the modelled cost (transform flops per
    thread), the busiest thread's share of tiles over an even share, and the mixing's complex
    multiply-adds (that share included)."""

    tile_h: int
    tile_w: int
    out_chunk: int
    tiles_per_task: int
    cost: float = 0.0
    imbalance: float = 1.0
    mix_macs: float = 0.0


def _tile_bytes(params, tile_h, tile_w, out_chunk):
    """Scratch of one tile in a task: input tiles, their spectra, the chunk's products and planes."""
    complex_data = params.dtype.kind == "c"
    itemsize = params.dtype.itemsize
    bins = tile_w if complex_data else tile_w // 2 + 1
    spectrum = tile_h * bins * 2 * itemsize
    plane = tile_h * tile_w * itemsize * (2 if complex_data else 1)
    return params.in_channels * (plane + spectrum) + out_chunk * (spectrum + plane)


def _mix_weight_bytes(params, tile_h, tile_w, out_chunk):
    """The chunk's kernel spectra: complex spectra, and twice that in the mixing layout."""
    bins = tile_w if params.dtype.kind == "c" else tile_w // 2 + 1
    spectrum = tile_h * bins * 2 * params.dtype.itemsize
    return 3 * out_chunk * params.in_channels_per_group * spectrum


def plan_tiles(params, tile_h, tile_w, threads, limit, tiles_per_task=None, out_chunk=None):
    """The cheapest TilePlan for one tile size (over tiles per task, unless given), or None when
    no output-channel chunk fits the cap."""
    if out_chunk is None:
        out_chunk = params.out_channels
        while (_mix_weight_bytes(params, tile_h, tile_w, out_chunk)
               + threads * _tile_bytes(params, tile_h, tile_w, out_chunk)) > limit:
            if out_chunk == 1:
                return None
            out_chunk = max(1, out_chunk // 2)
    if tiles_per_task is not None:
        return _tile_plan(params, tile_h, tile_w, threads, out_chunk, tiles_per_task)
    tiles_h, tiles_w = tile_grid(params, tile_h, tile_w)
    tiles = params.batch * tiles_h * tiles_w
    room = ((limit - _mix_weight_bytes(params, tile_h, tile_w, out_chunk))
            // (threads * _tile_bytes(params, tile_h, tile_w, out_chunk)))
    best = None
    for count in TILES_PER_TASK:
        if count > 1 and (count > room or count > -(-tiles // threads)):
            break
        plan = _tile_plan(params, tile_h, tile_w, threads, out_chunk, count)
        if best is None or plan.cost < best.cost:
            best = plan
    return best


def _tile_plan(params, tile_h, tile_w, threads, out_chunk, tiles_per_task):
    complex_data = params.dtype.kind == "c"
    tiles_h, tiles_w = tile_grid(params, tile_h, tile_w)
    tiles = params.batch * tiles_h * tiles_w
    tile_bytes = _tile_bytes(params, tile_h, tile_w, out_chunk)
    chunks = -(-params.out_channels // out_chunk)
    transform = _transform_cost(tile_h, tile_w, complex_data)
    bins = tile_h * (tile_w if complex_data else tile_w // 2 + 1)
    per_tile_transforms = (chunks * params.in_channels + params.out_channels) * transform
    per_tile_macs = params.out_channels * params.in_channels_per_group * bins
    per_h, per_w = per_tile(params, tile_h, tile_w)
    per_tile_copies = (chunks * params.in_channels * tile_h * tile_w
                       + params.out_channels * per_h * per_w)
    # a tile's working set past L2 runs its transforms and mixing from L3: slower, growing with it;
    # so does a task's past a few times L2
    cache_factor = math.sqrt(max(1.0, tile_bytes / cache_bytes())
                             * max(1.0, tiles_per_task * tile_bytes / (4 * cache_bytes())))
    # the mixing pairs tiles: a lone tile mixes at half the rate
    mix_cost = MIX_COST * (2.0 if tiles_per_task == 1 else 1.0)
    tile_cost = (cache_factor * (per_tile_transforms + mix_cost * per_tile_macs)
                 + COPY_COST * per_tile_copies)
    tasks = -(-tiles // tiles_per_task)
    # every task reads the chunk's kernel spectra once: from memory when they outgrow L2
    weight_bytes = _mix_weight_bytes(params, tile_h, tile_w, out_chunk) * 2 / 3
    task_cost = TASK_COST + (WEIGHT_BYTE_COST * weight_bytes if weight_bytes > cache_bytes() / 2 else 0.0)
    # the busiest thread runs ceil(tasks / threads) tasks
    imbalance = -(-tasks // threads) * threads * tiles_per_task / tiles
    kernel_transforms = (params.out_channels * params.in_channels_per_group
                         * _kernel_transform_cost(params, tile_h, tile_w, complex_data))
    cost = (imbalance * (tiles * tile_cost + tasks * chunks * task_cost) + kernel_transforms) / threads
    return TilePlan(tile_h, tile_w, out_chunk, tiles_per_task, cost, imbalance,
                    imbalance * tiles * per_tile_macs)


def full_size_cost(params, fft_shape, threads, batch_chunk, out_chunk) -> float:
    """The full-size path in the same units: whole-plane transforms (the input again for every
    output-channel chunk), kernel transforms at the image size, the streamed channel reduction."""
    complex_data = params.dtype.kind == "c"
    fft_h, fft_w = fft_shape
    bins = fft_h * (fft_w if complex_data else fft_w // 2 + 1)
    chunks = -(-params.out_channels // out_chunk)
    transform = _transform_cost(fft_h, fft_w, complex_data)
    transforms_ = (params.batch * (chunks * params.in_channels + params.out_channels) * transform
                   + params.out_channels * params.in_channels_per_group
                   * _kernel_transform_cost(params, fft_h, fft_w, complex_data))
    macs = params.batch * params.out_channels * params.in_channels_per_group * bins
    plane_bytes = (fft_h * fft_w + 2 * bins) * params.dtype.itemsize
    cache_factor = math.sqrt(max(1.0, plane_bytes / cache_bytes()))
    outputs = params.batch * params.out_channels * params.out_h * params.out_w
    return (cache_factor * (transforms_ + FULL_MAC_COST * macs) + COPY_COST * outputs) / threads


def candidate_sizes(params, fft_shape) -> tuple[list[int], list[int]]:
    """Tile lengths per axis: 2^a 3^b from the dilated kernel's extent up to the full transform
    length, and the full length itself (one tile across that axis)."""
    sizes = []
    for extent, full in ((params.dilated_kernel_h, fft_shape[0]), (params.dilated_kernel_w, fft_shape[1])):
        lo = max(extent + 1, 8) if extent + 1 < full else full
        axis = [n for n in _fast_sizes(lo, full - 1)]
        axis.append(full)
        sizes.append(axis)
    return sizes[0], sizes[1]


@functools.lru_cache(maxsize=512)
def choose(params, fft_shape, threads: int, limit: int, full_batch_chunk: int, full_out_chunk: int):
    """The cheapest TilePlan by the cost model above, or None where the full-size path is cheaper
    (an image about the kernel's size, or a single tile that one task would transform on one
    thread while the full-size path spreads its transforms over all of them)."""
    best, best_cost = None, full_size_cost(params, fft_shape, threads, full_batch_chunk, full_out_chunk)
    heights, widths = candidate_sizes(params, fft_shape)
    for tile_h in heights:
        for tile_w in widths:
            plan = plan_tiles(params, tile_h, tile_w, threads, limit)
            if plan is not None and plan.cost < best_cost:
                best, best_cost = plan, plan.cost
    return best
