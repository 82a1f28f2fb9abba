"""``python -m fastconv calibrate``: fit the dispatcher's cost-model coefficients on this machine.

Every backend is timed on a grid of problems (single images and CNN layers, float32 and float64);
for each backend the coefficients of its cost features (see ``dispatch.cost_features``) are fitted by
non-negative least squares on *relative* error (each row divided by its measured time, so a problem
of microseconds counts as much as one ten thousand times longer).  The result is stored in the fastconv cache directory and
used by ``algorithm="auto"`` from the next import on (or at once, in this process).
"""
from __future__ import annotations

import platform
import time

import numpy as np
from scipy.optimize import nnls

from . import dispatch
from ._config import cache_dir, get_num_threads
from ._params import make_conv_params
from ._progress import progress
from ._wisdom import JsonStore
from .backends import BACKENDS

CALIBRATION_FILE = "calibration.json"


def _store() -> JsonStore:
    return JsonStore(cache_dir() / CALIBRATION_FILE, "calibration")


def machine_fingerprint() -> str:
    """Coefficients are valid for one CPU model (thread count is a feature, not part of the key)."""
    try:
        import llvmlite.binding as llvm

        cpu = llvm.get_host_cpu_name()
    except Exception:  # pragma: no cover
        cpu = "unknown"
    return f"{platform.machine()}-{cpu}"


def calibration_grid(quick: bool = False):
    """(input shape, weight shape, kwargs, dtype) problems spanning the regimes of every backend."""
    grid = []
    images = [64, 256] if quick else [64, 128, 256, 512, 1024]
    kernels = [1, 3, 7, 15] if quick else [1, 3, 5, 9, 13, 19, 25, 41]
    for size in images:
        for kernel in kernels:
            if kernel < size:
                grid.append(((1, 1, size, size), (1, 1, kernel, kernel), {}, "float32"))
    layers = [
        ((8, 16, 28, 28), (16, 16, 3, 3), {"padding": 1}),
        ((8, 64, 28, 28), (64, 64, 3, 3), {"padding": 1}),
        ((4, 32, 56, 56), (32, 32, 1, 1), {}),
        ((8, 32, 28, 28), (32, 32, 5, 5), {"padding": 2}),
        ((32, 1, 28, 28), (6, 1, 5, 5), {"padding": 2}),
        ((32, 6, 14, 14), (16, 6, 5, 5), {}),
        ((4, 64, 28, 28), (64, 1, 3, 3), {"padding": 1, "groups": 64}),
        ((4, 16, 56, 56), (32, 16, 3, 3), {"padding": 1, "stride": 2}),
        ((1, 3, 128, 128), (16, 3, 7, 7), {"padding": 3}),
        # 3x3 stride-1 layers (im2col's no-unfold path vs winograd vs direct)
        ((8, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}),
        ((8, 128, 28, 28), (128, 128, 3, 3), {"padding": 1}),
        ((8, 256, 14, 14), (256, 256, 3, 3), {"padding": 1}),
        ((1, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}),
        ((4, 32, 32, 32), (32, 32, 3, 3), {"padding": 1}),
        ((16, 16, 16, 16), (32, 16, 3, 3), {"padding": 1}),
        ((1, 3, 224, 224), (64, 3, 3, 3), {"padding": 1}),
        ((8, 64, 56, 56), (128, 64, 3, 3), {"padding": 1, "stride": 2}),
        ((4, 3, 224, 224), (64, 3, 11, 11), {"padding": 2, "stride": 4}),
        ((8, 256, 28, 28), (64, 256, 1, 1), {}),
        # strided depthwise layers: the one-accumulator kernel on phase planes
        ((4, 64, 56, 56), (64, 1, 3, 3), {"padding": 1, "stride": 2, "groups": 64}),
        ((2, 32, 64, 64), (32, 1, 5, 5), {"padding": 2, "stride": 2, "groups": 32}),
    ]
    if quick:
        layers = layers[::2]
    grid += [(x, w, kw, "float32") for x, w, kw in layers]
    grid += [(x, w, kw, "float64") for x, w, kw in layers[:3]]
    return grid


def _time(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(grid, repeats: int = 3, budget_seconds: float = 1.0):
    """Rows of (backend, params, seconds).  Backends predicted to take > budget are skipped."""
    rng = np.random.default_rng(0)
    rows = []
    for input_shape, weight_shape, kwargs, dtype in progress(grid, description="calibrating"):
        x = rng.standard_normal(input_shape).astype(dtype)
        w = rng.standard_normal(weight_shape).astype(dtype)
        params, x, w, _, _ = make_conv_params(x, w, None, **kwargs)
        for name, backend in BACKENDS.items():
            if backend.supports(params) is not None:
                continue
            if dispatch.estimate_seconds(name, params) > budget_seconds:
                continue
            if name == "separable":
                # time the separable kernel on a rank-1 weight of the same shape
                kernel = w[..., :, :1] * w[..., :1, :]
                rows.append((name, params, _time(lambda: backend.forward(x, kernel, None, params),
                                                  repeats)))
            else:
                rows.append((name, params, _time(lambda: backend.forward(x, w, None, params),
                                                  repeats)))
    return rows


def fit(rows, threads: int) -> dict:
    """Per backend, non-negative coefficients minimising the relative prediction error."""
    coefficients = {}
    for name in BACKENDS:
        mine = [(params, seconds) for backend, params, seconds in rows if backend == name]
        if len(mine) < len(dispatch.FEATURE_NAMES[name]) + 1:
            continue
        design = np.array([dispatch.cost_features(name, p, threads) for p, _ in mine])
        seconds = np.array([s for _, s in mine])
        # a feature that is zero on every timed problem (a kernel the grid never reaches) cannot be
        # fitted: it keeps the shipped default, and the fit uses the other columns with that term
        # subtracted
        identifiable = np.any(design != 0, axis=0)
        defaults = np.array(dispatch.DEFAULT_COEFFICIENTS[name], dtype=float)
        fixed = design[:, ~identifiable] @ defaults[~identifiable]
        solution, _ = nnls(design[:, identifiable] / seconds[:, None], 1.0 - fixed / seconds)
        if np.all(solution == 0):
            continue
        full = defaults.copy()
        full[identifiable] = solution
        coefficients[name] = [float(c) for c in full]
    return coefficients


def calibrate(quick: bool = False, repeats: int = 3) -> dict:
    """Measure, fit, store and activate cost-model coefficients; return the stored record."""
    threads = get_num_threads()
    rows = measure(calibration_grid(quick), repeats=repeats)
    coefficients = fit(rows, threads)
    predicted = np.array([dispatch.estimate_seconds(n, p, threads) for n, p, _ in rows])
    record = {
        "machine": machine_fingerprint(),
        "threads": threads,
        "coefficients": coefficients,
        "samples": len(rows),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    dispatch.set_cost_coefficients(coefficients)
    fitted = np.array([dispatch.estimate_seconds(n, p, threads) for n, p, _ in rows])
    measured = np.array([s for _, _, s in rows])
    record["median_relative_error_before"] = float(np.median(np.abs(predicted / measured - 1)))
    record["median_relative_error_after"] = float(np.median(np.abs(fitted / measured - 1)))
    _store().replace_all({"model": record})
    return record


def load_calibration() -> dict | None:
    """The stored coefficients if they were fitted on this CPU model, else None."""
    record = _store().get("model")
    if not isinstance(record, dict) or record.get("machine") != machine_fingerprint():
        return None
    coefficients = record.get("coefficients")
    return coefficients if isinstance(coefficients, dict) else None


def main(args) -> int:
    record = calibrate(quick=args.quick)
    print(f"calibrated {len(record['coefficients'])} backends on {record['samples']} timings "
          f"({record['machine']}, {record['threads']} threads)")
    print(f"median relative prediction error: {record['median_relative_error_before']:.0%} with "
          f"the shipped defaults -> {record['median_relative_error_after']:.0%} fitted")
    print(f"stored in {cache_dir() / CALIBRATION_FILE}")
    return 0
