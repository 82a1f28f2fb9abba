"""conv2d forward: rank the backends that support a problem by the cost model (memoised per
problem and thread count), then take the first one the data allow."""
from __future__ import annotations

import threading

from .._config import get_num_threads
from ..backends import BACKENDS, separable
from . import measure
from .decisions import Decision, Plan, refuse_requested
from .eligibility import DataChecks
from .model import MODEL, estimate_seconds

_plans: dict[tuple, Plan] = {}
_plans_lock = threading.Lock()


def _forget_plans() -> None:
    with _plans_lock:
        _plans.clear()


MODEL.on_change(_forget_plans)


def not_for_auto(name: str, params) -> str | None:
    """Why ``auto`` does not consider backend ``name`` for a shape it supports, or None.

    One input and one output channel per group (single images, depthwise layers) reduce im2col's
    GEMM to a matrix-vector product — behind an unfold that writes R*S copies of the input, or for
    a 1x1 kernel a 1 x 1 x positions "GEMM" that only scales the plane: never the fastest, and on
    tiny planes its fixed costs (the unfold's parallel region, the BLAS call) are ones the model
    cannot tell apart from the GEMM's on the calibration grid.  The signal API leaves im2col out
    for the same reason.  Winograd likewise: its savings are in the products over channels.
    ``calibrate`` does not time what auto never considers, so those timings do not skew the
    coefficients of the problems it does decide."""
    one_to_one = params.in_channels_per_group == 1 and params.out_channels_per_group == 1
    if name == "im2col" and one_to_one:
        return ("one input and one output channel per group: its GEMM is a matrix-vector product "
                "(runs when asked for)")
    if name == "winograd" and one_to_one:
        # its 4x fewer multiplies pay only when the products run over channels: with one channel
        # the transforms alone cost more than direct's nine multiply-adds per output (4-10x
        # direct's time on single images from 16² to 1024², both ISAs)
        return ("one input and one output channel per group: the transforms cost more than the "
                "definition (runs when asked for)")
    return None


def plan(params) -> Plan:
    """Eligible backends for ``params`` ranked by predicted time (memoised per problem)."""
    key = (params.key, get_num_threads())
    cached = _plans.get(key)
    if cached is not None:
        return cached
    ineligible = {}
    estimates = []
    for name, backend in BACKENDS.items():
        reason = backend.supports(params) or not_for_auto(name, params)
        if reason is not None:
            ineligible[name] = reason
        else:
            estimates.append((name, estimate_seconds(name, params)))
    estimates.sort(key=lambda item: item[1])
    result = Plan(ranking=estimates, ineligible=ineligible)
    with _plans_lock:
        _plans[key] = result
    return result


def measure_forward(params, x, w, checks: DataChecks | None = None) -> dict[str, float]:
    """Seconds each eligible backend takes on this very problem (best of two, after a warm-up run
    that also compiles)."""
    checks = checks or DataChecks(x, w, weight=w, dtype=params.dtype)
    times = {}
    for name, _ in plan(params).ranking:
        if checks.rejects(name):
            continue
        if name == "separable":
            def run(factors=checks.factors()):
                return separable.forward(x, w, None, params, factors=factors)
        else:
            def run(backend=BACKENDS[name]):
                return backend.forward(x, w, None, params)
        times[name] = measure.best_of_two(run)
    return times


def choose_forward(params, x, w, algorithm: str) -> Decision:
    """Pick the backend that runs a conv2d forward.  ``params`` is in zero-padding form."""
    if algorithm not in ("auto", "measure"):
        refuse_requested(algorithm, BACKENDS[algorithm].supports(params))
        return Decision(algorithm, "requested")
    checks = DataChecks(x, w, weight=w, dtype=params.dtype)
    if measure.measures(algorithm):
        times = measure.measured_times(measure.wisdom_key(params),
                                       lambda: measure_forward(params, x, w, checks))
        # the stored winner may be ineligible on this call's data (NaN input, full-rank weight)
        for name in sorted(times, key=times.get):
            if checks.rejects(name) is None:
                factors = checks.factors() if name == "separable" else None
                return Decision(name, f"fastest when measured ({times[name] * 1e3:.3g} ms)", factors)
    for name, _seconds in plan(params).ranking:
        if checks.rejects(name) is None:
            factors = checks.factors() if name == "separable" else None
            return Decision(name, "lowest predicted time", factors)
    return Decision("direct", "fallback")  # unreachable: direct supports everything and all data
