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


# --- backward ---------------------------------------------------------------------------------
BACKWARD_ALGORITHMS = ("direct", "im2col", "fft")


def choose_backward(params, algorithm: str, *arrays) -> Decision:
    """Pick the backend that computes conv2d's input/weight gradients (``params`` in zero-padding
    form; ``arrays`` are the operands, checked for NaN/Inf before choosing ``fft``).

    A simple rule until the measured dispatcher exists: each gradient is a convolution with the
    forward's operation count, so the forward cost model ranks the backends.  ``separable`` has no
    backward pass of its own (its gradients are not rank-1 problems): it defers to the best of the
    others, and says so in the reason.
    """
    if algorithm not in ("auto", "separable"):
        reason = BACKENDS[algorithm].supports(params)
        if reason is not None:
            raise ValueError(f"algorithm={algorithm!r} cannot run this problem: {reason}")
        return Decision(algorithm, "requested")
    ranking = sorted(BACKWARD_ALGORITHMS, key=lambda name: estimate_seconds(name, params))
    prefix = "separable has no backward pass; deferred to " if algorithm == "separable" else ""
    for name in ranking:
        if name == "fft" and not _all_finite(*arrays):
            continue
        return Decision(name, prefix + "lowest predicted time")
    return Decision("direct", prefix + "fallback")  # unreachable: direct is always finite-safe
