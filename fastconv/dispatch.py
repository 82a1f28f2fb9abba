"""The one place where a convolution algorithm is chosen.

``algorithm="auto"`` ranks the backends that support a problem by a cost model — predicted seconds
from the problem's operation counts and per-backend throughput constants measured on a 2-core
x86-64 machine (AVX2, OpenBLAS) — and then applies the data-dependent eligibility rules that protect
correctness:

* ``separable`` only when every (k, c) kernel is numerically rank 1 (checked by SVD, only when the
  separable estimate would win);
* ``fft`` never when the input or the weight holds NaN or Inf: a transform spreads one non-finite
  value over the whole output, while the direct definition confines it to the windows that touch it.

Shape-only work (eligibility, estimates, ranking) is memoised per problem, so a repeated shape costs a
dictionary lookup.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from ._config import get_num_threads
from .backends import BACKENDS, fft, separable

ALGORITHMS = ("auto",) + tuple(BACKENDS)


def algorithms() -> tuple[str, ...]:
    """Names accepted by ``algorithm=``: ``"auto"`` and every backend."""
    return ALGORITHMS


def check_algorithm(algorithm) -> str:
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return algorithm


# --- cost model -------------------------------------------------------------------------------
# Throughputs per thread, in FLOP/s (or bytes/s), and fixed costs in seconds.  float64 runs at half
# the float32 vector width, so rates are divided by the itemsize ratio.
DIRECT_FLOPS_PER_THREAD = 9e9
STRIDED_DIRECT_PENALTY = 2.5  # a strided inner loop gathers instead of streaming
GEMM_FLOPS_PER_THREAD = 60e9
UNFOLD_BYTES_PER_THREAD = 3e9
FFT_FLOPS_PER_THREAD = 3e9
SPECTRAL_MAC_FLOPS_PER_THREAD = 4e9
CALL_OVERHEAD = {"direct": 4e-6, "im2col": 8e-6, "fft": 60e-6, "separable": 8e-6}
GEMM_CALL_OVERHEAD = 2e-6


def _width_factor(params) -> float:
    return params.dtype.itemsize / 4.0


def estimate_seconds(name: str, params, threads: int | None = None) -> float:
    """Predicted wall time of backend ``name`` on ``params`` (zero-padding form)."""
    threads = get_num_threads() if threads is None else threads
    slow = _width_factor(params)
    out_pixels = params.batch * params.out_channels * params.out_h * params.out_w
    if name == "direct":
        rate = DIRECT_FLOPS_PER_THREAD * threads
        if params.stride_w > 1:
            rate /= STRIDED_DIRECT_PENALTY
        return CALL_OVERHEAD[name] + params.flops * slow / rate
    if name == "im2col":
        depth = params.in_channels_per_group * params.kernel_h * params.kernel_w
        unfold_bytes = (
            params.batch * params.groups * depth * params.out_h * params.out_w * params.dtype.itemsize
        )
        gemm_calls = params.batch * params.groups
        return (
            CALL_OVERHEAD[name]
            + unfold_bytes / (UNFOLD_BYTES_PER_THREAD * threads)
            + params.flops * slow / (GEMM_FLOPS_PER_THREAD * threads)
            + gemm_calls * GEMM_CALL_OVERHEAD
        )
    if name == "fft":
        fft_h, fft_w = fft.transform_shape(params)
        size = fft_h * fft_w
        planes = (
            params.batch * params.in_channels
            + params.out_channels * params.in_channels_per_group
            + params.batch * params.out_channels
        )
        transform_flops = planes * 2.5 * size * math.log2(max(size, 2))
        mac_flops = 8 * params.batch * params.out_channels * params.in_channels_per_group * (
            fft_h * (fft_w // 2 + 1)
        )
        return (
            CALL_OVERHEAD[name]
            + transform_flops * slow / (FFT_FLOPS_PER_THREAD * threads)
            + mac_flops * slow / (SPECTRAL_MAC_FLOPS_PER_THREAD * threads)
            + out_pixels * 4e-10
        )
    if name == "separable":
        span_rows = params.out_h * params.stride_h + params.dilated_kernel_h
        pair_count = params.batch * params.out_channels * params.in_channels_per_group
        flops = 2 * pair_count * params.out_w * (
            span_rows * params.kernel_w + params.out_h * params.kernel_h
        )
        return CALL_OVERHEAD[name] + flops * slow / (DIRECT_FLOPS_PER_THREAD * threads)
    raise ValueError(f"no cost model for algorithm {name!r}")


# --- decisions --------------------------------------------------------------------------------
@dataclass
class Plan:
    """Shape-only part of a decision: eligible backends ranked by predicted time."""

    ranking: list[tuple[str, float]]
    ineligible: dict[str, str] = field(default_factory=dict)


@dataclass
class Decision:
    algorithm: str
    reason: str
    factors: tuple | None = None  # the separable factors, when the separable backend was chosen


_plans: dict[tuple, Plan] = {}
_plans_lock = threading.Lock()


def plan(params) -> Plan:
    """Eligible backends for ``params`` ranked by predicted time (memoised per problem)."""
    key = (params.key, get_num_threads())
    cached = _plans.get(key)
    if cached is not None:
        return cached
    ineligible = {}
    estimates = []
    for name, backend in BACKENDS.items():
        reason = backend.supports(params)
        if reason is not None:
            ineligible[name] = reason
        else:
            estimates.append((name, estimate_seconds(name, params)))
    estimates.sort(key=lambda item: item[1])
    result = Plan(ranking=estimates, ineligible=ineligible)
    with _plans_lock:
        _plans[key] = result
    return result


def _all_finite(*arrays) -> bool:
    return all(np.isfinite(a).all() for a in arrays if a is not None)


def choose_forward(params, x, w, algorithm: str) -> Decision:
    """Pick the backend that runs a conv2d forward.  ``params`` is in zero-padding form."""
    if algorithm != "auto":
        reason = BACKENDS[algorithm].supports(params)
        if reason is not None:
            raise ValueError(f"algorithm={algorithm!r} cannot run this problem: {reason}")
        return Decision(algorithm, "requested")
    finite = None
    for name, _seconds in plan(params).ranking:
        if name == "separable":
            factors = separable.factorize(w, params.dtype)
            if factors is None:
                continue
            return Decision(name, "lowest predicted time; kernels are rank 1", factors)
        if name == "fft":
            if finite is None:
                finite = _all_finite(x, w)
            if not finite:
                continue
        return Decision(name, "lowest predicted time")
    return Decision("direct", "fallback")  # unreachable: direct supports everything


# --- scipy.signal API (correlate2d / convolve2d) ---------------------------------------------
# A signal call is a single-plane ConvParams (N = C = K = 1) whose dtype may also be complex or an
# integer type (see fastconv._params.signal_compute_dtype).  ``auto`` ranks direct, fft and separable
# with the conv2d cost model, scaled for arithmetic the model was not fitted on; im2col is never
# chosen automatically for one plane (its GEMM degenerates to a matrix-vector product behind an
# unfold that moves R*S times the input) but runs when asked for.

SIGNAL_AUTO_CANDIDATES = ("direct", "fft", "separable")

# Relative cost of one multiply-add compared with the same-width float one.  A complex MAC is four
# real multiplies and four adds; 32-bit integer multiplies vectorise (vpmulld), AVX2 has no 64-bit one.
_DIRECT_ARITHMETIC_FACTOR = {"c": 4.0, "i32": 1.0, "i64": 4.0}
# The single-channel stride-1 direct kernel (fused taps, unit-stride loads) ran at 3-4x the general
# direct kernel's FLOP rate on 512x512 with 3x3..7x7 kernels (bench/bench_signal.py, 2 cores).
_SINGLE_CHANNEL_DIRECT_SPEEDUP = 3.0
# Complex data needs full complex transforms: twice the work of real-input (rfft) transforms.
_FFT_COMPLEX_FACTOR = 2.0
# One large plane transforms faster than the conv2d model's per-plane rate (fitted on stacks of
# small planes): measured 512x512 'same' FFT correlations took ~0.35x (float32) and ~0.7x (float64)
# of its prediction (bench/bench_signal.py, 2 cores, noisy shared machine).
_SIGNAL_FFT_FACTOR = {4: 0.35, 8: 0.7}

# FFT results for integer inputs are rounded to the nearest integer.  That is exact when the float64
# rounding error is below 1/2.  A transform of length n has a relative 2-norm error of about
# c * eps * log2(n) with c a small constant for pocketfft; through the forward transforms, the
# pointwise product and the inverse, the error of any output element is at most about
# 3 * c * eps * log2(n) * ||x||_2 * ||w||_1.  We require that bound, with c = 8 for a wide margin,
# to stay below 1/4, and the exact result to stay below 2**52 so float64 holds it exactly.
_INTEGER_FFT_ERROR_CONSTANT = 24.0


def _float_twin(params):
    """The same geometry in the float dtype whose vector width the integer/complex kernel has."""
    from dataclasses import replace

    kind, size = params.dtype.kind, params.dtype.itemsize
    if kind == "c":
        return replace(params, dtype=np.dtype(np.float32 if size == 8 else np.float64))
    if kind in "iu":
        return replace(params, dtype=np.dtype(np.float32 if size == 4 else np.float64))
    return params


def estimate_signal_seconds(name: str, params, threads: int | None = None) -> float:
    """Predicted wall time of backend ``name`` on a single-plane signal problem of any dtype."""
    kind = params.dtype.kind
    if name == "fft" and kind in "iu":
        # integers are transformed in float64
        from dataclasses import replace

        return _SIGNAL_FFT_FACTOR[8] * estimate_seconds(
            name, replace(params, dtype=np.dtype(np.float64)), threads
        )
    float_params = _float_twin(params)
    seconds = estimate_seconds(name, float_params, threads)
    if name == "fft":
        seconds *= _SIGNAL_FFT_FACTOR[float_params.dtype.itemsize]
    if name == "direct" and BACKENDS["direct"].single_channel_stride1_applies(params):
        seconds /= _SINGLE_CHANNEL_DIRECT_SPEEDUP
    if kind == "c":
        factor = _DIRECT_ARITHMETIC_FACTOR["c"] if name != "fft" else _FFT_COMPLEX_FACTOR
        seconds *= factor
    elif kind in "iu":
        seconds *= _DIRECT_ARITHMETIC_FACTOR["i32" if params.dtype.itemsize == 4 else "i64"]
    return seconds


def integer_fft_is_exact(x, w) -> bool:
    """Whether float64 FFT correlation of the integer arrays ``x``, ``w`` rounds back to the exact
    integer result (see the bound above)."""
    x64 = np.asarray(x, dtype=np.float64)
    w64 = np.asarray(w, dtype=np.float64)
    if x64.size == 0 or w64.size == 0:
        return True
    w_l1 = float(np.abs(w64).sum())
    if float(np.abs(x64).max()) * w_l1 >= 2.0 ** 52:
        return False
    n = x64.shape[-1] * x64.shape[-2] + w64.shape[-1] * w64.shape[-2]
    error = (
        _INTEGER_FFT_ERROR_CONSTANT * np.finfo(np.float64).eps * math.log2(max(n, 2))
        * float(np.linalg.norm(x64.ravel())) * w_l1
    )
    return error < 0.25


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


# Below this many taps a rank-1 kernel gains little from two 1-D passes over the fused direct
# kernel, and the SVD that proves the rank would cost a good part of the call: don't try.
SIGNAL_SEPARABLE_MIN_TAPS = 25

_signal_rankings: dict[tuple, tuple[str, ...]] = {}


def _signal_ranking(params) -> tuple[str, ...]:
    """Auto candidates for a signal problem, cheapest predicted first (memoised per problem)."""
    key = (params.key, get_num_threads())
    ranking = _signal_rankings.get(key)
    if ranking is None:
        candidates = [
            name for name in SIGNAL_AUTO_CANDIDATES
            if name != "separable" or params.kernel_h * params.kernel_w >= SIGNAL_SEPARABLE_MIN_TAPS
        ]
        ranking = tuple(sorted(candidates, key=lambda name: estimate_signal_seconds(name, params)))
        with _plans_lock:
            _signal_rankings[key] = ranking
    return ranking


def _could_be_rank1(kernel) -> bool:
    """Cheap necessary condition before the SVD that proves rank 1 (an SVD of a 45x45 kernel can
    cost more than the FFT convolution it would decide about).  A rank-1 matrix equals its skeleton
    through its largest entry, ``outer(column, row) / pivot``, up to rounding; a residual far above
    rounding rules rank 1 out."""
    magnitude = np.abs(kernel)
    if not np.isfinite(magnitude).all():
        return False
    i, j = np.unravel_index(np.argmax(magnitude), kernel.shape)
    pivot = kernel[i, j]
    if pivot == 0:
        return True  # the zero kernel; let factorize decide
    skeleton = np.outer(kernel[:, j], kernel[i, :] / pivot)
    residual = float(np.max(np.abs(kernel - skeleton)))
    return residual <= 1e3 * separable.rank_tolerance(kernel.dtype) * float(magnitude[i, j])


def choose_signal(params, x, w, algorithm: str) -> Decision:
    """Pick the backend for a correlate2d / convolve2d call.  ``params`` is in zero-padding form,
    ``x`` (1, 1, H, W) and ``w`` (1, 1, R, S) are in ``params.dtype``."""
    if algorithm != "auto":
        reason = _signal_refusal(algorithm, params, x, w)
        if reason is None:
            reason = BACKENDS[algorithm].supports(params)
        if reason is not None:
            raise ValueError(f"algorithm={algorithm!r} cannot run this problem: {reason}")
        if algorithm == "separable":
            factors = separable.factorize(w, params.dtype)
            if factors is None:
                raise ValueError(
                    f"algorithm='separable' needs a rank-1 kernel; in2 of shape {w.shape[2:]} is not "
                    "(numerically) rank 1 — use 'direct' or 'fft'"
                )
            return Decision(algorithm, "requested", factors)
        return Decision(algorithm, "requested")
    for name in _signal_ranking(params):
        if name == "direct":
            return Decision(name, "lowest predicted time")
        if _signal_refusal(name, params, x, w) is not None:
            continue
        if name == "separable":
            factors = separable.factorize(w, params.dtype) if _could_be_rank1(w[0, 0]) else None
            if factors is not None:
                return Decision(name, "lowest predicted time; kernel is rank 1", factors)
            continue
        if name == "fft" and _all_finite(x, w):
            return Decision(name, "lowest predicted time")
    return Decision("direct", "fallback")
