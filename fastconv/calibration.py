"""``python -m fastconv calibrate``: fit the dispatcher's cost-model coefficients on this machine.

Every backend is timed on a grid of problems (single images and CNN layers, float32 and float64);
for each backend the non-negative coefficients of its cost features (see
``dispatch.cost_features``) are fitted to the log of predicted / measured time (so a problem of
microseconds counts as much as one ten thousand times longer, and over- and under-prediction
alike), with a robust loss against timings another process disturbed.  The result is stored in the fastconv cache directory and
used by ``algorithm="auto"`` from the next import on (or at once, in this process).
"""
from __future__ import annotations

import time

import numpy as np
from scipy.optimize import least_squares, nnls

from . import dispatch
from ._config import cache_dir, get_num_threads
from ._params import make_conv_params
from ._progress import progress
from ._wisdom import CALIBRATION_FILE, calibration_store, machine_fingerprint
from .backends import BACKENDS

def calibration_grid(quick: bool = False):
    """(input shape, weight shape, kwargs, dtype) problems spanning the regimes of every backend."""
    grid = []
    images = [64, 256] if quick else [64, 128, 256, 512, 1024]
    kernels = [1, 3, 7, 15] if quick else [1, 3, 5, 9, 13, 19, 25, 41]
    for size in images:
        for kernel in kernels:
            if kernel < size:
                grid.append(((1, 1, size, size), (1, 1, kernel, kernel), {}, "float32"))
    # the calls people make in loops over tiles and patches: fixed costs dominate them, and the
    # serial path (no thread pool to wake) runs them
    for size in [16, 32] if quick else [16, 24, 32, 48, 96]:
        for kernel in (3, 5):
            grid.append(((1, 1, size, size), (1, 1, kernel, kernel), {}, "float32"))
            if not quick:
                grid.append(((1, 1, size, size), (1, 1, kernel, kernel), {}, "float64"))
    layers = [
        ((1, 4, 8, 8), (8, 4, 3, 3), {"padding": 1}),  # below the serial threshold
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
        # batch-1 layers (ResNet-18 at N=1): thin GEMMs, few tiles per thread
        ((1, 128, 28, 28), (128, 128, 3, 3), {"padding": 1}),
        ((1, 256, 14, 14), (256, 256, 3, 3), {"padding": 1}),
        ((1, 512, 7, 7), (512, 512, 3, 3), {"padding": 1}),
        ((1, 64, 56, 56), (128, 64, 1, 1), {"stride": 2}),
        ((1, 64, 14, 14), (64, 64, 3, 3), {"padding": 1}),
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
            if (backend.supports(params) is not None
                    or dispatch.forward.not_for_auto(name, params) is not None):
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
    """Per backend, non-negative coefficients minimising the prediction error in log space."""
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
        defaults = np.array(dispatch.MODEL.shipped[name], dtype=float)
        fixed = design[:, ~identifiable] @ defaults[~identifiable]
        solution = _fit_log_ratio(design[:, identifiable], seconds, fixed)
        if solution is None:
            continue
        full = defaults.copy()
        full[identifiable] = solution
        coefficients[name] = [float(c) for c in full]
    return coefficients


def _fit_log_ratio(design, seconds, fixed):
    """Non-negative c minimising a robust loss of log(predicted / measured), predicted =
    design @ c + fixed.  Least squares on the *relative* error (predicted / measured - 1) is
    biased low on a shared machine: a timing inflated by another process costs at most 1 when
    under-predicted, but any over-prediction of an undisturbed one costs without bound; the log
    ratio is symmetric, and the soft-L1 loss keeps the few wild timings from steering the fit.
    The relative-error NNLS solution is the starting point; columns are scaled to similar size."""
    relative = design / seconds[:, None]
    start, _ = nnls(relative, 1.0 - fixed / seconds)
    if np.all(start == 0):
        return None
    scale = np.array([np.median(column[column > 0]) for column in relative.T])
    units = relative / scale  # columns of order one; the unknowns become u = c * scale

    def log_ratio(u):
        predicted = units @ u + fixed / seconds
        return np.log(np.maximum(predicted, 1e-12))

    u0 = np.maximum(start * scale, 1e-6 * np.max(start * scale))
    result = least_squares(log_ratio, u0, bounds=(0, np.inf), loss="soft_l1", f_scale=0.3,
                           xtol=1e-12, ftol=1e-12, gtol=1e-12)
    solution = result.x / scale
    solution[solution < 1e-9 * np.max(solution)] = 0.0  # a coefficient the fit drove to its bound
    return solution


def median_rows(runs: list[list]) -> list:
    """One row per (backend, problem) with the median of its times over repeated measurements.

    The shipped sets are fitted to median *times*, not the median of per-run fits: two features
    that always occur together on the grid (a call and its one GEMM call) trade off freely between
    fits, and per-coefficient medians of such pairs can both come from the low side."""
    times: dict = {}
    first: dict = {}
    for rows in runs:
        for name, params, seconds in rows:
            key = (name, params.key, str(params.dtype))
            times.setdefault(key, []).append(seconds)
            first.setdefault(key, (name, params))
    return [(name, params, float(np.median(times[key]))) for key, (name, params) in first.items()]


def coefficient_spread(fits: list[dict]) -> dict:
    """Per backend and coefficient, the largest / smallest non-zero value over separate fits
    (1.0 when they agree): how well the grid pins each coefficient down on this machine."""
    spread = {}
    for name in BACKENDS:
        values = np.array([f[name] for f in fits if name in f])
        if len(values):
            spread[name] = [float(column[column > 0].max() / column[column > 0].min())
                            if np.any(column > 0) else 1.0 for column in values.T]
    return spread


def calibrate(quick: bool = False, repeats: int = 3, fits: int = 1) -> dict:
    """Measure the grid ``fits`` times, fit the median times, store and activate the coefficients;
    return the stored record (with the spread of separate fits and the wall time taken)."""
    start = time.perf_counter()
    threads = get_num_threads()
    dispatch.set_cost_coefficients(None)  # "before" is the shipped set, and budgets use it
    grid = calibration_grid(quick)
    runs = [measure(grid, repeats=repeats) for _ in range(fits)]
    spread = coefficient_spread([fit(rows, threads) for rows in runs]) if fits > 1 else {}
    rows = median_rows(runs)
    coefficients = fit(rows, threads)
    predicted = np.array([dispatch.estimate_seconds(n, p, threads) for n, p, _ in rows])
    record = {
        "machine": machine_fingerprint(),
        "shipped_set": dispatch.MODEL.shipped_set,
        "threads": threads,
        "coefficients": coefficients,
        "fits": fits,
        "spread": spread,
        "samples": len(rows),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    dispatch.set_cost_coefficients(coefficients)
    fitted = np.array([dispatch.estimate_seconds(n, p, threads) for n, p, _ in rows])
    measured = np.array([s for _, _, s in rows])
    record["median_relative_error_before"] = float(np.median(np.abs(predicted / measured - 1)))
    record["median_relative_error_after"] = float(np.median(np.abs(fitted / measured - 1)))
    record["seconds"] = time.perf_counter() - start
    calibration_store().replace_all({"model": record})
    return record


def shipped_literal(record: dict) -> str:
    """The fitted coefficients as the entry of ``dispatch.model.SHIPPED_COEFFICIENTS``."""
    lines = [f'    "{record["shipped_set"]}": {{']
    for name, values in record["coefficients"].items():
        lines.append(f'        "{name}": ({", ".join(f"{v:.3g}" for v in values)}),')
    return "\n".join(lines + ["    },"])


def main(args) -> int:
    record = calibrate(quick=args.quick, fits=args.fits)
    print(f"calibrated {len(record['coefficients'])} backends on {record['samples']} timings "
          f"({record['machine']}, {record['threads']} threads, {record['fits']} fit(s), "
          f"{record['seconds']:.0f} s)")
    print(f"median relative prediction error: {record['median_relative_error_before']:.0%} with "
          f"the shipped {record['shipped_set']} set -> {record['median_relative_error_after']:.0%} "
          "fitted")
    if record["fits"] > 1:
        worst = {name: max(values) for name, values in record["spread"].items()}
        print("largest spread of a coefficient over separate fits (max/min): "
              + ", ".join(f"{name} {value:.2g}" for name, value in worst.items()))
    if args.print_shipped:
        print(shipped_literal(record))
    print(f"stored in {cache_dir() / CALIBRATION_FILE}")
    return 0
