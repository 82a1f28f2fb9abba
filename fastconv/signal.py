"""scipy.signal-compatible ``correlate2d`` and ``convolve2d`` on fastconv's backends.

Each call is mapped onto a single-plane conv2d problem (N = C = K = 1):

* ``correlate2d(in1, in2)`` is a cross-correlation with kernel ``conj(in2)`` (scipy conjugates the
  second input; conv2d does not), ``convolve2d`` one with ``in2`` rotated by 180 degrees;
* ``full`` and ``same`` are padding of ``in1`` (see ``fastconv._params.signal_padding``); with
  ``boundary="fill"`` and a zero ``fillvalue`` the padding stays implicit in the kernels, while
  ``wrap``, ``symm`` and a non-zero ``fillvalue`` materialise it with ``fastconv._padding.pad_nchw``
  and run a valid correlation;
* ``valid`` swaps the inputs when ``in2`` is the larger one, exactly as scipy does: the swapped
  correlation (conjugating the smaller, original ``in1``) is reversed in both axes; convolution
  needs no reversal.

dtypes follow scipy exactly: the result has the promoted input dtype.  Integer problems run in
int32/int64 with wrap-around (bit-identical to scipy's integer accumulation, see
``fastconv._params.signal_compute_dtype``); an integer FFT is used only when a rounding bound proves
it exact.  Float and complex inputs whose values are all whole numbers get scipy's exact result too:
``auto`` runs the FFT on them only when rounding its result provably restores it, and never the
separable backend.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import _fast_paths, dispatch
from ._padding import MODE_CODES, pad_nchw, pad_planes
from ._params import (
    SIGNAL_BOUNDARIES,
    SIGNAL_MODES,
    check_copy,
    check_memory,
    make_signal_params,
    signal_compute_dtype,
    signal_fill_value,
    signal_padding,
    signal_result_dtype,
)
from .backends import BACKENDS, fft, separable


def correlate2d(in1, in2, mode="full", boundary="fill", fillvalue=0, *, algorithm="auto"):
    """Cross-correlate two 2-D arrays, exactly as ``scipy.signal.correlate2d``.

    ``out[i, j] = sum_{r, s} in1[i + r - pad_top, j + s - pad_left] * conj(in2[r, s])``, with the
    out-of-range samples of ``in1`` given by ``boundary``.

    Parameters
    ----------
    in1, in2 : array_like, 2-D
        Integer (any width, signed or unsigned), float32, float64, complex64 or complex128.
    mode : {"full", "same", "valid"}
        ``full``: every overlap, shape ``in1.shape + in2.shape - 1``.  ``same``: the centred part of
        ``full`` with ``in1``'s shape.  ``valid``: only complete overlaps; one input must be at least
        as large as the other in every dimension, and when ``in2`` is the larger one the inputs are
        swapped (and the result reversed), as scipy does.
    boundary : {"fill", "wrap", "symm"}
        Samples outside ``in1``: ``fillvalue``, periodic, or mirrored with the edge repeated.
        scipy's aliases ``"pad"``, ``"circular"`` and ``"symmetric"`` are accepted.
    fillvalue : scalar
        Value outside ``in1`` for ``boundary="fill"``, converted to the output dtype as scipy does.
    algorithm : {"auto", "direct", "fft", "separable", "im2col"}
        ``auto`` picks by predicted time; it never uses the FFT when an input holds NaN or Inf, nor
        for integers — or float/complex inputs whose values are all whole numbers — unless the
        transform provably rounds back to the exact result.

    Returns
    -------
    ndarray, C-contiguous, of ``numpy.result_type(in1, in2)``.

    Raises
    ------
    ValueError
        For the same bad arguments as scipy (inputs not 2-D, ``valid`` with neither input containing
        the other, unknown mode/boundary, non-scalar or uncastable ``fillvalue``, unsupported dtype),
        and when the requested ``algorithm`` cannot give scipy's result.
    """
    out = _fast_paths.signal(in1, in2, mode, boundary, fillvalue, algorithm, flip=False)
    if out is not None:
        return out
    return _signal_2d("correlate2d", in1, in2, mode, boundary, fillvalue, algorithm, flip=False)


def convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0, *, algorithm="auto"):
    """Convolve two 2-D arrays, exactly as ``scipy.signal.convolve2d``.

    ``out[i, j] = sum_{r, s} in1[i - r + shift_h, j - s + shift_w] * in2[r, s]`` (no conjugation),
    with the out-of-range samples of ``in1`` given by ``boundary``.  Parameters, return value and
    errors are those of :func:`correlate2d`; in ``valid`` mode swapping the inputs needs no reversal
    because convolution is commutative.
    """
    out = _fast_paths.signal(in1, in2, mode, boundary, fillvalue, algorithm, flip=True)
    if out is not None:
        return out
    return _signal_2d("convolve2d", in1, in2, mode, boundary, fillvalue, algorithm, flip=True)


def _valid_swap_needed(mode, shape1, shape2) -> bool:
    """scipy's rule: in ``valid`` mode the larger input plays ``in1``; neither being larger in every
    dimension is an error."""
    if mode != "valid":
        return False
    in1_contains = all(a >= b for a, b in zip(shape1, shape2))
    in2_contains = all(b >= a for a, b in zip(shape1, shape2))
    if not (in1_contains or in2_contains):
        raise ValueError(
            "For 'valid' mode, one must be at least as large as the other in every dimension "
            f"(in1 {shape1}, in2 {shape2})"
        )
    return not in1_contains


def _output_shape(mode, in_shape, kernel_shape) -> tuple[int, int]:
    if mode == "full":
        return tuple(a + b - 1 for a, b in zip(in_shape, kernel_shape))
    if mode == "same":
        return tuple(in_shape)
    return tuple(a - b + 1 for a, b in zip(in_shape, kernel_shape))


def _signal_2d(function, in1, in2, mode, boundary, fillvalue, algorithm, flip):
    dispatch.check_algorithm(algorithm)
    in1 = np.asarray(in1)
    in2 = np.asarray(in2)
    if not in1.ndim == in2.ndim == 2:
        raise ValueError(
            f"{function} inputs must both be 2-D arrays, got in1 of shape {in1.shape} and in2 of "
            f"shape {in2.shape}"
        )
    swapped = _valid_swap_needed(mode, in1.shape, in2.shape)
    if swapped:
        in1, in2 = in2, in1
    if not isinstance(mode, str) or mode not in SIGNAL_MODES:
        raise ValueError(f"Acceptable mode flags are 'valid', 'same', or 'full'; got {mode!r}.")
    if not isinstance(boundary, str) or boundary not in SIGNAL_BOUNDARIES:
        raise ValueError(
            "Acceptable boundary flags are 'fill', 'circular' (or 'wrap'), and 'symmetric' "
            f"(or 'symm'); got {boundary!r}."
        )
    boundary = SIGNAL_BOUNDARIES[boundary]
    result_dtype = signal_result_dtype(in1, in2, function)
    compute_dtype = signal_compute_dtype(result_dtype)
    # scipy validates fillvalue only for the fill boundary (and ignores it otherwise).
    fill = signal_fill_value(fillvalue, result_dtype) if boundary == "fill" else None

    out_shape = _output_shape(mode, in1.shape, in2.shape)
    if min(out_shape) <= 0 or in2.size == 0:
        # Nothing to compute (an empty output), or a sum over an empty kernel: zeros, as scipy.
        return np.zeros(tuple(max(n, 0) for n in out_shape), dtype=result_dtype)
    if in1.size == 0 and boundary != "fill":
        raise ValueError(
            f"{function}: boundary={boundary!r} needs a non-empty in1 to wrap or mirror, got shape "
            f"{in1.shape}"
        )

    # refuse hopeless sizes before the copies below (make_signal_params checks the padded problem)
    out_bytes = out_shape[0] * out_shape[1] * compute_dtype.itemsize
    check_memory(out_bytes, f"{function}: the output of shape {out_shape}")
    check_copy(in1, compute_dtype, "in1")
    check_copy(in2, compute_dtype, "in2")

    if flip:
        kernel = in2[::-1, ::-1]
    else:
        kernel = np.conj(in2) if in2.dtype.kind == "c" else in2
    # asarray casts unsafely: unsigned -> signed wraps, which the modular integer arithmetic allows.
    x = np.ascontiguousarray(in1, dtype=compute_dtype)[np.newaxis, np.newaxis]
    w = np.ascontiguousarray(kernel, dtype=compute_dtype)[np.newaxis, np.newaxis]
    pads = signal_padding(mode, in1.shape, in2.shape, flip)

    explicit = boundary != "fill" or fill != 0 or in1.size == 0
    if explicit and any(pads):
        fill_value = 0 if fill is None else fill.astype(compute_dtype)[()]
        if in1.size == 0:
            # pad_nchw's reshape(-1, H, W) cannot infer the plane count of an empty array
            x = pad_planes(x[0], *pads, MODE_CODES[boundary], fill_value)[np.newaxis]
        else:
            x = pad_nchw(x, pads, boundary, fill_value)
        pads = (0, 0, 0, 0)
    params = make_signal_params(x.shape[2:], w.shape[2:], pads, compute_dtype)

    decision = dispatch.choose_signal(params, x, w, algorithm)
    out = _run(decision, x, w, params)[0, 0]
    if result_dtype.kind in "iu":
        out = out.astype(result_dtype, copy=False)  # wraps modulo 2**bits, as scipy's C loop does
    if swapped and not flip:
        out = np.ascontiguousarray(out[::-1, ::-1])
    return out


def _run(decision, x, w, params):
    name = decision.algorithm
    if name == "separable":
        return separable.forward(x, w, None, params, factors=decision.factors)
    if name == "fft" and params.dtype.kind in "iu":
        # Transform in float64 and round: exact, because choose_signal checked the rounding bound.
        float_params = replace(params, dtype=np.dtype(np.float64))
        planes = fft.forward(x.astype(np.float64), w.astype(np.float64), None, float_params)
        return np.rint(planes).astype(np.int64).astype(params.dtype, copy=False)
    if name == "fft" and decision.round_to_integers:
        # integer-valued float or complex data: the same, in float64 / complex128 whatever the
        # data's precision (choose_signal checked the bound for that precision)
        wide = np.dtype(np.complex128 if params.dtype.kind == "c" else np.float64)
        planes = fft.forward(x.astype(wide), w.astype(wide), None, replace(params, dtype=wide))
        return np.rint(planes).astype(params.dtype, copy=False)
    return BACKENDS[name].forward(x, w, None, params)
