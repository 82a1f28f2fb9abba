"""conv2d backward: choose the backend for each gradient on its own.

The two gradients are different problems — the input gradient a correlation of the output gradient
with the flipped weights, the weight gradient a reduction over the batch — and their best backends
differ (a strided layer: im2col for the input, the blocked direct kernel for the weight)."""
from __future__ import annotations

from .._config import get_num_threads
from ..backends import BACKENDS, direct, fft, im2col
from ..backends import _direct_blocked as blocked
from . import measure
from .decisions import Decision, refuse_requested
from .eligibility import DataChecks
from .model import MODEL, cost_features

BACKWARD_ALGORITHMS = ("direct", "im2col", "fft")

# im2col's gradients through the unfold path (strided layers, < 8 channels per group) cost more than
# its forward: fold/unfold passes and GEMMs with the thin operand on the other side.  Measured per
# gradient / forward: 1.4-1.8 (ResNet stride 2, AlexNet), 2.5-3.6 (LeNet conv2).
IM2COL_UNFOLD_BACKWARD_FACTOR = 2.0

# A 1x1 layer's gradients are one GEMM per sample each, like its forward, but with an operand
# transposed and the result written strided: measured per gradient / forward on three 1x1 layers
# (64->256 and 256->64 on 56², 512->512 on 14², N=8) on a Zen 5: 1.4-1.8 (input), 1.3-1.5 (weight).
IM2COL_POINTWISE_BACKWARD_FACTOR = 1.5


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
            seconds += MODEL.predict("fft", fft.cost_features(transposed, threads) if transposed
                                     else fft.cost_features(params, threads, "full"))
        if need_weight:
            seconds += MODEL.predict("fft", fft.cost_features(params, threads, "full"))
        return seconds
    if name != "direct":
        seconds = (need_input + need_weight) * MODEL.predict(name, cost_features(name, params,
                                                                                 threads))
        if name == "im2col" and im2col.is_pointwise(params):
            seconds *= IM2COL_POINTWISE_BACKWARD_FACTOR
        elif name == "im2col" and not im2col.uses_shifted_taps(params):
            seconds *= IM2COL_UNFOLD_BACKWARD_FACTOR
        return seconds
    seconds = 0.0
    if need_input:
        transposed = direct.transposed_params(params)
        # otherwise one stride-1 correlation per input phase: the forward's multiply-adds in all
        seconds += MODEL.predict("direct", direct.cost_features(transposed or params, threads))
    if need_weight:
        seconds += MODEL.predict("direct", direct.weight_gradient_cost_features(params, threads))
    return seconds


def not_for_auto_backward(name: str, params, operation: str) -> str | None:
    """Why ``auto`` does not consider backend ``name`` for this gradient of this shape, or None.

    A 1x1 layer at stride 1 without padding has a weight gradient that is one GEMM per sample (the
    output gradient times the input's transpose, im2col's pointwise path); the FFT of a 1x1 kernel
    buys nothing, and direct's loop kernel (complex values, layers too padded for its register
    tiles) reuses no load across taps there: measured on five 1x1 layers (8 to 512 channels, 14²
    to 56²) on both ISAs, im2col fastest or within 1% on every one, that kernel up to 2.9x its
    time.  Direct's register tiles are a GEMM of their own, faster than im2col's on most of them,
    and stay in the ranking."""
    if (operation == "backward:weight" and name in ("direct", "fft")
            and im2col.is_pointwise(params)
            and not (name == "direct" and blocked.uses_weight_tiles(
                params.dtype, params.out_channels_per_group, params.in_channels_per_group))):
        return "a 1x1 layer's weight gradient is im2col's GEMM (runs when asked for)"
    return None


def choose_backward(params, algorithm: str, *arrays, runner=None,
                    operation: str = "backward", needs: tuple[bool, bool] = (True, True),
                    known_finite: dict | None = None) -> Decision:
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
        refuse_requested(algorithm, BACKENDS[algorithm].supports(params))
        return Decision(algorithm, "requested")
    prefix = "separable has no backward pass; deferred to " if algorithm == "separable" else ""
    checks = DataChecks(*arrays, known=known_finite)

    def eligible(name):
        return (BACKENDS[name].supports(params) is None
                and checks.rejects(name, operation) is None
                and not_for_auto_backward(name, params, operation) is None)

    if runner is not None and algorithm != "separable" and measure.measures(algorithm):
        def measure_all():
            return {name: measure.best_of_two(lambda name=name: runner(name))
                    for name in BACKWARD_ALGORITHMS if eligible(name)}

        times = measure.measured_times(measure.wisdom_key(params, operation), measure_all)
        for name in sorted(times, key=times.get):
            if checks.rejects(name, operation) is None:
                return Decision(name, f"fastest when measured ({times[name] * 1e3:.3g} ms)")
    need_input, need_weight = needs
    ranking = sorted(BACKWARD_ALGORITHMS, key=lambda name: estimate_backward_seconds(
        name, params, need_input=need_input, need_weight=need_weight))
    for name in ranking:
        if eligible(name):
            return Decision(name, prefix + "lowest predicted time")
    # unreachable: im2col supports every problem and every value
    return Decision("im2col", prefix + "fallback")


def choose_gradients(params, algorithm: str, grad, x, w, need_input: bool, need_weight: bool,
                     runner=None, known_finite: dict | None = None):
    """(input decision, weight decision) for conv2d_backward, None where not needed.
    ``runner(name, need_input, need_weight)`` computes the requested gradients with backend
    ``name`` (for measure mode)."""
    known = {} if known_finite is None else known_finite  # each array scanned once

    def choose(operands, operation, needs):
        return choose_backward(
            params, algorithm, *operands,
            runner=None if runner is None else (lambda name: runner(name, *needs)),
            operation=operation, needs=needs, known_finite=known,
        )

    input_decision = choose((grad, w), "backward:input", (True, False)) if need_input else None
    weight_decision = choose((grad, x), "backward:weight", (False, True)) if need_weight else None
    return input_decision, weight_decision
