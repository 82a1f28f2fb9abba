"""Linear N-d convolution in the frequency domain: one full-size transform, or overlap-add blocks.

``convolve_full(in1, in2, axes, blocks)`` returns the full linear convolution over ``axes``
(shape ``s1 + s2 - 1`` there), broadcasting over the other axes as scipy's ``fftconvolve`` does.
Each convolution axis is either

* *whole* (``blocks[axis] is None``): both inputs are transformed at the fast length
  ``scipy.fft.next_fast_len(s1 + s2 - 1)`` (the circular convolution is then linear) and the
  result cropped; or
* *split* (``blocks[axis] = Block(length, step, split_first)``): the longer input is cut into
  ``nsteps`` pieces of ``step`` samples, each transformed at ``length = step + overlap``
  (``overlap = shorter - 1``), multiplied by the shorter input's spectrum at that length, inverted,
  and the pieces added back at multiples of ``step`` (overlap-add).  Memory and transform sizes
  then scale with the piece, not with the signal.

The layout follows scipy's ``oaconvolve``: every convolution axis of size ``n`` becomes two axes
``(nsteps, step)`` (``(1, n)`` when whole), so one batched transform over the ``step`` axes
handles every piece, one broadcast product multiplies them all, and the overlap-add is a fold per
split axis.  The transforms are pocketfft with ``workers`` threads — compiled through rocket-fft
(``fastconv._transforms``) along the last axis, ``scipy.fft`` along the others: the transform
primitive only; the planning (``fastconv.dispatch.nd``), padding, pointwise product,
overlap-add and crop are fastconv's own (the product and the fold are the compiled kernels below).

A real 1-d problem cut into pieces skips the layout above: ``_overlap_add_1d`` runs gather,
transforms, product, inverse and overlap-add per group of pieces in one compiled parallel pass,
so no signal-sized intermediate (padded copy, spectra, pieces) is ever allocated.

dtypes: real data use real transforms (``rfftn``) in float32 when both inputs are float32, else
float64; complex data full complex transforms.  Integers are transformed in float64 by the caller.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from numba import prange

from .. import _transforms as transforms
from .._config import get_num_threads, njit_parallel
from .._params import check_memory


@dataclass(frozen=True)
class Block:
    """How one convolution axis is split for overlap-add."""

    length: int        # transform length of one piece: step + overlap
    step: int          # samples of the longer input per piece
    split_first: bool  # True: in1 is the longer input on this axis (the one cut into pieces)


# --- kernels ----------------------------------------------------------------------------------
@njit_parallel
def _multiply_rows(spectra, row):
    """spectra[r, f] *= row[f] for every row: a piece-by-kernel product (or one whole spectrum)."""
    rows, width = spectra.shape
    for r in prange(rows):
        target = spectra[r]
        for f in range(width):
            target[f] *= row[f]


@njit_parallel
def _fold(pieces, out, step_elements):
    """Overlap-add along one axis: out[o, s * step_elements + j] += pieces[o, s, j].

    ``pieces`` is (outer, nsteps, length * inner) and ``out`` (outer, out_length * inner), zeroed,
    with ``inner`` the product of the axes after the folded one: a piece and its destination are
    both contiguous.  Pieces are added in order within one task, so an overlap is never written by
    two threads."""
    outer, nsteps, piece = pieces.shape
    for o in prange(outer):
        dest = out[o]
        for s in range(nsteps):
            source = pieces[o, s]
            target = dest[s * step_elements:s * step_elements + piece]
            for j in range(piece):
                target[j] += source[j]


@njit_parallel
def _overlap_add_1d(signal, kernel_spectrum, out, tails, step, length, group):
    """The whole overlap-add of a real 1-d signal in one compiled pass: each task gathers
    ``group`` consecutive pieces of ``step`` samples into a zero-padded (group, length) buffer,
    transforms them (rocket-fft, one thread), multiplies by the kernel's spectrum, transforms back
    and adds the pieces into ``out`` (zeroed, ``n_pieces * step + overlap`` long) while they are in
    cache — no signal-sized intermediate arrays.  A task owns the heads of its pieces; the tail
    of its last piece, which overlaps the next task's first head, goes to ``tails[task]`` and is
    added after the parallel loop, so no two threads write one element."""
    n = signal.shape[0]
    overlap = length - step
    n_pieces = (n + step - 1) // step
    n_tasks = (n_pieces + group - 1) // group
    for task in prange(n_tasks):
        first = task * group
        count = min(group, n_pieces - first)
        pieces = np.zeros((count, length), dtype=signal.dtype)
        for g in range(count):
            start = (first + g) * step
            samples = min(step, n - start)
            row = pieces[g]
            source = signal[start:start + samples]
            for i in range(samples):
                row[i] = source[i]
        spectra = transforms.rfft_last(pieces, length, 1)
        for g in range(count):
            spectrum = spectra[g]
            for f in range(spectrum.shape[0]):
                spectrum[f] *= kernel_spectrum[f]
        planes = transforms.irfft_last(spectra, length, 1)
        for g in range(count):
            start = (first + g) * step
            plane = planes[g]
            head = out[start:start + step]
            for i in range(step):
                head[i] += plane[i]
            if g == count - 1:
                tail = tails[task]
                for i in range(overlap):
                    tail[i] = plane[step + i]
            else:
                rest = out[start + step:start + step + overlap]
                for i in range(overlap):
                    rest[i] += plane[step + i]
    for task in range(n_tasks):  # after the parallel loop: one thread
        end = min((task + 1) * group, n_pieces) * step
        dest = out[end:end + overlap]
        for i in range(overlap):
            dest[i] += tails[task, i]


PIECE_GROUP_BYTES = 256 << 10
"""Bytes of one task's pieces in ``_overlap_add_1d``: the group and its spectra stay in L2."""


def _overlap_add_real_1d(in1, in2, block, region, workers):
    """Full 1-d overlap-add convolution of real ``in1``, ``in2`` on the compiled pass, cut to
    ``region``: the longer input is cut into pieces (convolution commutes)."""
    signal, kernel = (in1, in2) if block.split_first else (in2, in1)
    signal = np.ascontiguousarray(signal)
    step, length = block.step, block.length
    overlap = length - step
    n_pieces = -(-signal.size // step)
    kernel_spectrum = scipy.fft.rfft(kernel, n=length)
    group = max(1, min(-(-n_pieces // (4 * workers)), PIECE_GROUP_BYTES // (length * signal.itemsize)))
    n_tasks = -(-n_pieces // group)
    out = np.zeros(n_pieces * step + overlap, dtype=signal.dtype)
    tails = np.empty((n_tasks, overlap), dtype=signal.dtype)
    _overlap_add_1d(signal, kernel_spectrum, out, tails, step, length, group)
    start, stop = region[0]
    return np.ascontiguousarray(out[start:stop])


# --- the engine -------------------------------------------------------------------------------
def transform_dtype(dtype1, dtype2) -> np.dtype:
    """The dtype the transforms run in, as scipy's ``fftconvolve`` computes: integers and bool in
    float64, float16 in float32 (scipy.fft's rule), the promotion of the two otherwise."""
    def as_float(dtype):
        dtype = np.dtype(dtype)
        if dtype.kind in "biu":
            return np.dtype(np.float64)
        if dtype == np.float16:
            return np.dtype(np.float32)
        return dtype

    return np.result_type(as_float(dtype1), as_float(dtype2))


def _pieces(array, axes, blocks, first):
    """``array`` zero-padded and reshaped so that every convolution axis becomes (nsteps, step)."""
    shape = array.shape
    padding = [(0, 0)] * array.ndim
    new_shape = []
    for axis, size in enumerate(shape):
        if axis not in axes:
            new_shape.append(size)
            continue
        block = blocks.get(axis)
        if block is None or block.split_first != first:
            new_shape += [1, size]
            continue
        nsteps = math.ceil(size / block.step)
        padding[axis] = (0, nsteps * block.step - size)
        new_shape += [nsteps, block.step]
    if any(after for _, after in padding):
        array = np.pad(array, padding)
    return array.reshape(new_shape)


def _transform_last(array, axis, n, real, inverse, workers):
    """One stage along ``axis``.  A stack of lines (a 1-d convolution: pieces x samples) goes to
    compiled pocketfft (rocket-fft, ``fastconv._transforms``), which measured faster than
    ``scipy.fft`` there but slower on the last axis of 3-d volumes (docs/measurements.md);
    everything else to ``scipy.fft``."""
    if array.ndim <= 2 and axis == array.ndim - 1:
        if inverse:
            return (transforms.irfft_last if real else transforms.ifft_last)(array, n, workers)
        return (transforms.rfft_last if real else transforms.fft_last)(array, n, workers)
    if inverse:
        return (scipy.fft.irfft if real else scipy.fft.ifft)(array, n=n, axis=axis, workers=workers)
    return (scipy.fft.rfft if real else scipy.fft.fft)(array, n=n, axis=axis, workers=workers)


def _forward(array, fft_axes, lengths, real, workers):
    """The N-d transform one axis at a time, last axis first (the real-to-complex one, which halves
    the data): each stage transforms an array that is still unpadded along the axes not yet
    transformed, so the zero padding is transformed only where it has become non-zero — a small
    kernel's transform costs about one pass over the spectrum instead of N."""
    *others, last = zip(fft_axes, lengths)
    axis, n = last
    spectrum = _transform_last(np.ascontiguousarray(array), axis, n, real, False, workers)
    for axis, n in reversed(others):
        spectrum = scipy.fft.fft(spectrum, n=n, axis=axis, workers=workers, overwrite_x=True)
    return spectrum


def _inverse(spectrum, fft_axes, lengths, real, workers, crops):
    """The inverse of :func:`_forward`, first axis first, cutting each axis down to ``crops[axis]``
    (a slice or None) as soon as it is transformed: the later stages skip the rows no one reads."""
    *others, last = zip(fft_axes, lengths)
    for axis, n in others:
        spectrum = scipy.fft.ifft(spectrum, n=n, axis=axis, workers=workers, overwrite_x=True)
        if crops.get(axis) is not None:
            spectrum = spectrum[(slice(None),) * axis + (crops[axis],)]
    axis, n = last
    result = _transform_last(spectrum, axis, n, real, True, workers)
    if crops.get(axis) is not None:
        result = result[(slice(None),) * axis + (crops[axis],)]
    return result


def convolve_full(in1, in2, axes, blocks=None, region=None, workers=None):
    """Linear convolution of ``in1`` and ``in2`` over ``axes`` (sorted, unique, every axis of size
    > 1 in both inputs; sizes elsewhere equal or 1), by FFT, in ``transform_dtype``.

    ``blocks`` maps an axis to its :class:`Block` (missing: transformed whole).  ``region``, one
    ``(start, stop)`` per axis of the full result (shape ``s1 + s2 - 1`` on ``axes``, ``max(s1,
    s2)`` elsewhere), is the part returned (default: all of it); on whole axes the inverse
    transform skips what lies outside it.  Returns a C-contiguous array.
    """
    blocks = {} if blocks is None else blocks
    workers = get_num_threads() if workers is None else workers
    dtype = transform_dtype(in1.dtype, in2.dtype)
    real = dtype.kind != "c"
    in1 = np.asarray(in1, dtype=dtype)
    in2 = np.asarray(in2, dtype=dtype)
    s1, s2 = in1.shape, in2.shape
    full_shape = [s1[a] + s2[a] - 1 if a in axes else max(s1[a], s2[a]) for a in range(in1.ndim)]
    region = [(0, n) for n in full_shape] if region is None else list(region)

    if in1.ndim == 1 and real and blocks:
        return _overlap_add_real_1d(in1, in2, blocks[0], region, workers)

    pieces1 = _pieces(in1, axes, blocks, True)
    pieces2 = _pieces(in2, axes, blocks, False)
    # positions of the (nsteps, step) pairs in the reshaped arrays
    pair_positions = [axis + rank for rank, axis in enumerate(axes)]
    fft_axes = [p + 1 for p in pair_positions]
    lengths, crops = [], {}
    for axis, fft_axis in zip(axes, fft_axes):
        block = blocks.get(axis)
        if block is None:
            lengths.append(scipy.fft.next_fast_len(s1[axis] + s2[axis] - 1, real))
            crops[fft_axis] = slice(*region[axis])
        else:
            lengths.append(block.length)

    # the product's spectrum has the broadcast batch shape; two spectra and the product coexist
    batch = math.prod(max(n1, n2) for position, (n1, n2) in enumerate(zip(pieces1.shape, pieces2.shape))
                      if position not in fft_axes)
    check_memory(batch * math.prod(lengths) * 3 * 2 * dtype.itemsize,
                 f"the spectra of a convolution of shapes {s1} and {s2} (transform lengths {lengths})")
    spectrum1 = _forward(pieces1, fft_axes, lengths, real, workers)
    spectrum2 = _forward(pieces2, fft_axes, lengths, real, workers)
    product = _multiply(spectrum1, spectrum2)
    del spectrum1, spectrum2
    result = np.ascontiguousarray(_inverse(product, fft_axes, lengths, real, workers, crops))
    del product

    # fold the split axes (overlap-add), from the last pair to the first so positions stay valid
    for rank in range(len(axes) - 1, -1, -1):
        axis = axes[rank]
        position = pair_positions[rank]
        nsteps, length = result.shape[position], result.shape[position + 1]
        outer = math.prod(result.shape[:position])
        inner = math.prod(result.shape[position + 2:])
        if nsteps == 1:
            result = result.reshape(result.shape[:position] + (length,) + result.shape[position + 2:])
            if axis not in blocks:
                region[axis] = (0, length)  # already cut to the region by the inverse transform
            continue
        step = blocks[axis].step
        out_length = (nsteps - 1) * step + length
        folded = np.zeros((outer, out_length * inner), dtype=result.dtype)
        _fold(result.reshape(outer, nsteps, length * inner), folded, step * inner)
        result = folded.reshape(result.shape[:position] + (out_length,) + result.shape[position + 2:])
    return np.ascontiguousarray(result[tuple(slice(*bounds) for bounds in region)])


def _multiply(spectrum1, spectrum2):
    """The pointwise product, in place in the larger spectrum when the other one is one row that
    repeats along its leading axes (a whole transform, or every piece times the kernel's)."""
    if spectrum2.size > spectrum1.size:
        spectrum1, spectrum2 = spectrum2, spectrum1
    big, small = spectrum1, spectrum2
    row = small.size
    trailing_match = False
    if small.ndim == big.ndim:
        # small's shape must be (1, ..., 1, big.shape[k:]) for some k
        for k in range(big.ndim + 1):
            if all(n == 1 for n in small.shape[:k]) and small.shape[k:] == big.shape[k:]:
                trailing_match = True
                break
    if trailing_match and big.flags.c_contiguous and small.flags.c_contiguous:
        _multiply_rows(big.reshape(-1, row), small.reshape(row))
        return big
    # general broadcasting (inputs of size 1 along non-convolution axes): NumPy's product
    return np.multiply(spectrum1, spectrum2)
