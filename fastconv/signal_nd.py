"""scipy.signal's N-d convolution API on fastconv's own kernels.

``convolve``, ``correlate``, ``fftconvolve``, ``oaconvolve`` and ``choose_conv_method`` take arrays
of any number of dimensions and follow ``scipy.signal`` (``scipy/signal/_signaltools.py``): the
same modes, the ``valid``-mode swap of the inputs, ``axes`` with broadcasting over the other axes,
0-d inputs, result dtypes and error messages.  The work runs on

* ``fastconv.backends.direct_nd``: the defining sum on the flattened zero-padded input (integers
  exactly, in wrapping int32/int64 arithmetic, as scipy's integer loops);
* ``fastconv.backends.fft_nd``: a whole-array FFT or overlap-add blocks, planned by fastconv
  (``fastconv.dispatch.nd``) around ``scipy.fft`` transforms.

Differences from scipy, all deliberate and raised or documented:

* ``convolve``/``correlate`` with an empty input return an empty 1-D array of the result dtype, as
  ``fftconvolve`` does (scipy raises an error from deep inside its kernels);
* bool and float16 work in any number of dimensions (scipy's N-d direct kernel refuses them; its
  1-D path, NumPy's, accepts them): bool results are "any product true", float16 is summed in
  float32 and rounded once;
* object arrays raise TypeError and extended precision (longdouble) ValueError: no kernel here
  computes in them;
* ``method="auto"`` never picks the FFT when an input holds NaN or Inf (scipy's does, and warns
  that the whole output is then NaN/Inf): the direct sum confines them to the windows that touch
  them, as fastconv's other ``auto`` choices do.  ``method="fft"`` behaves and warns as scipy's.
"""
from __future__ import annotations

import operator
import timeit
import warnings

import numpy as np

from .dispatch import nd as nd_choice
from ._params import check_copy, check_memory, signal_compute_dtype
from .backends import direct_nd, fft_nd

MODES = ("full", "same", "valid")
METHODS = ("auto", "direct", "fft")
_SUPPORTED_KINDS = "biufc"


# --- validation ---------------------------------------------------------------------------------
def _check_dtype(function, *arrays):
    for name, array in zip(("in1", "in2"), arrays):
        kind = array.dtype.kind
        if kind not in _SUPPORTED_KINDS:
            raise TypeError(
                f"{function}: {name} of dtype {array.dtype} (shape {array.shape}) is not numeric; "
                "fastconv computes in bool, integer, float16/32/64 and complex64/128 only"
            )
        if (kind == "f" and array.dtype.itemsize > 8) or (kind == "c" and array.dtype.itemsize > 16):
            raise ValueError(
                f"{function}: {name} of dtype {array.dtype} (extended precision) is not supported "
                "by fastconv; use float64/complex128"
            )


def _check_mode(function, mode, lowercase=False):
    if not isinstance(mode, str) or mode not in MODES:
        start = "acceptable" if lowercase else "Acceptable"
        raise ValueError(f"{start} mode flags are 'valid', 'same', or 'full'; {function} got "
                         f"mode={mode!r}.")


def _check_method(function, method):
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"Acceptable method flags are 'auto', 'direct', or 'fft'; {function} got "
                         f"method={method!r}.")


def _check_same_ndim(function, in1, in2, names=("in1", "in2")):
    if in1.ndim != in2.ndim:
        raise ValueError(
            f"{names[0]} and {names[1]} should have the same dimensionality; {function} got "
            f"{names[0]} of shape {in1.shape} and {names[1]} of shape {in2.shape}"
        )


def inputs_swap_needed(mode, shape1, shape2, axes=None) -> bool:
    """scipy's rule: in ``valid`` mode the input that is at least as large in every (convolution)
    axis plays in1; neither being so is an error."""
    if mode != "valid" or not shape1:
        return False
    axes = range(len(shape1)) if axes is None else axes
    in1_contains = all(shape1[a] >= shape2[a] for a in axes)
    in2_contains = all(shape2[a] >= shape1[a] for a in axes)
    if not (in1_contains or in2_contains):
        raise ValueError(
            "For 'valid' mode, one must be at least as large as the other in every dimension "
            f"(in1 of shape {tuple(shape1)}, in2 of shape {tuple(shape2)})"
        )
    return not in1_contains


def _reverse_and_conj(array):
    reversed_ = array[(slice(None, None, -1),) * array.ndim]
    return np.conj(reversed_) if array.dtype.kind == "c" else reversed_


def _all_finite(*arrays) -> bool:
    for array in arrays:
        if array.dtype.kind in "fc":
            check_memory(array.size, f"the NaN/Inf scan of an input of shape {array.shape}")
            if not np.isfinite(array).all():
                return False
    return True


def _scalar_product(in1, in2, conjugate):
    _check_dtype("0-d product", in1, in2)
    return in1 * (np.conj(in2) if conjugate and in2.dtype.kind == "c" else in2)


# --- direct -------------------------------------------------------------------------------------
def _direct_compute_dtype(result_dtype):
    if result_dtype.kind == "b":
        return np.dtype(np.int32)  # a product of bools is 0/1; a sum is non-zero iff any is true
    if result_dtype == np.float16:
        return np.dtype(np.float32)
    return signal_compute_dtype(result_dtype)


def _direct_correlate(signal, weights, mode, result_dtype):
    """``out[i] = sum_t signal[i + t - pad] * weights[t]`` for ``mode`` (no conjugation, no swap):
    ``signal`` is zero-padded once and handed to the flattened-plane kernel."""
    compute = _direct_compute_dtype(result_dtype)
    pads = []
    for n, k in zip(signal.shape, weights.shape):
        if mode == "full":
            pads.append((k - 1, k - 1))
        elif mode == "same":
            start = (k - 1) // 2  # scipy's centring of the full result
            pads.append((k - 1 - start, start))
        else:
            pads.append((0, 0))
    # the casts are unsafe: unsigned -> signed wraps, which the modular integer sums allow
    kernel = np.ascontiguousarray(weights, dtype=compute)
    if signal.ndim == 1 and signal.size >= weights.size:
        # a long signal is read in place; only its ends are padded (see direct_nd.correlate_1d)
        check_copy(signal, compute, "the signal")
        check_memory((signal.size + weights.size) * compute.itemsize,
                     f"the output of a direct convolution of {signal.size} samples")
        out = direct_nd.correlate_1d(np.ascontiguousarray(signal, dtype=compute), kernel, *pads[0])
        return _direct_result(out, result_dtype)
    padded_shape = tuple(n + before + after for n, (before, after) in zip(signal.shape, pads))
    check_memory(int(np.prod(padded_shape, dtype=object)) * compute.itemsize * 2,
                 f"the zero-padded input of shape {padded_shape} and its output")
    padded = np.zeros(padded_shape, dtype=compute)
    padded[tuple(slice(before, before + n) for n, (before, _) in zip(signal.shape, pads))] = signal
    out = direct_nd.correlate_valid(padded, kernel)
    return _direct_result(out, result_dtype)


def _direct_result(out, result_dtype):
    if result_dtype.kind == "b":
        return out != 0
    # unsigned and narrow integers were summed in wrapping int32/int64: the same residue
    return out.astype(result_dtype, copy=False)


def _correlate_direct(in1, in2, mode, result_dtype):
    """scipy's ``correlate(method='direct')``: the larger input plays in1 in ``full`` mode (less
    padding) and when ``valid`` needs it; a swapped correlation is reversed and conjugated."""
    swapped = ((mode == "full" and in2.size > in1.size)
               or inputs_swap_needed(mode, in1.shape, in2.shape))
    if swapped:
        in1, in2 = in2, in1
    weights = np.conj(in2) if in2.dtype.kind == "c" else in2
    out = _direct_correlate(in1, weights, mode, result_dtype)
    return np.ascontiguousarray(_reverse_and_conj(out)) if swapped else out


def _convolve_direct(volume, kernel, mode, result_dtype):
    """Convolution is a correlation with the kernel reversed; it commutes, so the larger input
    plays ``volume`` in ``full`` mode without any undoing."""
    if mode == "full" and kernel.size > volume.size:
        volume, kernel = kernel, volume
    return _direct_correlate(volume, kernel[(slice(None, None, -1),) * kernel.ndim], mode,
                             result_dtype)


# --- frequency domain ---------------------------------------------------------------------------
def _normalise_axes(function, ndim, axes):
    """scipy.fft's ``axes`` rules (and messages)."""
    if axes is None:
        return list(range(ndim))
    try:
        items = [operator.index(axes)]
    except TypeError:
        try:
            items = [operator.index(a) for a in axes]
        except TypeError:
            raise ValueError(f"axes must be a scalar or iterable of integers; {function} got "
                             f"axes={axes!r}") from None
    if not items:
        raise ValueError("when provided, axes cannot be empty")
    items = [a + ndim if a < 0 else a for a in items]
    if any(a >= ndim or a < 0 for a in items):
        raise ValueError(f"axes exceeds dimensionality of input ({function}: {ndim}-d inputs, "
                         f"axes={axes!r})")
    if len(set(items)) != len(items):
        raise ValueError(f"all axes must be unique; {function} got axes={axes!r}")
    return items


def _freq_axes(function, in1, in2, mode, axes):
    """scipy's ``_init_freq_conv_axes``: drop axes where an input has length 1 (a product there),
    check the broadcast of the others, swap for ``valid``.  Returns in1, in2, sorted axes."""
    s1, s2 = in1.shape, in2.shape
    axes = [a for a in _normalise_axes(function, in1.ndim, axes) if s1[a] != 1 and s2[a] != 1]
    axes.sort()
    if not all(s1[a] == s2[a] or s1[a] == 1 or s2[a] == 1
               for a in range(in1.ndim) if a not in axes):
        raise ValueError(f"incompatible shapes for in1 and in2: {s1} and {s2}")
    if inputs_swap_needed(mode, s1, s2, axes=axes):
        in1, in2 = in2, in1
    return in1, in2, axes


def _apply_mode(full, s1, s2, mode, axes):
    """The ``mode`` part of the full result, as scipy's ``_apply_conv_mode`` (a copy)."""
    region = _mode_region(full.shape, s1, s2, mode, axes)
    return np.ascontiguousarray(full[tuple(slice(*bounds) for bounds in region)])


def _mode_region(full_shape, s1, s2, mode, axes):
    """``(start, stop)`` per axis of the part of the full result ``mode`` keeps: all of it, the
    centred ``s1`` (``same``) or the centred ``s1 - s2 + 1`` on the convolution axes (``valid``),
    as scipy's ``_apply_conv_mode``."""
    if mode == "full":
        shape = list(full_shape)
    elif mode == "same":
        shape = list(s1)
    else:
        shape = [full_shape[a] if a not in axes else s1[a] - s2[a] + 1 for a in range(len(full_shape))]
    return [((n - m) // 2, (n - m) // 2 + m) for n, m in zip(full_shape, shape)]


def _spectral(function, in1, in2, mode, axes, strategy):
    """fftconvolve / oaconvolve / convolve(method='fft') after the 0-d and ndim checks."""
    if in1.size == 0 or in2.size == 0:
        return np.array([])
    in1, in2, axes = _freq_axes(function, in1, in2, mode, axes)
    s1, s2 = in1.shape, in2.shape
    if not axes:
        # every convolution axis has length 1 in an input: the convolution is a product
        return _apply_mode(in1 * in2, s1, s2, mode, axes)
    if strategy == "whole":
        blocks = {}
    else:
        blocks = nd_choice.overlap_add_blocks(s1, s2, axes, fft_nd.transform_dtype(in1.dtype, in2.dtype),
                                               prefer_whole=(strategy == "auto"))
    full_shape = [s1[a] + s2[a] - 1 if a in axes else max(s1[a], s2[a]) for a in range(in1.ndim)]
    region = _mode_region(full_shape, s1, s2, mode, axes)
    return fft_nd.convolve_full(in1, in2, axes, blocks, region)


# --- public API ---------------------------------------------------------------------------------
def convolve(in1, in2, mode="full", method="auto"):
    """Convolve two N-d arrays, as ``scipy.signal.convolve``.

    ``method``: ``direct`` (the defining sum; integers exact), ``fft`` (frequency domain: a whole
    transform or overlap-add, whichever fastconv's plan predicts faster; integer results are
    rounded, as scipy's) or ``auto`` (:func:`choose_conv_method`).  The result has
    ``numpy.result_type(in1, in2)``.  In ``valid`` mode the input that is at least as large in
    every dimension plays ``in1``; neither being so raises ValueError.
    """
    volume, kernel = np.asarray(in1), np.asarray(in2)
    if volume.ndim == kernel.ndim == 0:
        return _scalar_product(volume, kernel, conjugate=False)
    _check_same_ndim("convolve", volume, kernel, names=("volume", "kernel"))
    _check_mode("convolve", mode)
    _check_method("convolve", method)
    _check_dtype("convolve", volume, kernel)
    result_dtype = np.result_type(volume.dtype, kernel.dtype)
    if volume.size == 0 or kernel.size == 0:
        return np.zeros(0, dtype=result_dtype)
    if inputs_swap_needed(mode, volume.shape, kernel.shape):
        volume, kernel = kernel, volume  # convolution commutes
    if method == "auto":
        method = nd_choice.choose_method(volume, kernel, mode)
        if method == "fft" and not _all_finite(volume, kernel):
            # a transform spreads one NaN/Inf over the whole output; the definition confines it
            # to the windows that touch it (fastconv's rule for every auto choice)
            method = "direct"
    if method == "direct":
        return _convolve_direct(volume, kernel, mode, result_dtype)
    out = _spectral("convolve", volume, kernel, mode, None, "auto")
    if result_dtype.kind in "biu":
        out = np.rint(out)
    first = out.reshape(-1)[:1]
    if first.size and not np.isfinite(first[0]):
        warnings.warn("Use of fft convolution on input with NAN or inf results in NAN or inf "
                      "output. Consider using method='direct' instead.",
                      category=RuntimeWarning, stacklevel=2)
    return out.astype(result_dtype, copy=False)


def correlate(in1, in2, mode="full", method="auto"):
    """Cross-correlate two N-d arrays, as ``scipy.signal.correlate``:
    ``z[k] = sum_l in1[l] * conj(in2[l - k + shift])``.

    ``direct`` sums the definition (integers exact); ``fft`` and ``auto`` run :func:`convolve` with
    ``in2`` reversed and conjugated, as scipy does.
    """
    in1, in2 = np.asarray(in1), np.asarray(in2)
    if in1.ndim == in2.ndim == 0:
        return _scalar_product(in1, in2, conjugate=True)
    _check_same_ndim("correlate", in1, in2)
    _check_mode("correlate", mode)
    _check_method("correlate", method)
    _check_dtype("correlate", in1, in2)
    if method in ("fft", "auto"):
        return convolve(in1, _reverse_and_conj(in2), mode, method)
    result_dtype = np.result_type(in1.dtype, in2.dtype)
    if in1.size == 0 or in2.size == 0:
        return np.zeros(0, dtype=result_dtype)
    return _correlate_direct(in1, in2, mode, result_dtype)


def fftconvolve(in1, in2, mode="full", axes=None):
    """Convolve two N-d arrays with one FFT of the whole (padded) arrays, as
    ``scipy.signal.fftconvolve``.

    The transforms are ``scipy.fft``'s, at ``next_fast_len`` sizes; padding, the pointwise product
    and the crop are fastconv's (``fastconv.backends.fft_nd``).  ``axes``: the convolution axes
    (default all); on the others the inputs must have equal lengths or length 1 (broadcast).
    Integer and bool inputs give float64, float16 float32 (scipy.fft's rule).
    """
    in1, in2 = np.asarray(in1), np.asarray(in2)
    if in1.ndim == in2.ndim == 0:
        return _scalar_product(in1, in2, conjugate=False)
    _check_same_ndim("fftconvolve", in1, in2)
    _check_mode("fftconvolve", mode, lowercase=True)
    _check_dtype("fftconvolve", in1, in2)
    return _spectral("fftconvolve", in1, in2, mode, axes, "whole")


def oaconvolve(in1, in2, mode="full", axes=None):
    """Convolve two N-d arrays by overlap-add, as ``scipy.signal.oaconvolve``.

    The longer input is cut into pieces along each axis where that pays (block lengths from
    ``fastconv.nd_choice.overlap_add_blocks``); each piece is transformed at a small fast length,
    multiplied by the other input's spectrum and added back.  Where one block would cover the
    whole axis it is transformed whole, as :func:`fftconvolve`.  Memory grows with the pieces, so
    a 10**7-sample signal with a 10**5-tap kernel needs a few copies of the signal, no more.
    """
    in1, in2 = np.asarray(in1), np.asarray(in2)
    if in1.ndim == in2.ndim == 0:
        return _scalar_product(in1, in2, conjugate=False)
    _check_same_ndim("oaconvolve", in1, in2)
    _check_mode("oaconvolve", mode, lowercase=True)
    _check_dtype("oaconvolve", in1, in2)
    strategy = "whole" if in1.shape == in2.shape else "overlap-add"
    return _spectral("oaconvolve", in1, in2, mode, axes, strategy)


def choose_conv_method(in1, in2, mode="full", measure=False):
    """``'direct'`` or ``'fft'``, the faster for :func:`convolve` / :func:`correlate` of these
    inputs, as ``scipy.signal.choose_conv_method``.

    Without ``measure`` the choice comes from fastconv's cost model for its own kernels
    (``fastconv.dispatch.nd``).  With ``measure=True`` both methods are timed on these inputs and
    ``(method, {"direct": seconds, "fft": seconds})`` is returned.
    """
    volume, kernel = np.asarray(in1), np.asarray(in2)
    if measure:
        times = {}
        for method in ("fft", "direct"):
            times[method] = _time_call(lambda: convolve(volume, kernel, mode=mode, method=method))
        return ("fft" if times["fft"] < times["direct"] else "direct"), times
    _check_mode("choose_conv_method", mode)
    if volume.ndim == kernel.ndim == 0 or volume.ndim != kernel.ndim:
        return "direct"
    _check_dtype("choose_conv_method", volume, kernel)
    return nd_choice.choose_method(volume, kernel, mode)


def _time_call(run, repeat=3) -> float:
    """Seconds per call: enough calls per repeat to last 0.005 s, best of ``repeat`` (as scipy times)."""
    timer = timeit.Timer(run)
    number = 1
    for power in range(10):
        number = 10 ** power
        elapsed = timer.timeit(number)
        if elapsed >= 5e-4:
            break
    if elapsed > 1:
        return elapsed / number
    number *= 10
    return min(timer.repeat(repeat, number)) / number
