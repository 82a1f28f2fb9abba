"""The one decision function of the N-d signal API: direct sum or frequency domain, and how to
block the frequency domain (whole transform or overlap-add pieces).

Like scipy's ``_fftconv_faster``, the choice compares op counts times fitted constants; the counts
are those of fastconv's own kernels and the constants were measured on them
(``python -m fastconv bench --suite 1d`` / ``--suite 3d`` time the same cases):

* direct (``backends/direct_nd.py``): ``flat outputs x taps`` multiply-adds, where the flat outputs
  include the thrown-away positions between rows of the padded input;
* frequency domain (``backends/fft_nd.py``): per transform stage (one axis at a time, as the engine
  runs them), ``lines x (a L log2 L + b L)`` for the forward transforms of both inputs and the
  inverse, plus one pass per spectrum value for the product and per output value for the copies
  of overlap-add, scaled by ``FFT_IN_CONTEXT``.

Its constants are its own, not :data:`fastconv.dispatch.model.MODEL`'s: the N-d kernels are
different code from the conv2d backends the model prices (see the README's N-d section).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft

from .._config import get_num_threads
from ..backends import direct_nd
from ..backends.fft_nd import Block, transform_dtype

# Seconds per multiply-add of the direct kernel on one thread, by the dtype it computes in.  The
# float ones were measured (1-d to 4-d problems, docs/measurements.md); the others are derived
# from them, not measured: complex = four real multiply-adds, int32 a little above float32, int64
# several times (AVX2 has no 64-bit integer multiply).
DIRECT_SECONDS_PER_MAC = {
    "f4": 0.09e-9, "f8": 0.18e-9, "c8": 0.5e-9, "c16": 0.9e-9, "i4": 0.12e-9, "i8": 0.6e-9,
}
# One complex transform line of length L costs ``a * L * log2(L) + b * L`` seconds on one thread
# (pocketfft through scipy.fft; ``b`` is the per-line overhead that dominates short lines), by the
# width of a real component; a real line costs half.  Measured on lines of 64 to 16384 points.
FFT_LINE_SECONDS = {4: (0.25e-9, 2.0e-9), 8: (0.6e-9, 3.0e-9)}
# A line whose working set (the samples, the spectrum and the inverse: about four times its complex
# size) outgrows the L2 cache streams from memory in every butterfly pass: the cost per point
# grows by about half for every doubling beyond this size (whole-signal transforms of 10**6
# points against pieces, and piece lengths on the compiled 1-d overlap-add pass,
# docs/measurements.md).
FFT_CACHED_LINE_BYTES = 128 << 10
# The pointwise product and each copy (padding, fold, crop): seconds per complex value.
POINTWISE_SECONDS = {4: 0.6e-9, 8: 1.0e-9}
# The rates above are of isolated transforms of contiguous lines; whole convolutions add the
# strided stages of N-d transforms, allocation and memory traffic.  Against whole convolutions
# timed on 1-d to 4-d problems (docs/measurements.md) the summed terms were low by a factor of
# 1.3 to 2.7, median 1.8, which this restores (the direct kernel's prediction needed no such term).
FFT_IN_CONTEXT = 1.8
# A call's fixed cost: Python-level planning and allocation (the FFT path does more of it).
DIRECT_CALL_SECONDS = 10e-6
FFT_CALL_SECONDS = 60e-6
# Scaling with threads is imperfect: memory bandwidth is shared.
PARALLEL_EFFICIENCY = 0.8


def _threads() -> float:
    threads = get_num_threads()
    return 1.0 + (threads - 1) * PARALLEL_EFFICIENCY


def _direct_key(dtype: np.dtype) -> str:
    if dtype.kind in "biu":
        return "i4" if dtype.itemsize <= 4 or dtype.kind == "b" else "i8"
    if dtype == np.float16:
        return "f4"
    return f"{dtype.kind}{dtype.itemsize}"


def direct_seconds(shape1, shape2, mode, dtype) -> float:
    """Predicted time of ``convolve(method='direct')`` (after the ``valid`` swap)."""
    if mode == "full" and math.prod(shape2) > math.prod(shape1):
        shape1, shape2 = shape2, shape1
    if mode == "full":
        padded = [n + 2 * (k - 1) for n, k in zip(shape1, shape2)]
    elif mode == "same":
        padded = [n + k - 1 for n, k in zip(shape1, shape2)]
    else:
        padded = list(shape1)
    out = [p - k + 1 for p, k in zip(padded, shape2)]
    macs = direct_nd.flat_length(padded, out) * math.prod(shape2)
    return DIRECT_CALL_SECONDS + macs * DIRECT_SECONDS_PER_MAC[_direct_key(np.dtype(dtype))] / _threads()


def _line_seconds(length: int, width: int, real: bool) -> float:
    per_log, per_value = FFT_LINE_SECONDS[width]
    seconds = per_log * length * math.log2(max(length, 2)) + per_value * length
    line_bytes = length * 2 * width
    if line_bytes > FFT_CACHED_LINE_BYTES:
        seconds *= 1.0 + 0.5 * math.log2(line_bytes / FFT_CACHED_LINE_BYTES)
    return seconds / 2 if real else seconds


def _staged_transform_seconds(extents, lengths, width, real) -> float:
    """One N-d transform done axis by axis as ``fft_nd`` does.  Forward (last axis first), the
    axes before stage j are not transformed yet (their extents: unpadded samples); inverse (first
    axis first), they are transformed and already cut back (their extents: the samples kept).
    Either way the axes after j are at their spectral lengths, so one count serves both."""
    spectral = list(lengths)
    if real:
        spectral[-1] = lengths[-1] // 2 + 1
    seconds = 0.0
    for j, length in enumerate(lengths):
        lines = math.prod(extents[:j]) * math.prod(spectral[j + 1:])
        seconds += lines * _line_seconds(length, width, real and j == len(lengths) - 1)
    return seconds


def spectral_seconds(shape1, shape2, axes, blocks, dtype, kept=None) -> float:
    """Predicted time of ``fft_nd.convolve_full`` with this blocking (``dtype``: the transforms');
    ``kept``: the extents of the returned region (default: the full result)."""
    dtype = np.dtype(dtype)
    real = dtype.kind != "c"
    width = dtype.itemsize if real else dtype.itemsize // 2
    ndim = len(shape1)
    batch = math.prod(max(shape1[a], shape2[a]) for a in range(ndim) if a not in axes)
    batch1 = math.prod(shape1[a] for a in range(ndim) if a not in axes)
    batch2 = math.prod(shape2[a] for a in range(ndim) if a not in axes)
    full = [shape1[a] + shape2[a] - 1 for a in axes]
    kept = full if kept is None else [kept[a] for a in axes]
    lengths, extents1, extents2, out_extents = [], [], [], []
    pieces1 = pieces2 = 1
    copies = 0
    for rank, axis in enumerate(axes):
        n1, n2 = shape1[axis], shape2[axis]
        block = blocks.get(axis)
        if block is None:
            lengths.append(scipy.fft.next_fast_len(n1 + n2 - 1, real))
            extents1.append(n1)
            extents2.append(n2)
            out_extents.append(kept[rank])
            continue
        lengths.append(block.length)
        out_extents.append(block.length)
        steps = math.ceil(max(n1, n2) / block.step)
        if block.split_first:
            pieces1 *= steps
            extents1.append(block.step)
            extents2.append(n2)
        else:
            pieces2 *= steps
            extents1.append(n1)
            extents2.append(block.step)
        copies = 2  # the padded copy of the split input and the overlap-add
    spectrum = math.prod(lengths[:-1]) * (lengths[-1] // 2 + 1 if real else lengths[-1])
    pieces = max(pieces1, pieces2)
    seconds = (
        batch1 * pieces1 * _staged_transform_seconds(extents1, lengths, width, real)
        + batch2 * pieces2 * _staged_transform_seconds(extents2, lengths, width, real)
        + batch * pieces * _staged_transform_seconds(out_extents, lengths, width, real)
        + batch * pieces * spectrum * POINTWISE_SECONDS[width]
        + batch * copies * math.prod(full) * POINTWISE_SECONDS[width]
    )
    return FFT_CALL_SECONDS + FFT_IN_CONTEXT * seconds / _threads()


def _piece_lengths(low: int, high: int):
    """Overlap-add transform lengths from ``low`` up to ``high``: 2**a and 3 * 2**a, the lengths
    pocketfft runs fastest (other 5-smooth lengths such as 4320 measured slower than 4096 per
    point, docs/measurements.md)."""
    power = 1
    while power < 2 * high:
        for length in (power, 3 * power):
            if low <= length < high:
                yield length
        power *= 2


@functools.lru_cache(maxsize=1024)
def _overlap_add_blocks(shape1, shape2, axes, dtype, prefer_whole) -> tuple:
    return tuple(sorted(_plan_blocks(shape1, shape2, axes, dtype, prefer_whole).items()))


def overlap_add_blocks(shape1, shape2, axes, dtype, prefer_whole=False) -> dict:
    """Per convolution axis, a :class:`Block` where cutting the longer input into pieces is
    predicted cheaper (memoised; see :func:`_plan_blocks`)."""
    return dict(_overlap_add_blocks(tuple(shape1), tuple(shape2), tuple(axes), np.dtype(dtype),
                                    prefer_whole))


def _plan_blocks(shape1, shape2, axes, dtype, prefer_whole) -> dict:
    """The overlap-add plan with the lowest predicted time: one piece length ``L`` (2**a or
    3 * 2**a) for every axis where the shorter input is less than half the longer (scipy's
    condition for a useful block) and ``L`` leaves more than one piece; the other axes are
    transformed whole.  Searching one ``L`` for all axes keeps the search small and prices the
    N-d pieces as a whole (an axis-by-axis choice would price 1-d lines and pick N-d pieces far
    too small).  With ``prefer_whole`` the whole-array transform competes too ({} when it wins)."""
    dtype = np.dtype(dtype)
    splittable = {}
    for axis in axes:
        n1, n2 = shape1[axis], shape2[axis]
        longer, shorter = max(n1, n2), min(n1, n2)
        if shorter < longer / 2:
            splittable[axis] = (longer, shorter, n1 >= n2)
    if not splittable:
        return {}
    lowest = min(2 * shorter - 1 for _, shorter, _ in splittable.values())
    highest = max(longer + shorter - 1 for longer, shorter, _ in splittable.values())
    best, best_seconds = {}, math.inf
    if prefer_whole:
        best_seconds = spectral_seconds(shape1, shape2, axes, {}, dtype)
    # lengths that cut an axis into a few equal pieces (a 128-sample axis and 9 taps: two pieces
    # of 64 at length 72) waste no padding on a short axis
    fitted = {
        scipy.fft.next_fast_len(math.ceil(longer / pieces) + shorter - 1, dtype.kind != "c")
        for longer, shorter, _ in splittable.values() for pieces in range(2, 17)
    }
    for length in sorted(set(_piece_lengths(lowest, highest)) | fitted):
        blocks = {
            axis: Block(length=length, step=length - shorter + 1, split_first=first)
            for axis, (longer, shorter, first) in splittable.items()
            if length >= 2 * shorter - 1 and length - shorter + 1 < longer
        }
        if not blocks:
            continue
        seconds = spectral_seconds(shape1, shape2, axes, blocks, dtype)
        if seconds < best_seconds:
            best, best_seconds = blocks, seconds
    return best


def _integer_fft_may_be_inexact(volume, kernel) -> bool:
    """scipy's guard: integer products beyond float64's 53-bit mantissa go to the direct sum."""
    if volume.dtype.kind not in "ui" and kernel.dtype.kind not in "ui":
        return False
    largest = int(np.max(np.abs(volume))) * int(np.max(np.abs(kernel)))
    return largest * min(volume.size, kernel.size) > 2 ** np.finfo(np.float64).nmant - 1


def choose_method(volume, kernel, mode) -> str:
    """``'direct'`` or ``'fft'`` for ``convolve(volume, kernel, mode)`` (non-empty N-d arrays of
    one ndim, after the ``valid`` swap)."""
    if volume.size == 0 or kernel.size == 0:
        return "direct"
    if volume.dtype.kind == kernel.dtype.kind == "b":
        return "direct"
    if _integer_fft_may_be_inexact(volume, kernel):
        return "direct"
    return _method_by_cost(volume.shape, kernel.shape, mode, volume.dtype, kernel.dtype,
                           get_num_threads())


@functools.lru_cache(maxsize=1024)
def _method_by_cost(shape1, shape2, mode, dtype1, dtype2, threads) -> str:
    """The cost comparison, memoised per problem: planning the blocks costs as much as a small
    direct convolution.  (``threads`` is part of the key: the predictions depend on it.)"""
    result = np.result_type(dtype1, dtype2)
    fft_dtype = transform_dtype(dtype1, dtype2)
    axes = [a for a in range(len(shape1)) if shape1[a] != 1 and shape2[a] != 1]
    if not axes:
        return "direct"
    blocks = overlap_add_blocks(shape1, shape2, axes, fft_dtype, prefer_whole=True)
    fft_time = spectral_seconds(shape1, shape2, axes, blocks, fft_dtype)
    return "fft" if fft_time < direct_seconds(shape1, shape2, mode, result) else "direct"


def forget() -> None:
    """Drop the memoised choices and plans (after the constants change)."""
    _method_by_cost.cache_clear()
    _overlap_add_blocks.cache_clear()
