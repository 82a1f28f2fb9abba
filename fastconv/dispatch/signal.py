"""The scipy.signal API (correlate2d / convolve2d): which backend runs one plane.

A signal call is a single-plane ConvParams (N = C = K = 1) whose dtype may also be complex or an
integer type (see fastconv._params.signal_compute_dtype).  ``auto`` ranks direct, fft and separable
with the conv2d cost model, scaled for arithmetic the model was not fitted on; im2col is never
chosen automatically for one plane (its GEMM degenerates to a matrix-vector product behind an
unfold that moves R*S times the input) but runs when asked for.
"""
from __future__ import annotations

import math
import threading
from dataclasses import replace

import numpy as np

from .._config import get_num_threads
from ..backends import BACKENDS
from ..backends._common import all_integer_valued
from .decisions import Decision, refuse_requested
from .eligibility import DataChecks
from .model import MODEL, cost_features

SIGNAL_AUTO_CANDIDATES = ("direct", "fft", "separable")

# Relative cost of one multiply-add compared with the same-width float one.  A complex MAC is four
# real multiplies and four adds; 32-bit integer multiplies vectorise (vpmulld), AVX2 has no 64-bit one.
_DIRECT_ARITHMETIC_FACTOR = {"c": 4.0, "i32": 1.0, "i64": 4.0}
# One large plane runs the one-accumulator direct kernels faster than the conv2d model's rate
# (fitted mostly on stacks of small planes, where per-pass costs weigh more): 512x512 with 9x9 to
# 31x31 kernels measured 1.7-2.3 times below the model's time (`bench --suite signal`).  Like
# _SIGNAL_FFT_FACTOR for the transforms.  Both scale the work part of a prediction only.
_SINGLE_PLANE_DIRECT_SPEEDUP = 2.0
# Complex data needs full complex transforms: twice the work of real-input (rfft) transforms.
_FFT_COMPLEX_FACTOR = 2.0
# One large plane transforms faster than the conv2d model's per-plane rate (fitted on stacks of
# small planes): measured 512x512 'valid' FFT correlations took ~0.45-0.6 (float32) and ~0.4-0.6
# (float64) of its prediction (`bench --suite signal`, a noisy shared machine).
_SIGNAL_FFT_FACTOR = {4: 0.45, 8: 0.45}

# FFT results for integer inputs are rounded to the nearest integer.  That is exact when the float64
# rounding error is below 1/2.  A transform of length n has a relative 2-norm error of about
# c * eps * log2(n) with c a small constant for pocketfft; through the forward transforms, the
# pointwise product and the inverse, the error of any output element is at most about
# 3 * c * eps * log2(n) * ||x||_2 * ||w||_1.  We require that bound, with c = 8 for a wide margin,
# to stay below 1/4, and the exact result to stay below 2**52 so float64 holds it exactly.
_INTEGER_FFT_ERROR_CONSTANT = 24.0

# Below this many taps a rank-1 kernel gains little from two 1-D passes over the fused direct
# kernel, and the SVD that proves the rank would cost a good part of the call: don't try.
SIGNAL_SEPARABLE_MIN_TAPS = 25


def _float_twin(params):
    """The same geometry in the float dtype whose vector width the integer/complex kernel has."""
    kind, size = params.dtype.kind, params.dtype.itemsize
    if kind == "c":
        return replace(params, dtype=np.dtype(np.float32 if size == 8 else np.float64))
    if kind in "iu":
        return replace(params, dtype=np.dtype(np.float32 if size == 4 else np.float64))
    return params


def _fixed_and_work_seconds(name: str, params, threads: int | None) -> tuple[float, float]:
    threads = get_num_threads() if threads is None else threads
    return MODEL.fixed_and_work(name, cost_features(name, params, threads))


def estimate_signal_seconds(name: str, params, threads: int | None = None) -> float:
    """Predicted wall time of backend ``name`` on a single-plane signal problem of any dtype.

    The signal corrections (complex or integer arithmetic, the single-plane rates) scale only the
    work part of the conv2d model: they describe arithmetic and transform throughput, not the fixed
    cost of a call.  Scaling that too priced a complex FFT of a 2x7 plane below the direct sum.
    """
    kind = params.dtype.kind
    if name == "fft" and kind in "iu":
        # integers are transformed in float64
        fixed, work = _fixed_and_work_seconds(name, replace(params, dtype=np.dtype(np.float64)),
                                              threads)
        return fixed + _SIGNAL_FFT_FACTOR[8] * work
    float_params = _float_twin(params)
    fixed, work = _fixed_and_work_seconds(name, float_params, threads)
    if name == "fft":
        work *= _SIGNAL_FFT_FACTOR[float_params.dtype.itemsize]
    if name == "direct":
        work /= _SINGLE_PLANE_DIRECT_SPEEDUP
    if kind == "c":
        work *= _DIRECT_ARITHMETIC_FACTOR["c"] if name != "fft" else _FFT_COMPLEX_FACTOR
    elif kind in "iu":
        work *= _DIRECT_ARITHMETIC_FACTOR["i32" if params.dtype.itemsize == 4 else "i64"]
    return fixed + work


def integer_fft_is_exact(x, w) -> bool:
    """Whether a float64 (complex128 for complex data) FFT correlation of the integer-valued arrays
    ``x``, ``w`` rounds back to the exact integer result (see the bound above).  Complex values
    count by their magnitude: it bounds both parts of every product and of every sum."""
    x_magnitude = np.abs(np.asarray(x)).astype(np.float64, copy=False)
    w_magnitude = np.abs(np.asarray(w)).astype(np.float64, copy=False)
    if x_magnitude.size == 0 or w_magnitude.size == 0:
        return True
    w_l1 = float(w_magnitude.sum())
    if float(x_magnitude.max()) * w_l1 >= 2.0 ** 52:
        return False
    n = x_magnitude.shape[-1] * x_magnitude.shape[-2] + w_magnitude.shape[-1] * w_magnitude.shape[-2]
    error = (
        _INTEGER_FFT_ERROR_CONSTANT * np.finfo(np.float64).eps * math.log2(max(n, 2))
        * float(np.linalg.norm(x_magnitude.ravel())) * w_l1
    )
    return error < 0.25


def _integer_valued_fft_seconds(params, threads: int | None = None) -> float:
    """Predicted time of the FFT that rounds integer-valued float or complex data: it transforms in
    64-bit floats whatever the data's precision."""
    wide = np.dtype(np.complex128 if params.dtype.kind == "c" else np.float64)
    return estimate_signal_seconds("fft", replace(params, dtype=wide), threads)


def _signal_refusal(name: str, params, x, w) -> str | None:
    """Why backend ``name`` cannot give scipy's result for this signal problem, or None."""
    kind = params.dtype.kind
    if kind in "iu":
        if name in ("im2col", "separable"):
            return (
                f"integer inputs must give scipy's exact integer result; {name} computes in "
                "floating point — use algorithm='direct' (exact) or 'fft' (exact when the "
                "rounding bound allows)"
            )
        if name == "fft" and not integer_fft_is_exact(x, w):
            return (
                "these integer inputs are too large for a float64 transform to round back to the "
                "exact result; use algorithm='direct'"
            )
    if name == "separable" and kind == "c":
        return "the separable backend factorises real kernels only; complex input needs 'direct' or 'fft'"
    return None


_signal_rankings: dict[tuple, tuple[str, ...]] = {}
_rankings_lock = threading.Lock()


def _forget_rankings() -> None:
    with _rankings_lock:
        _signal_rankings.clear()


MODEL.on_change(_forget_rankings)


def signal_ranking(params) -> tuple[str, ...]:
    """``auto``'s candidates for a single-plane signal problem, cheapest predicted first, before
    any look at the data (memoised per problem and thread count)."""
    key = (params.key, get_num_threads())
    ranking = _signal_rankings.get(key)
    if ranking is None:
        candidates = [
            name for name in SIGNAL_AUTO_CANDIDATES
            if name != "separable" or params.kernel_h * params.kernel_w >= SIGNAL_SEPARABLE_MIN_TAPS
        ]
        ranking = tuple(sorted(candidates, key=lambda name: estimate_signal_seconds(name, params)))
        with _rankings_lock:
            _signal_rankings[key] = ranking
    return ranking


def choose_signal(params, x, w, algorithm: str) -> Decision:
    """Pick the backend for a correlate2d / convolve2d call.  ``params`` is in zero-padding form,
    ``x`` (1, 1, H, W) and ``w`` (1, 1, R, S) are in ``params.dtype``."""
    checks = DataChecks(x, w, weight=w, dtype=params.dtype)
    if algorithm == "measure":
        raise ValueError("algorithm='measure' times conv2d's backends; correlate2d/convolve2d "
                         "take 'auto' or one backend (see fastconv.algorithms())")
    if algorithm != "auto":
        reason = _signal_refusal(algorithm, params, x, w)
        refuse_requested(algorithm, reason if reason is not None
                         else BACKENDS[algorithm].supports(params))
        if algorithm == "separable":
            if checks.factors() is None:
                raise ValueError(
                    f"algorithm='separable' needs a rank-1 kernel; in2 of shape {w.shape[2:]} is not "
                    "(numerically) rank 1 — use 'direct' or 'fft'"
                )
            return Decision(algorithm, "requested", checks.factors())
        return Decision(algorithm, "requested")
    # Integer-valued float or complex data (an image of whole numbers in float64, scipy's own
    # tests' complex inputs) get the exact result from the direct sum, as from scipy: the FFT runs
    # on them only when rounding its result provably restores that exact result, and the separable
    # backend (irrational factors) not at all.
    integer_valued = None
    for name in signal_ranking(params):
        if name == "direct":
            return Decision(name, "lowest predicted time")
        if _signal_refusal(name, params, x, w) is not None:
            continue
        if params.dtype.kind in "fc":
            if integer_valued is None:
                integer_valued = all_integer_valued(x, w)
            if integer_valued and name == "separable":
                continue
        if checks.rejects(name) is not None:  # starts with separable's cheap rank-1 pre-test
            continue
        if name == "separable":
            return Decision(name, "lowest predicted time; kernel is rank 1", checks.factors())
        if integer_valued:
            if (integer_fft_is_exact(x, w) and _integer_valued_fft_seconds(params)
                    < estimate_signal_seconds("direct", params)):
                return Decision(name, "lowest predicted time; integer-valued data, rounded "
                                "to the exact result", round_to_integers=True)
            continue
        return Decision(name, "lowest predicted time")
    return Decision("direct", "fallback")
