"""``python -m fastconv bench``: every algorithm timed side by side with the peers on the same shapes.

Timing method: each callable is run once to warm up (JIT compile, caches), then repeated until
``min_time`` seconds have passed (at least ``min_repeats`` runs), and the median is reported.  Every
peer runs with the same thread count as fastconv (PyTorch via ``torch.set_num_threads``, OpenCV via
``cv2.setNumThreads``, BLAS via threadpoolctl), so ratios compare like with like.  Each algorithm's
result is checked against a float64 reference before it is timed: a fast wrong answer is no win.
"""
from __future__ import annotations

import importlib
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from . import dispatch
from ._config import get_num_threads, set_num_threads
from ._params import make_conv_params
from .conv import conv2d


@dataclass
class Case:
    name: str
    input_shape: tuple
    weight_shape: tuple
    kwargs: dict = field(default_factory=dict)
    dtype: str = "float32"
    separable: bool = False  # build a rank-1 weight


QUICK_CASES = [
    Case("image 512x512 k3", (1, 1, 512, 512), (1, 1, 3, 3)),
    Case("image 512x512 k7 separable", (1, 1, 512, 512), (1, 1, 7, 7), separable=True),
    Case("image 512x512 k31", (1, 1, 512, 512), (1, 1, 31, 31)),
    Case("LeNet conv1 N=256", (256, 1, 28, 28), (6, 1, 5, 5), {"padding": 2}),
    Case("ResNet 3x3 N=8 64->64 56x56", (8, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}),
    Case("1x1 N=8 256->64 56x56", (8, 256, 56, 56), (64, 256, 1, 1)),
    Case("depthwise 3x3 N=8 128ch 56x56", (8, 128, 56, 56), (128, 1, 3, 3),
         {"padding": 1, "groups": 128}),
]

FULL_CASES = QUICK_CASES + [
    Case("image 512x512 k3 float64", (1, 1, 512, 512), (1, 1, 3, 3), dtype="float64"),
    Case("image 512x512 k5", (1, 1, 512, 512), (1, 1, 5, 5)),
    Case("image 512x512 k15", (1, 1, 512, 512), (1, 1, 15, 15)),
    Case("image 1024x1024 k9 separable", (1, 1, 1024, 1024), (1, 1, 9, 9), separable=True),
    Case("LeNet conv2 N=256", (256, 6, 14, 14), (16, 6, 5, 5)),
    Case("ResNet 3x3 s2 N=8 64->128 56x56", (8, 64, 56, 56), (128, 64, 3, 3),
         {"padding": 1, "stride": 2}),
    Case("VGG first N=1 3->64 224x224", (1, 3, 224, 224), (64, 3, 3, 3), {"padding": 1}),
    Case("AlexNet 11x11 s4 N=4 3->64 224x224", (4, 3, 224, 224), (64, 3, 11, 11),
         {"padding": 2, "stride": 4}),
    Case("Inception 5x5 N=8 32->64 28x28", (8, 32, 28, 28), (64, 32, 5, 5), {"padding": 2}),
    Case("7x7 N=8 16->16 56x56", (8, 16, 56, 56), (16, 16, 7, 7), {"padding": 3}),
]


def _optional(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def median_seconds(fn, min_time=0.2, min_repeats=3, max_repeats=200) -> float:
    fn()  # warm-up: compile, fault in pages
    times = []
    start = time.perf_counter()
    while len(times) < min_repeats or (
        time.perf_counter() - start < min_time and len(times) < max_repeats
    ):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_data(case: Case, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(case.dtype)
    x = rng.standard_normal(case.input_shape).astype(dtype)
    if case.separable:
        k, c, r, s = case.weight_shape
        w = rng.standard_normal((k, c, r, 1)) * rng.standard_normal((k, c, 1, s))
    else:
        w = rng.standard_normal(case.weight_shape)
    return x, w.astype(dtype)


def peers_for(case: Case, x, w):
    """Peer implementations that compute the same thing, as name -> zero-arg callable."""
    peers = {}
    torch = _optional("torch")
    if torch is not None:
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        kwargs = case.kwargs

        def run_torch():
            with torch.no_grad():
                return torch.nn.functional.conv2d(tx, tw, **kwargs)

        peers["torch"] = run_torch
    single_plane = case.input_shape[:2] == (1, 1) and case.weight_shape[:2] == (1, 1)
    if single_plane and not case.kwargs:
        import scipy.signal

        plane, kernel = x[0, 0], w[0, 0]
        if kernel.shape[0] <= 15:  # brute force beyond that takes seconds per call
            peers["scipy.correlate2d"] = lambda: scipy.signal.correlate2d(plane, kernel, "valid")
        flipped = kernel[::-1, ::-1].copy()
        peers["scipy.fftconvolve"] = lambda: scipy.signal.fftconvolve(plane, flipped, "valid")
        cv2 = _optional("cv2")
        if cv2 is not None:
            anchor = (0, 0)

            def run_cv2():
                full = cv2.filter2D(plane, -1, kernel, anchor=anchor,
                                    borderType=cv2.BORDER_CONSTANT)
                return full[: plane.shape[0] - kernel.shape[0] + 1,
                            : plane.shape[1] - kernel.shape[1] + 1]

            peers["cv2.filter2D"] = run_cv2
    return peers


def pin_threads(threads: int) -> list[str]:
    """Pin fastconv, BLAS and every installed peer to ``threads``; say what was pinned."""
    set_num_threads(threads)
    pinned = [f"fastconv/numba={threads}", f"BLAS={threads}"]
    torch = _optional("torch")
    if torch is not None:
        torch.set_num_threads(threads)
        pinned.append(f"torch={threads}")
    cv2 = _optional("cv2")
    if cv2 is not None:
        cv2.setNumThreads(threads)
        pinned.append(f"cv2={threads}")
    return pinned


def run_case(case: Case, min_time: float):
    x, w = make_data(case)
    params, *_ = make_conv_params(x, w, None, **case.kwargs)
    reference = conv2d(x.astype(np.float64), w.astype(np.float64), algorithm="direct", **case.kwargs)
    scale = np.max(np.abs(reference)) + 1e-30
    row = {"case": case.name, "gflop": params.flops / 1e9, "times": {}, "errors": {}}
    chosen = dispatch.choose_forward(params, x, w, "auto").algorithm
    row["auto_choice"] = chosen
    for name in dispatch.algorithms():
        try:
            result = conv2d(x, w, algorithm=name, **case.kwargs)
        except ValueError as error:  # e.g. separable on a full-rank kernel
            row["errors"][name] = str(error).split(":")[0]
            continue
        relative_error = float(np.max(np.abs(result - reference)) / scale)
        tolerance = 1e-4 if case.dtype == "float32" else 1e-10
        if relative_error > tolerance:
            raise AssertionError(f"{case.name}: {name} is wrong (relative error {relative_error:.2e})")
        row["times"][name] = median_seconds(
            lambda name=name: conv2d(x, w, algorithm=name, **case.kwargs), min_time
        )
    for peer, fn in peers_for(case, x, w).items():
        result = np.asarray(fn())
        relative_error = float(np.max(np.abs(result.reshape(reference.shape) - reference)) / scale)
        if relative_error > 1e-3:
            raise AssertionError(f"{case.name}: peer {peer} disagrees ({relative_error:.2e})")
        row["times"][peer] = median_seconds(fn, min_time)
    return row


def format_table(rows) -> str:
    ours = [a for a in dispatch.algorithms()]
    peers = sorted({name for row in rows for name in row["times"] if name not in ours})
    header = ["case", "GFLOP"] + ours + peers + ["auto picks"] + [f"vs {p}" for p in peers]
    lines = [header]
    for row in rows:
        times = row["times"]
        cells = [row["case"], f"{row['gflop']:.3f}"]
        for name in ours + peers:
            cells.append(f"{times[name] * 1e3:.3f}" if name in times else "-")
        cells.append(row["auto_choice"])
        for peer in peers:
            if peer in times and "auto" in times:
                cells.append(f"{times[peer] / times['auto']:.2f}x")
            else:
                cells.append("-")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = []
    for index, line in enumerate(lines):
        text.append("  ".join(cell.rjust(width) if i else cell.ljust(width)
                              for i, (cell, width) in enumerate(zip(line, widths))))
        if index == 0:
            text.append("  ".join("-" * width for width in widths))
    return "\n".join(text)


def main(args) -> int:
    pinned = pin_threads(args.threads or get_num_threads())
    cases = QUICK_CASES if args.quick else FULL_CASES
    print(f"fastconv bench: conv2d forward, median times in ms; threads pinned: {', '.join(pinned)}")
    print("'vs X' = X's time / fastconv auto's time (> 1 means fastconv is faster)\n")
    rows = []
    for index, case in enumerate(cases, 1):
        print(f"[{index}/{len(cases)}] {case.name}", flush=True)
        rows.append(run_case(case, min_time=0.1 if args.quick else 0.3))
    print()
    print(format_table(rows))
    if args.json:
        import json

        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
        print(f"\nwrote {args.json}")
    return 0
