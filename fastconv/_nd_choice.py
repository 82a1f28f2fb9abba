"""The one decision function of the N-d signal API: direct sum or frequency domain, and how to
block the frequency domain (whole transform or overlap-add pieces).

Like scipy's ``_fftconv_faster``, the choice compares op counts times fitted constants; the counts
are those of fastconv's own kernels and the constants were measured on them
(``python -m fastconv bench --suite 1d`` / ``--suite 3d`` time the same cases):

* direct (``backends/direct_nd.py``): ``flat outputs x taps`` multiply-adds, where the flat outputs
  include the thrown-away positions between rows of the padded input;
* frequency domain (``backends/fft_nd.py``): ``sum over transforms of n log2 n`` for the forward
  transforms of both inputs and the inverse, plus one pass per spectrum value for the product,
  the padding and the crop.

Kept in its own module for the dispatcher's restructuring (the lead moves it into
``fastconv/dispatch/``).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft

from ._config import get_num_threads
from .backends import direct_nd
from .backends.fft_nd import Block, transform_dtype

# Seconds per multiply-add of the direct kernel on one thread, by the dtype it computes in
# (vector width halves from 32- to 64-bit; a complex multiply-add is four real ones; AVX2 has no
# 64-bit integer multiply).
DIRECT_SECONDS_PER_MAC = {
    "f4": 0.09e-9, "f8": 0.18e-9, "c8": 0.5e-9, "c16": 0.9e-9, "i4": 0.12e-9, "i8": 0.6e-9,
}
# Seconds per n*log2(n) of a real transform, per thread (complex transforms: x2), and per value
# of a spectrum for the product and the copies around the transforms.
FFT_SECONDS_PER_NLOGN = {4: 0.5e-9, 8: 0.7e-9}
FFT_SECONDS_PER_VALUE = {4: 2.0e-9, 8: 3.0e-9}
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


def _real_width(dtype: np.dtype) -> int:
    """Bytes of one real value of the transform dtype."""
    return dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize


def _transform_seconds(size: int, count: int, dtype: np.dtype) -> float:
    width = _real_width(dtype)
    complex_factor = 2.0 if dtype.kind == "c" else 1.0
    n_log_n = size * math.log2(max(size, 2))
    return count * (complex_factor * FFT_SECONDS_PER_NLOGN[width] * n_log_n
                    + complex_factor * FFT_SECONDS_PER_VALUE[width] * size)


def spectral_seconds(shape1, shape2, axes, blocks, dtype) -> float:
    """Predicted time of ``fft_nd.convolve_full`` with this blocking (``dtype``: the transforms')."""
    dtype = np.dtype(dtype)
    batch = math.prod(max(shape1[a], shape2[a]) for a in range(len(shape1)) if a not in axes)
    size = 1
    pieces1 = pieces2 = 1
    for axis in axes:
        block = blocks.get(axis)
        if block is None:
            size *= scipy.fft.next_fast_len(shape1[axis] + shape2[axis] - 1, dtype.kind != "c")
            continue
        size *= block.length
        longer = shape1[axis] if block.split_first else shape2[axis]
        steps = math.ceil(longer / block.step)
        if block.split_first:
            pieces1 *= steps
        else:
            pieces2 *= steps
    # forward transforms of both inputs' pieces, the inverse of every product piece
    transforms = pieces1 + pieces2 + max(pieces1, pieces2)
    return FFT_CALL_SECONDS + batch * _transform_seconds(size, transforms, dtype) / _threads()


def _fast_lengths(low: int, high: int):
    """Fast transform lengths from ``low`` up to ``next_fast_len(high)``, about 5% apart."""
    length = scipy.fft.next_fast_len(low)
    top = scipy.fft.next_fast_len(high)
    while length < top:
        yield length
        length = scipy.fft.next_fast_len(max(length + 1, int(length * 1.05)))
    yield top


def _axis_block(longer: int, shorter: int, dtype: np.dtype) -> int | None:
    """The overlap-add transform length with the lowest predicted cost per output sample on one
    axis, or None when one piece would cover the axis (a whole transform is then as good)."""
    overlap = shorter - 1
    full = longer + shorter - 1
    best_length, best_cost = None, math.inf
    for length in _fast_lengths(2 * overlap + 1, full):
        step = length - overlap
        pieces = math.ceil(longer / step)
        cost = pieces * _transform_seconds(length, 1, dtype)
        if cost < best_cost:
            best_length, best_cost = length, cost
    if best_length is None or best_length - overlap >= longer:
        return None
    return best_length


@functools.lru_cache(maxsize=1024)
def _overlap_add_blocks(shape1, shape2, axes, dtype, prefer_whole) -> tuple:
    return tuple(sorted(_plan_blocks(shape1, shape2, axes, dtype, prefer_whole).items()))


def overlap_add_blocks(shape1, shape2, axes, dtype, prefer_whole=False) -> dict:
    """Per convolution axis, a :class:`Block` where cutting the longer input into pieces is
    predicted cheaper (memoised; see :func:`_plan_blocks`)."""
    return dict(_overlap_add_blocks(tuple(shape1), tuple(shape2), tuple(axes), np.dtype(dtype),
                                    prefer_whole))


def _plan_blocks(shape1, shape2, axes, dtype, prefer_whole) -> dict:
    """Per convolution axis, a :class:`Block` where cutting the longer input into pieces is
    predicted cheaper (shorter input more than halved, as scipy's ``_calc_oa_lens`` requires).
    With ``prefer_whole``, the whole-array transform is returned ({}) when it is predicted at
    least as fast as the blocked plan."""
    dtype = np.dtype(dtype)
    blocks = {}
    for axis in axes:
        n1, n2 = shape1[axis], shape2[axis]
        longer, shorter = max(n1, n2), min(n1, n2)
        if shorter >= longer / 2:
            continue
        length = _axis_block(longer, shorter, dtype)
        if length is not None:
            blocks[axis] = Block(length=length, step=length - shorter + 1, split_first=n1 >= n2)
    if prefer_whole and blocks:
        if (spectral_seconds(shape1, shape2, axes, {}, dtype)
                <= spectral_seconds(shape1, shape2, axes, blocks, dtype)):
            return {}
    return blocks


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
