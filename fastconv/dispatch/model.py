"""The cost model: a backend's predicted time is the dot product of the cost features of the path
it takes (``backend.cost_features``: operation counts, bytes, calls, per thread) with coefficients
in seconds per unit.

The coefficients depend on the CPU far more than on anything else — an AVX-512 core multiplies
twice the floats per instruction of an AVX2 one (and some AVX-512 cores twice again), while a BLAS
call or a thread wake-up costs about the same — so fastconv ships one fitted set per kind of vector
unit and picks the set of the CPU the kernels are compiled for (``fastconv._cpu.target_cpu``; for
AVX-512, ``fastconv._fma_width`` says which kind).  ``python -m fastconv calibrate``
refines them for the exact CPU model; its file is read lazily, on the first prediction.

:data:`MODEL` owns the coefficients and the one reset: every memo of a decision made with the
model (forward plans, signal rankings, the small-call fast paths) registers with
:meth:`CostModel.on_change` and is cleared whenever the coefficients change.
"""
from __future__ import annotations

import os
import threading

from .._config import get_num_threads
from .._cpu import target_cpu
from .._wisdom import load_calibration
from ..backends import BACKENDS

FEATURE_NAMES = {name: backend.COST_FEATURES for name, backend in BACKENDS.items()}

# Fitted by `python -m fastconv calibrate --fits 3 --print-shipped [--isa avx2]` (a fit of the
# median times of three measurements of the grid) on 2-core machines: "avx512" on an AMD EPYC Zen 4
# (znver4), whose 64-byte multiply-adds run as two 32-byte halves; "avx512-full-width" on an Intel
# Xeon (Sapphire Rapids, which LLVM reports as rocketlake under its hypervisor), two full-width
# multiply-adds per cycle; "avx2" on a Zen 4 in a process restricted to AVX2 as issue 11
# describes (`fastconv._cpu.restricted_environment("avx2")`: Numba, oneDNN, ATen and OpenBLAS
# alike), refitted after the direct forward gained the lane tile (the set fitted before on the
# Xeon, restricted the same way, had a median prediction error of 26% on that Zen 4's timings
# against the refit's 16%).  The Xeon's two fits
# leave out the problems ``auto`` never considers (``forward.not_for_auto``) and price Winograd's
# filter transform; the Zen 4 set came before that feature and prices it at 0 (its predictions
# unchanged) until it is refitted on such a machine.  The README's dispatcher section has the
# commands and the fits' spread.
SHIPPED_COEFFICIENTS = {
    "avx512": {
        "direct": (5.76e-06, 1.05e-05, 2.89e-11, 1.3e-11, 4.15e-08, 9.01e-12, 8.25e-10),
        "im2col": (6.19e-06, 4.73e-10, 1.26e-11, 9.39e-07, 0.0),
        "fft": (3.15e-05, 7.79e-11, 9.4e-10, 4.22e-09, 6.78e-11),
        "winograd": (1.05e-05, 1.4e-09, 1.83e-11, 3.58e-06, 0.0),
        "separable": (8.32e-05, 4.65e-10, 1.68e-06),
    },
    "avx512-full-width": {
        "direct": (4.95e-06, 9.03e-06, 1.9e-11, 7.97e-12, 1.37e-08, 7.27e-11, 4.78e-10),
        "im2col": (8.33e-06, 5.01e-10, 8.96e-12, 0.0, 5.09e-11),
        "fft": (2.78e-05, 5.4e-11, 8.1e-10, 2.86e-09, 7.04e-11),
        "winograd": (1.23e-05, 1.69e-09, 4.46e-12, 0.0, 1.22e-09),
        "separable": (5.55e-05, 3.42e-10, 1.44e-06),
    },
    "avx2": {
        "direct": (8.56e-06, 9.17e-06, 2.3e-11, 1.77e-11, 2.98e-08, 4.91e-11, 4.28e-10),
        "im2col": (1.38e-05, 6.14e-10, 1.27e-11, 2.28e-06, 2.12e-10),
        "fft": (4.87e-05, 5.76e-11, 9.02e-10, 3.41e-09, 9.47e-11),
        "winograd": (4.04e-05, 1.11e-09, 1.73e-11, 0, 1.98e-09),
        "separable": (0.000107, 4.2e-10, 2.03e-06),
    },
}


def shipped_set_name(isa: str | None = None, full_width: bool | None = None) -> str:
    """Which shipped set prices a CPU of vector instruction set ``isa`` (default: the target's;
    ``$FASTCONV_COST_MODEL`` overrides it, for tests and for comparing the sets).  An AVX-512 CPU
    gets the set of its kind of multiply-add unit (``full_width``; default: measured once,
    ``fastconv._fma_width``).  Narrower vector units are priced with the AVX2 set: closer to them
    than AVX-512's per-flop rates (an ARM NEON core has 16-byte vectors; `calibrate` fits the exact
    machine)."""
    override = os.environ.get("FASTCONV_COST_MODEL")
    if override:
        if override not in SHIPPED_COEFFICIENTS:
            raise ValueError(f"FASTCONV_COST_MODEL must be one of {tuple(SHIPPED_COEFFICIENTS)}, "
                             f"got {override!r}")
        return override
    isa = target_cpu().isa if isa is None else isa
    if isa != "avx512":
        return "avx2"
    if full_width is None:
        from .._fma_width import full_width_fma

        full_width = full_width_fma()
    return "avx512-full-width" if full_width else "avx512"


def _merged(base: dict, coefficients: dict | None) -> dict:
    """``base`` with every well-formed entry of ``coefficients`` (right backend, right count)."""
    merged = dict(base)
    for name, values in (coefficients or {}).items():
        if name in FEATURE_NAMES and len(values) == len(FEATURE_NAMES[name]):
            merged[name] = tuple(float(v) for v in values)
    return merged


class CostModel:
    """Coefficients per backend, from the shipped set of this CPU's ISA, refined by this machine's
    calibration file (read on first use) or by :meth:`set_coefficients`."""

    def __init__(self, shipped_set: str | None = None):
        self._lock = threading.RLock()
        self._forgetters: list = []
        self._select(shipped_set)

    def _select(self, shipped_set: str | None) -> None:
        # chosen on first use, not at import: telling AVX-512 hardware apart takes a measurement
        self._shipped_set = shipped_set
        self._coefficients: dict | None = None  # None: the calibration file not looked at yet
        self.calibrated = False

    @property
    def shipped_set(self) -> str:
        if self._shipped_set is None:
            with self._lock:
                if self._shipped_set is None:
                    self._shipped_set = shipped_set_name()
        return self._shipped_set

    @property
    def shipped(self) -> dict:
        return {name: tuple(values) for name, values in
                SHIPPED_COEFFICIENTS[self.shipped_set].items()}

    @property
    def coefficients(self) -> dict:
        coefficients = self._coefficients
        if coefficients is None:
            with self._lock:
                if self._coefficients is None:
                    stored = load_calibration()
                    self.calibrated = bool(stored)
                    self._coefficients = _merged(self.shipped, stored)
                coefficients = self._coefficients
        return coefficients

    def set_coefficients(self, coefficients: dict | None) -> None:
        """Use fitted coefficients (``None``: the shipped set, not the calibration file)."""
        with self._lock:
            self._coefficients = _merged(self.shipped, coefficients)
            self.calibrated = coefficients is not None
        self.reset()

    def use_shipped_set(self, shipped_set: str | None) -> None:
        """Price with another ISA's shipped set (``None``: this CPU's again); for tests and for
        comparing the sets.  The calibration file is looked at again on the next prediction."""
        with self._lock:
            self._select(shipped_set)
        self.reset()

    def predict(self, name: str, features) -> float:
        return float(sum(c * f for c, f in zip(self.coefficients[name], features)))

    def fixed_and_work(self, name: str, features) -> tuple[float, float]:
        """A prediction split into the fixed cost of a call (the ``call`` feature, always first)
        and the part that grows with the problem."""
        coefficients = self.coefficients[name]
        fixed = coefficients[0] * features[0]
        return fixed, float(sum(c * f for c, f in zip(coefficients[1:], features[1:])))

    def on_change(self, forget) -> None:
        """Call ``forget()`` whenever the coefficients change: for memos of decisions."""
        self._forgetters.append(forget)

    def reset(self) -> None:
        """Clear every memoised decision (they were made with the old coefficients)."""
        for forget in self._forgetters:
            forget()


MODEL = CostModel()


def cost_features(name: str, params, threads: int) -> tuple[float, ...]:
    """The cost features of backend ``name``'s path on ``params`` (zero-padding form)."""
    if name not in BACKENDS:
        raise ValueError(f"no cost model for algorithm {name!r}")
    return BACKENDS[name].cost_features(params, threads)


def estimate_seconds(name: str, params, threads: int | None = None) -> float:
    """Predicted wall time of backend ``name`` on ``params`` (zero-padding form)."""
    threads = get_num_threads() if threads is None else threads
    return MODEL.predict(name, cost_features(name, params, threads))


def set_cost_coefficients(coefficients: dict | None) -> None:
    """Use fitted coefficients (``None`` restores the shipped set); clears every memoised plan."""
    MODEL.set_coefficients(coefficients)


def on_model_change(forget) -> None:
    """Call ``forget()`` whenever the cost model changes (memos of decisions kept elsewhere)."""
    MODEL.on_change(forget)
