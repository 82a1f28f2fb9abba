"""Direct N-d correlation on the flattened padded array: every tap is one shifted contiguous vector.

For a C-contiguous array ``x`` of shape ``P`` (already zero-padded as the mode needs) and a kernel
``w`` of shape ``K``, the valid correlation ``out[o] = sum_t x[o + t] * w[t]`` has shape
``O = P - K + 1``.  With ``x`` flattened, the element ``o + t`` sits at ``flat(o) + flat(t)``, where
``flat`` uses ``x``'s strides (in elements).  So for every flat output position ``i``::

    out_flat[i] = sum_t w[t] * x_flat[i + offset[t]],   offset[t] = flat(t)

a sum of shifted copies of one vector, the same for any number of dimensions.  The positions
``i`` are taken in ``[0, flat(O - 1) + 1)``, read back through ``x``'s strides and cropped to
``O``: the positions in between (output rows that would run past the end of an input row) are
computed and thrown away, a fraction ``1 - prod(O / P)`` of the work — small unless the kernel is
about as large as the input, where the FFT is the better method anyway.

The flat outputs are cut into blocks that fit in L1 (one ``prange`` task each); a block's
accumulators are read and written once per group of four taps, so the inner loop is four
multiply-adds on contiguous vectors, which LLVM vectorises.  A long 1-D signal is not padded at
all: ``correlate_1d`` reads it in place and pads only copies of its ends.  Integer data accumulate in int32 or
int64 with wrap-around (scipy's exact integer result modulo 2**bits, see
``fastconv._params.signal_compute_dtype``); float32 stays float32.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._config import njit_kernel, njit_parallel, runs_serially

BLOCK_BYTES = 16 << 10
"""Accumulator bytes per task: half of a 32 KiB L1 data cache, leaving room for the input rows."""


def _correlate_flat_body(x_flat, weights, offsets, out_flat, block):
    """out_flat[i] = sum_t weights[t] * x_flat[i + offsets[t]] for i < out_flat.size.

    Layout: ``x_flat`` covers every index read (the caller guarantees ``offsets.max() +
    out_flat.size <= x_flat.size``).  The first ``taps % 4`` taps initialise a block's
    accumulators in one pass, the others follow four at a time, so each accumulator is loaded and
    stored once per four multiply-adds (a 3-tap filter is one pass over the block)."""
    length = out_flat.shape[0]
    taps = weights.shape[0]
    n_blocks = (length + block - 1) // block
    first = taps % 4
    for b in prange(n_blocks):
        start = b * block
        count = min(block, length - start)
        acc = out_flat[start:start + count]
        if first == 0:
            acc[:] = 0
        elif first == 1:
            w0 = weights[0]
            s0 = x_flat[start + offsets[0]:start + offsets[0] + count]
            for i in range(count):
                acc[i] = w0 * s0[i]
        elif first == 2:
            w0, w1 = weights[0], weights[1]
            s0 = x_flat[start + offsets[0]:start + offsets[0] + count]
            s1 = x_flat[start + offsets[1]:start + offsets[1] + count]
            for i in range(count):
                acc[i] = w0 * s0[i] + w1 * s1[i]
        else:
            w0, w1, w2 = weights[0], weights[1], weights[2]
            s0 = x_flat[start + offsets[0]:start + offsets[0] + count]
            s1 = x_flat[start + offsets[1]:start + offsets[1] + count]
            s2 = x_flat[start + offsets[2]:start + offsets[2] + count]
            for i in range(count):
                acc[i] = w0 * s0[i] + w1 * s1[i] + w2 * s2[i]
        for t in range(first, taps, 4):
            w0, w1, w2, w3 = weights[t], weights[t + 1], weights[t + 2], weights[t + 3]
            s0 = x_flat[start + offsets[t]:start + offsets[t] + count]
            s1 = x_flat[start + offsets[t + 1]:start + offsets[t + 1] + count]
            s2 = x_flat[start + offsets[t + 2]:start + offsets[t + 2] + count]
            s3 = x_flat[start + offsets[t + 3]:start + offsets[t + 3] + count]
            for i in range(count):
                acc[i] += w0 * s0[i] + w1 * s1[i] + w2 * s2[i] + w3 * s3[i]


_correlate_flat_parallel = njit_parallel(_correlate_flat_body)
_correlate_flat_serial = njit_kernel(_correlate_flat_body)


def tap_offsets(padded_shape, kernel_shape) -> np.ndarray:
    """Flat offset of every kernel tap in a C-contiguous array of ``padded_shape`` (C order of the
    taps, matching ``weights.ravel()``)."""
    strides = np.ones(len(padded_shape), dtype=np.int64)
    for axis in range(len(padded_shape) - 2, -1, -1):
        strides[axis] = strides[axis + 1] * padded_shape[axis + 1]
    offsets = np.zeros(1, dtype=np.int64)
    for axis, size in enumerate(kernel_shape):
        offsets = (offsets[:, None] + np.arange(size, dtype=np.int64)[None, :] * strides[axis]).ravel()
    return offsets


def flat_length(padded_shape, out_shape) -> int:
    """Number of flat positions the kernel computes: up to the last valid output, inclusive."""
    length, stride = 1, 1
    for padded, out in zip(reversed(padded_shape), reversed(out_shape)):
        length += (out - 1) * stride
        stride *= padded
    return length


def _correlate_flat(x_flat, weights_flat, offsets, out_flat):
    """The kernel on one flat problem, on the calling thread when it is small."""
    block = max(64, BLOCK_BYTES // x_flat.dtype.itemsize)
    kernel = (_correlate_flat_serial if runs_serially(out_flat.size * weights_flat.size)
              else _correlate_flat_parallel)
    kernel(x_flat, weights_flat, offsets, out_flat, block)


def correlate_1d(signal: np.ndarray, weights: np.ndarray, pad_before: int, pad_after: int):
    """``correlate_valid`` of ``signal`` zero-padded by ``pad_before``/``pad_after`` (each at most
    ``weights.size - 1``), without padding the whole signal: the outputs whose window lies inside
    ``signal`` read it in place, and only the ``weights.size - 1`` samples at each end are copied
    into small zero-padded buffers.  For a long signal this saves a pass over it (and the page
    faults of a padded copy), which is most of the time of a short kernel.  Needs
    ``signal.size >= weights.size``; both C-contiguous 1-D arrays of one dtype."""
    n, taps = signal.size, weights.size
    out = np.empty(n + pad_before + pad_after - taps + 1, dtype=signal.dtype)
    offsets = np.arange(taps, dtype=np.int64)
    interior = out[pad_before:pad_before + n - taps + 1]
    _correlate_flat(signal, weights, offsets, interior)
    if pad_before:
        left = np.zeros(pad_before + taps - 1, dtype=signal.dtype)
        left[pad_before:] = signal[:taps - 1]
        _correlate_flat(left, weights, offsets, out[:pad_before])
    if pad_after:
        right = np.zeros(taps - 1 + pad_after, dtype=signal.dtype)
        right[:taps - 1] = signal[n - taps + 1:]
        _correlate_flat(right, weights, offsets, out[pad_before + n - taps + 1:])
    return out


def correlate_valid(padded: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Valid correlation ``out[o] = sum_t padded[o + t] * weights[t]`` (no conjugation).

    ``padded`` and ``weights`` are C-contiguous, of one dtype, with the same number of dimensions
    and ``weights.shape <= padded.shape`` in every axis, both non-empty (checked by the caller).
    Returns a C-contiguous array of shape ``padded.shape - weights.shape + 1``.
    """
    out_shape = tuple(p - k + 1 for p, k in zip(padded.shape, weights.shape))
    length = flat_length(padded.shape, out_shape)
    offsets = tap_offsets(padded.shape, weights.shape)
    # the last tap's read of the last computed position is the last element of ``padded``
    assert int(offsets[-1]) + length == padded.size
    out_flat = np.empty(padded.size, dtype=padded.dtype)
    _correlate_flat(padded.reshape(-1), weights.reshape(-1), offsets, out_flat[:length])
    crop = tuple(slice(0, n) for n in out_shape)
    return np.ascontiguousarray(out_flat.reshape(padded.shape)[crop])
