"""The one place where a convolution algorithm is chosen.

``algorithm="auto"`` ranks the backends that support a problem by a cost model — predicted seconds
from the problem's operation counts and per-backend throughput constants measured on a 2-core
x86-64 machine (AVX2, OpenBLAS) — and then applies the data-dependent eligibility rules that protect
correctness:

* ``separable`` only when every (k, c) kernel is numerically rank 1 (checked by SVD, only when the
  separable estimate would win);
* ``fft`` and ``winograd`` never when the input or the weight holds NaN or Inf: a transform spreads
  one non-finite value over the whole output (fft) or its whole tile (winograd), while the direct
  definition confines it to the windows that touch it.

Shape-only work (eligibility, estimates, ranking) is memoised per problem, so a repeated shape costs a
dictionary lookup.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ._config import get_num_threads
from .backends import BACKENDS, direct, fft, im2col, separable, winograd
from .backends._common import all_finite, all_integer_valued

ALGORITHMS = ("auto", "measure") + tuple(BACKENDS)


def algorithms() -> tuple[str, ...]:
    """Names accepted by ``algorithm=``: ``"auto"`` (cost model), ``"measure"`` (time the
    eligible backends once per problem) and every backend."""
    return ALGORITHMS


def check_algorithm(algorithm) -> str:
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return algorithm


# --- cost model -------------------------------------------------------------------------------
# Each backend's predicted time is a dot product of shape features (operation counts, bytes, calls;
# per thread, with float64 counted double because it fills half a vector) and per-machine
# coefficients (seconds per unit).  ``python -m fastconv calibrate`` fits the coefficients on this
# machine; the defaults below were fitted on a 2-core x86-64 (AVX2 OpenBLAS) machine.
FEATURE_NAMES = {
    "direct": ("call", "one_channel_flops", "blocked_flops", "blocked_passes"),
    "im2col": ("call", "bytes_moved", "gemm_flops", "gemm_calls", "narrow_gemm_flops"),
    "fft": ("call", "transform_flops", "mac_flops", "output_elements", "tile_mix_flops"),
    "separable": ("call", "flops", "kernel_factorisations"),
    "winograd": ("call", "transform_elements", "gemm_flops", "kernel_launches"),
}
DEFAULT_COEFFICIENTS = {  # fitted by `python -m fastconv calibrate` (2-core AMD EPYC, znver5)
    "direct": (1.21e-05, 1.71e-11, 4.93e-12, 3.28e-08),
    "im2col": (0, 0, 9.48e-12, 9.79e-07, 2.69e-10),
    "fft": (2.42e-05, 4.23e-11, 1.77e-10, 1.73e-09, 1.8e-11),
    "separable": (2.75e-05, 2.34e-10, 0),
    "winograd": (2.78e-05, 2.19e-09, 4.72e-11, 9.94e-07),
}
# fft's tile_mix_flops (the overlap-save path's channel mixing, register tiles on cache-resident
# spectra) is not fitted yet: its coefficient was measured on one layer (docs/measurements.md); the
# full-size path's channel reduction (mac_flops) streams whole-image spectra from memory and costs
# an order of magnitude more per flop.
# A calibration stored before this feature existed has four fft coefficients: it is ignored for fft
# (set_cost_coefficients checks the count) until `python -m fastconv calibrate` runs again.
# im2col's gradients through the unfold path (strided layers, < 8 channels per group) cost more than
# its forward: fold/unfold passes and GEMMs with the thin operand on the other side.  Measured per
# gradient / forward: 1.4-1.8 (ResNet stride 2, AlexNet), 2.5-3.6 (LeNet conv2).
IM2COL_UNFOLD_BACKWARD_FACTOR = 2.0

_coefficients = dict(DEFAULT_COEFFICIENTS)


def set_cost_coefficients(coefficients: dict | None) -> None:
    """Use fitted coefficients (``None`` restores the shipped defaults); clears memoised plans."""
    global _coefficients
    merged = dict(DEFAULT_COEFFICIENTS)
    for name, values in (coefficients or {}).items():
        if name in FEATURE_NAMES and len(values) == len(FEATURE_NAMES[name]):
            merged[name] = tuple(float(v) for v in values)
    _coefficients = merged
    _forget_plans()


_plan_forgetters: list = []


def on_model_change(forget) -> None:
    """Call ``forget()`` whenever the cost model changes: for memos of decisions kept elsewhere
    (``fastconv._fast_paths``)."""
    _plan_forgetters.append(forget)


def _forget_plans() -> None:
    """One reset for every memoised decision: forward plans, signal rankings, registered memos."""
    with _plans_lock:
        _plans.clear()
        _signal_rankings.clear()
    for forget in _plan_forgetters:
        forget()


def cost_features(name: str, params, threads: int) -> tuple[float, ...]:
    """The shape features of backend ``name``'s cost on ``params`` (zero-padding form)."""
    width = params.dtype.itemsize / 4.0
    if name == "direct":
        if direct.blocked.applies(params):
            # kernels on flattened (phase) planes: they also compute the discarded columns, the
            # zero channels that fill the last block and the lanes of a tile past a task's end;
            # each pass (a register tile, or a sweep over one accumulator) has a fixed cost that
            # dominates on small planes
            flops, passes = direct.blocked.work(params)
            if params.out_channels_per_group == 1:  # one accumulator per pass: load-bound
                return (1.0, flops * width / threads, 0.0, passes / threads)
            return (1.0, 0.0, flops * width / threads, passes / threads)
        # the fused single-channel kernel (integers), also one accumulator per pass
        return (1.0, params.flops * width / threads, 0.0, 0.0)
    if name == "im2col":
        itemsize = params.dtype.itemsize
        if im2col.uses_shifted_taps(params):
            # no unfold: the input is padded once and the GEMMs also compute the padded_w - out_w
            # dropped columns of every output row; one GEMM per tap, sample and group
            moved = (params.batch * params.in_channels * params.padded_h * params.padded_w
                     + params.batch * params.out_channels * params.out_h * params.padded_w)
            gemm_flops = params.flops * params.padded_w / params.out_w
            calls = params.batch * params.groups * params.kernel_h * params.kernel_w
            inner = params.in_channels_per_group
        else:
            depth = params.in_channels_per_group * params.kernel_h * params.kernel_w
            moved = params.batch * params.groups * depth * params.out_h * params.out_w
            gemm_flops = params.flops
            calls = params.batch * params.groups
            inner = depth
        # BLAS runs far below peak when an operand is thin (few output channels or a short inner
        # dimension): its packing and edge handling cost per element, not per multiply-add
        narrow = gemm_flops / min(params.out_channels_per_group, inner)
        return (1.0, moved * itemsize / threads, gemm_flops * width / threads, float(calls),
                narrow * width / threads)
    if name == "fft":
        # the path the backend takes: full-size transforms, or overlap-save tiles (small kernel
        # spectra, every input tile's spectrum reused by all output channels)
        return _fft_features(params, threads, "auto")
    if name == "separable":
        span_rows = params.out_h * params.stride_h + params.dilated_kernel_h
        pair_count = params.batch * params.out_channels * params.in_channels_per_group
        flops = 2 * pair_count * params.out_w * (
            span_rows * params.kernel_w + params.out_h * params.kernel_h
        )
        # the rank check (one small SVD per (k, c) kernel) runs on every call
        return (1.0, flops * width / threads, float(params.out_channels * params.in_channels_per_group))
    if name == "winograd":
        # F(4x4, 3x3) as the backend runs it (alignment tiles, channels rounded up to whole
        # register tiles, chunks of tile rows): see winograd.work
        transform_elements, gemm_flops, launches = winograd.work(params)
        return (1.0, transform_elements * width / threads, gemm_flops * width / threads,
                float(launches))
    raise ValueError(f"no cost model for algorithm {name!r}")


def _fft_features(params, threads: int, path: str) -> tuple[float, ...]:
    width = params.dtype.itemsize / 4.0
    transform_flops, mac_flops, mix_flops = fft.cost_work(params, threads, path)
    outputs = params.batch * params.out_channels * params.out_h * params.out_w
    return (1.0, transform_flops * width / threads, mac_flops * width / threads,
            outputs / threads, mix_flops * width / threads)


def estimate_seconds(name: str, params, threads: int | None = None) -> float:
    """Predicted wall time of backend ``name`` on ``params`` (zero-padding form)."""
    threads = get_num_threads() if threads is None else threads
    return _predict(name, cost_features(name, params, threads))


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
    # signal API only: run the FFT in 64-bit floats and round to the nearest integer, because the
    # data are integer-valued and the rounding bound proves the rounded result exact
    round_to_integers: bool = False


_plans: dict[tuple, Plan] = {}
_plans_lock = threading.Lock()
_calibration_checked = False


def _load_calibration_once() -> None:
    """Use this machine's fitted coefficients, if ``python -m fastconv calibrate`` stored any."""
    global _calibration_checked
    if _calibration_checked:
        return
    _calibration_checked = True
    from .calibration import load_calibration

    coefficients = load_calibration()
    if coefficients:
        set_cost_coefficients(coefficients)


def plan(params) -> Plan:
    """Eligible backends for ``params`` ranked by predicted time (memoised per problem)."""
    key = (params.key, get_num_threads())
    cached = _plans.get(key)
    if cached is not None:
        return cached
    _load_calibration_once()
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
    return all_finite(*arrays)


class _DataChecks:
    """Data-dependent eligibility, computed at most once per call and only when needed."""

    def __init__(self, params, x, w):
        self.params, self.x, self.w = params, x, w
        self._finite = None
        self._factors = False  # False: not computed yet; None: not rank 1

    def finite(self) -> bool:
        if self._finite is None:
            self._finite = _all_finite(self.x, self.w)
        return self._finite

    def factors(self):
        if self._factors is False:
            self._factors = separable.factorize(self.w, self.params.dtype)
        return self._factors

    def rejects(self, name: str) -> str | None:
        """Why backend ``name`` must not run on this data (None if it may)."""
        if name == "separable" and self.factors() is None:
            return "some kernel is not numerically rank 1"
        if name in ("fft", "winograd") and not self.finite():
            return f"the data holds NaN or Inf, which {name} would spread beyond the windows touching it"
        return None


# --- measured autotuning ----------------------------------------------------------------------
_autotune = False
_measured: dict[str, dict] = {}
_measured_lock = threading.Lock()
_wisdom_store = None


def set_autotune(enabled: bool) -> None:
    """With autotuning on, ``algorithm="auto"`` behaves as ``"measure"``: the first call with a new
    problem times every eligible backend and remembers the winner (in memory and in the wisdom file)."""
    global _autotune
    _autotune = bool(enabled)
    _forget_plans()  # memos of model decisions must not bypass the measurements


def get_autotune() -> bool:
    return _autotune


def wisdom_path():
    """The wisdom file: ``$FASTCONV_WISDOM``, else ``wisdom.json`` in the fastconv cache directory."""
    import os
    from pathlib import Path

    from ._config import cache_dir

    override = os.environ.get("FASTCONV_WISDOM")
    return Path(override).expanduser() if override else cache_dir() / "wisdom.json"


def _wisdom():
    global _wisdom_store
    if _wisdom_store is None or _wisdom_store.path != wisdom_path():
        from ._wisdom import JsonStore

        _wisdom_store = JsonStore(wisdom_path(), "wisdom")
    return _wisdom_store


def forget_measurements() -> None:
    """Drop in-memory measurements (the wisdom file is left alone)."""
    global _wisdom_store
    with _measured_lock:
        _measured.clear()
    _wisdom_store = None


def wisdom_key(params, operation: str = "forward") -> str:
    """Everything the winner can depend on: operation, shapes, dtype, all parameters, threads."""
    fields = ",".join(
        f"{name}={getattr(params, name)}" for name in params.__dataclass_fields__
    )
    return f"{operation}|{fields}|threads={get_num_threads()}"


def _time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_forward(params, x, w, checks: _DataChecks | None = None) -> dict[str, float]:
    """Seconds each eligible backend takes on this very problem (best of two, after a warm-up run
    that also compiles)."""
    checks = checks or _DataChecks(params, x, w)
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
        run()
        times[name] = min(_time_once(run), _time_once(run))
    return times


def _measured_times(key: str, measure) -> dict[str, float]:
    """Times remembered under ``key`` (in memory, else in the wisdom file), else ``measure()``d now
    and remembered in both."""
    record = _measured.get(key)
    if record is None:
        stored = _wisdom().get(key)
        if isinstance(stored, dict) and isinstance(stored.get("times"), dict):
            record = stored
        else:
            record = {"times": measure()}
            _wisdom().update({key: record})
        with _measured_lock:
            _measured[key] = record
    return record["times"]


def choose_forward(params, x, w, algorithm: str) -> Decision:
    """Pick the backend that runs a conv2d forward.  ``params`` is in zero-padding form."""
    if algorithm not in ("auto", "measure"):
        reason = BACKENDS[algorithm].supports(params)
        if reason is not None:
            raise ValueError(f"algorithm={algorithm!r} cannot run this problem: {reason}")
        return Decision(algorithm, "requested")
    checks = _DataChecks(params, x, w)
    if algorithm == "measure" or _autotune:
        times = _measured_times(wisdom_key(params),
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


# --- backward ---------------------------------------------------------------------------------
BACKWARD_ALGORITHMS = ("direct", "im2col", "fft")


def _predict(name, features) -> float:
    _load_calibration_once()
    return float(sum(c * f for c, f in zip(_coefficients[name], features)))


def estimate_backward_seconds(name: str, params, threads: int | None = None, *,
                              need_input: bool = True, need_weight: bool = True) -> float:
    """Predicted time of the requested gradients.  Each costs about one forward of the same
    backend (fft: one full-size forward, or the tiled forward the input gradient runs), except
    for direct: its input gradient is the forward kernels' problem
    ``direct.transposed_params`` where that exists (stride 1) and one correlation per input phase
    otherwise (priced as the forward); its weight gradient is the blocked reduction, priced as the
    blocked forward."""
    threads = get_num_threads() if threads is None else threads
    if name == "fft":
        # the weight gradient runs full-size transforms; the input gradient too, unless it is a
        # stride-1 correlation the backend runs on tiles (then priced as that forward problem)
        seconds = 0.0
        if need_input:
            transposed = fft.tiled_input_gradient_params(params, threads)
            seconds += _predict("fft", _fft_features(transposed, threads, "auto") if transposed
                                else _fft_features(params, threads, "full"))
        if need_weight:
            seconds += _predict("fft", _fft_features(params, threads, "full"))
        return seconds
    if name != "direct":
        seconds = (need_input + need_weight) * _predict(name, cost_features(name, params, threads))
        if name == "im2col" and not im2col.uses_shifted_taps(params):
            seconds *= IM2COL_UNFOLD_BACKWARD_FACTOR
        return seconds
    seconds = 0.0
    if need_input:
        transposed = direct.transposed_params(params)
        # otherwise one stride-1 correlation per input phase: the forward's multiply-adds in all
        seconds += _predict("direct", cost_features("direct", transposed or params, threads))
    if need_weight:
        seconds += _predict("direct", cost_features("direct", params, threads))
    return seconds


def choose_backward(params, algorithm: str, *arrays, runner=None,
                    operation: str = "backward", needs: tuple[bool, bool] = (True, True)) -> Decision:
    """Pick the backend that computes conv2d's input/weight gradients (``params`` in zero-padding
    form; ``arrays`` are the operands, checked for NaN/Inf before choosing ``fft``).

    Model mode ranks the backends by the forward cost model (each gradient is a convolution with
    the forward's operation count).  In measure mode (``algorithm="measure"`` or autotuning on),
    ``runner(name)`` — supplied by the caller, it computes the requested gradients with backend
    ``name`` — is timed for every eligible backend once per ``operation`` and problem, and the
    winner is remembered like the forward's.  ``separable`` has no backward pass of its own (its
    gradients are not rank-1 problems): it defers to the best of the others, and says so.
    """
    if algorithm not in ("auto", "measure", "separable"):
        if algorithm not in BACKWARD_ALGORITHMS:
            raise ValueError(
                f"algorithm={algorithm!r} has no backward pass; use one of "
                f"{('auto',) + BACKWARD_ALGORITHMS}"
            )
        reason = BACKENDS[algorithm].supports(params)
        if reason is not None:
            raise ValueError(f"algorithm={algorithm!r} cannot run this problem: {reason}")
        return Decision(algorithm, "requested")
    prefix = "separable has no backward pass; deferred to " if algorithm == "separable" else ""
    finite = None

    def eligible(name):
        nonlocal finite
        if name != "fft":
            return True
        if finite is None:
            finite = _all_finite(*arrays)
        return finite

    if runner is not None and algorithm != "separable" and (algorithm == "measure" or _autotune):
        def measure():
            times = {}
            for name in BACKWARD_ALGORITHMS:
                if BACKENDS[name].supports(params) is None and eligible(name):
                    runner(name)  # warm-up, compiles
                    times[name] = min(_time_once(lambda: runner(name)),
                                      _time_once(lambda: runner(name)))
            return times

        times = _measured_times(wisdom_key(params, operation), measure)
        for name in sorted(times, key=times.get):
            if eligible(name):
                return Decision(name, f"fastest when measured ({times[name] * 1e3:.3g} ms)")
    need_input, need_weight = needs
    ranking = sorted(BACKWARD_ALGORITHMS, key=lambda name: estimate_backward_seconds(
        name, params, need_input=need_input, need_weight=need_weight))
    for name in ranking:
        if eligible(name):
            return Decision(name, prefix + "lowest predicted time")
    return Decision("direct", prefix + "fallback")  # unreachable: direct is always finite-safe


def choose_gradients(params, algorithm: str, grad, x, w, need_input: bool, need_weight: bool,
                     runner=None):
    """(input decision, weight decision) for conv2d_backward, None where not needed.

    The two gradients are different problems — the input gradient a correlation of the output
    gradient with the flipped weights, the weight gradient a reduction over the batch — and their
    best backends differ (a strided layer: im2col for the input, the blocked direct kernel for the
    weight), so each is chosen on its own.  ``runner(name, need_input, need_weight)`` computes the
    requested gradients with backend ``name`` (for measure mode)."""
    def choose(operands, operation, needs):
        return choose_backward(
            params, algorithm, *operands,
            runner=None if runner is None else (lambda name: runner(name, *needs)),
            operation=operation, needs=needs,
        )

    input_decision = choose((grad, w), "backward:input", (True, False)) if need_input else None
    weight_decision = choose((grad, x), "backward:weight", (False, True)) if need_weight else None
    return input_decision, weight_decision


# --- explain ----------------------------------------------------------------------------------
@dataclass
class Explanation:
    """What ``auto`` would do for a problem, and why.  ``str()`` gives the readable report;
    :meth:`as_dict` the same for programs."""

    problem: str
    candidates: list[dict]
    choice: str
    reason: str
    mode: str

    def as_dict(self) -> dict:
        return {"problem": self.problem, "mode": self.mode, "choice": self.choice,
                "reason": self.reason, "candidates": self.candidates}

    def __str__(self) -> str:
        lines = [f"conv2d {self.problem}", f"mode: {self.mode}", ""]
        width = max((len(c["algorithm"]) for c in self.candidates), default=0)
        for c in self.candidates:
            if c["eligible"]:
                timing = f"{c['seconds'] * 1e3:10.3f} ms {c['source']}"
            else:
                timing = f"{'-':>10}    ineligible: {c['reason']}"
            marker = "->" if c["algorithm"] == self.choice else "  "
            lines.append(f"{marker} {c['algorithm']:<{width}}  {timing}")
        lines += ["", f"choice: {self.choice} ({self.reason})"]
        return "\n".join(lines)


def explain(input_shape, weight_shape, dtype="float32", *, bias=False, stride=1, padding=0,
            dilation=1, groups=1, padding_mode="zeros", weight=None) -> Explanation:
    """Report which backend ``algorithm="auto"`` picks for a conv2d problem, with every backend's
    predicted (or, if measured before, measured) time and the reason others are ineligible.

    Only shapes are needed.  Pass ``weight`` (an array of ``weight_shape``) to include the
    data-dependent rule for the separable backend; without it, separable is reported as depending on
    the kernels' rank.  NaN/Inf in the data would additionally exclude ``fft`` at call time.
    """
    from ._params import as_array, compute_dtype, describe_conv

    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy dtype or its name, got {dtype!r}") from None
    # the dtype conv2d would compute in (integers in float64; complex refused, naming ``dtype``)
    dtype = compute_dtype(as_array(np.empty(0, dtype), "dtype"))
    bias_shape = tuple(weight_shape)[:1] if bias else None
    params, _ = describe_conv(input_shape, weight_shape, bias_shape, dtype, stride, padding,
                              dilation, groups, padding_mode)
    if params.batch == 0:
        return Explanation(problem=params.describe(), candidates=[], choice="none",
                           reason="a batch of zero samples: the empty output is returned without "
                           "running a backend", mode="no computation")
    zero_form = params.explicitly_padded() if params.padding_mode != "zeros" else params
    ranking = plan(zero_form)
    measured = None
    if _autotune or wisdom_key(zero_form) in _measured:
        record = _measured.get(wisdom_key(zero_form)) or _wisdom().get(wisdom_key(zero_form))
        measured = record.get("times") if isinstance(record, dict) else None
    rank_one = None
    if weight is not None:
        rank_one = separable.factorize(np.asarray(weight), params.dtype) is not None
    candidates = []
    for name, seconds in ranking.ranking:
        entry = {"algorithm": name, "eligible": True, "seconds": seconds, "source": "(predicted)"}
        if measured and name in measured:
            entry.update(seconds=measured[name], source="(measured)")
        if name == "separable" and rank_one is False:
            entry.update(eligible=False, reason="some kernel is not numerically rank 1")
        elif name == "separable" and rank_one is None:
            entry["source"] += " if every kernel is rank 1"
        candidates.append(entry)
    for name, reason in ranking.ineligible.items():
        candidates.append({"algorithm": name, "eligible": False, "reason": reason})
    eligible = sorted((c for c in candidates if c["eligible"]), key=lambda c: c["seconds"])
    # without the weights, separable's rank is unknown: report the choice for a full-rank weight
    runnable = [c for c in eligible if not (c["algorithm"] == "separable" and rank_one is None)]
    best = runnable[0]
    reason = "fastest when measured" if best["source"] == "(measured)" else "lowest predicted time"
    if eligible[0] is not best:
        reason += "; separable would win if every kernel were rank 1"
    mode = "measure (autotune)" if _autotune else "model (cost model" + (
        ", calibrated)" if _coefficients != DEFAULT_COEFFICIENTS else ", shipped defaults)")
    return Explanation(problem=params.describe(), candidates=candidates, choice=best["algorithm"],
                       reason=reason, mode=mode)


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


def _float_twin(params):
    """The same geometry in the float dtype whose vector width the integer/complex kernel has."""
    kind, size = params.dtype.kind, params.dtype.itemsize
    if kind == "c":
        return replace(params, dtype=np.dtype(np.float32 if size == 8 else np.float64))
    if kind in "iu":
        return replace(params, dtype=np.dtype(np.float32 if size == 4 else np.float64))
    return params


def _fixed_and_work_seconds(name: str, params, threads: int | None) -> tuple[float, float]:
    """The conv2d model's prediction split into the fixed cost of a call (the ``call`` feature)
    and the part that grows with the problem."""
    threads = get_num_threads() if threads is None else threads
    features = cost_features(name, params, threads)
    coefficients = _coefficients[name]
    fixed = coefficients[0] * features[0]
    work = float(sum(c * f for c, f in zip(coefficients[1:], features[1:])))
    return fixed, work


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


# Below this many taps a rank-1 kernel gains little from two 1-D passes over the fused direct
# kernel, and the SVD that proves the rank would cost a good part of the call: don't try.
SIGNAL_SEPARABLE_MIN_TAPS = 25

_signal_rankings: dict[tuple, tuple[str, ...]] = {}


def _signal_ranking(params) -> tuple[str, ...]:
    """Auto candidates for a signal problem, cheapest predicted first (memoised per problem)."""
    key = (params.key, get_num_threads())
    ranking = _signal_rankings.get(key)
    if ranking is None:
        _load_calibration_once()
        candidates = [
            name for name in SIGNAL_AUTO_CANDIDATES
            if name != "separable" or params.kernel_h * params.kernel_w >= SIGNAL_SEPARABLE_MIN_TAPS
        ]
        ranking = tuple(sorted(candidates, key=lambda name: estimate_signal_seconds(name, params)))
        with _plans_lock:
            _signal_rankings[key] = ranking
    return ranking


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
    # Integer-valued float or complex data (an image of whole numbers in float64, scipy's own
    # tests' complex inputs) get the exact result from the direct sum, as from scipy: the FFT runs
    # on them only when rounding its result provably restores that exact result, and the separable
    # backend (irrational factors) not at all.
    integer_valued = None
    for name in _signal_ranking(params):
        if name == "direct":
            return Decision(name, "lowest predicted time")
        if _signal_refusal(name, params, x, w) is not None:
            continue
        if name == "separable":
            if params.dtype.kind in "fc":
                if integer_valued is None:
                    integer_valued = all_integer_valued(x, w)
                if integer_valued:
                    continue
            factors = separable.factorize(w, params.dtype)  # starts with the cheap rank-1 pre-test
            if factors is not None:
                return Decision(name, "lowest predicted time; kernel is rank 1", factors)
            continue
        if name == "fft" and _all_finite(x, w):
            if params.dtype.kind in "fc":
                if integer_valued is None:
                    integer_valued = all_integer_valued(x, w)
                if integer_valued:
                    if (integer_fft_is_exact(x, w) and _integer_valued_fft_seconds(params)
                            < estimate_signal_seconds("direct", params)):
                        return Decision(name, "lowest predicted time; integer-valued data, rounded "
                                        "to the exact result", round_to_integers=True)
                    continue
            return Decision(name, "lowest predicted time")
    return Decision("direct", "fallback")


def signal_ranking(params) -> tuple[str, ...]:
    """``auto``'s candidates for a single-plane signal problem, cheapest predicted first, before
    any look at the data (memoised per problem and thread count)."""
    return _signal_ranking(params)
