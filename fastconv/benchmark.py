"""``python -m fastconv bench``: every algorithm timed side by side with the peers on the same shapes.

Four suites — ``forward`` (conv2d), ``backward`` (conv2d_backward vs PyTorch autograd), ``pool``
(max/avg pooling forward + backward), ``signal`` (correlate2d on single images vs scipy.signal and
OpenCV) — each a list of problems.  A problem holds its data, a float64 reference, and callables for
every fastconv algorithm and every installed peer.

Timing: each callable runs once to warm up (JIT compile, caches) and be checked, then the
callables of a problem are timed in turn, a slice of ``min_time / 5`` seconds each (at least one
run), five rounds in a rotating order, and the median of the slices is reported
(``interleaved_seconds``): on a shared machine whose speed drifts, every implementation meets
the same slow spells, so the ratios hold.  Every peer runs with the
same thread count as fastconv (PyTorch via ``torch.set_num_threads``, OpenCV via
``cv2.setNumThreads``, BLAS via threadpoolctl), so ratios compare like with like.  Each result is
checked against the reference before it is timed: a fast wrong answer is no win.
"""
from __future__ import annotations

import importlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import dispatch
from ._config import get_num_threads, set_num_threads
from ._params import make_conv_params
from ._progress import progress
from .conv import conv2d

SUITES = ("forward", "backward", "pool", "signal")  # "regret" and "latency" run only when asked for


def _optional(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def jit_cache_is_warm() -> bool:
    """Whether Numba's cache already holds the direct backend's kernels (a run compiled them
    before): the one kernel every suite uses stands for all of them.  True when that cannot be told
    (the check reads a Numba internal)."""
    from .backends import _direct_blocked

    try:
        import os

        return os.path.exists(_direct_blocked.one_channel_padding_serial._cache._cache_file._index_path)
    except AttributeError:
        return True


def median_seconds(fn, min_time=0.2, min_repeats=3, max_repeats=200, warm_up=True) -> float:
    if warm_up:
        fn()  # compile, fault in pages
    times = []
    start = time.perf_counter()
    while len(times) < min_repeats or (
        time.perf_counter() - start < min_time and len(times) < max_repeats
    ):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _slice_seconds(fn, min_time) -> float:
    """One slice of ``interleaved_seconds``: ``fn`` was called before, so no warm-up."""
    return median_seconds(fn, min_time, min_repeats=1, warm_up=False)


INTERLEAVED_ROUNDS = 5


def interleaved_seconds(functions: dict, min_time: float, timer: Callable = _slice_seconds,
                        rounds: int = INTERLEAVED_ROUNDS) -> dict:
    """Median seconds per call of each of ``functions`` (name -> callable, each called once
    already), timed in ``rounds`` slices of ``min_time / rounds`` taken in turn, in a rotating
    order: a shared machine's slow spells (other work on the same cores has been seen to double a
    kernel's time for seconds at a stretch) fall on every implementation of a problem alike, so
    the ratios printed side by side hold even when the times move.  ``timer(fn, seconds)`` times
    one slice."""
    names = list(functions)
    slices = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % max(1, len(names))
        for name in names[shift:] + names[:shift]:
            slices[name].append(timer(functions[name], min_time / rounds))
    return {name: statistics.median(values) for name, values in slices.items()}


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


# --- problems ---------------------------------------------------------------------------------
@dataclass
class Case:
    """A conv2d problem: shapes, parameters, dtype; ``separable`` builds a rank-1 weight."""

    name: str
    input_shape: tuple
    weight_shape: tuple
    kwargs: dict = field(default_factory=dict)
    dtype: str = "float32"
    separable: bool = False


@dataclass
class Problem:
    suite: str
    name: str
    flops: float
    reference: object  # float64 array, or a tuple of them
    ours: dict[str, Callable]  # fastconv algorithm name -> callable
    peers: dict[str, Callable]  # peer name -> callable
    auto_choice: str
    kernel: int | None = None  # for the kernel-size plot
    predicted: dict[str, float] = field(default_factory=dict)  # cost-model seconds per algorithm


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


FORWARD_QUICK = [
    Case("image 512x512 k3", (1, 1, 512, 512), (1, 1, 3, 3)),
    Case("image 512x512 k7 separable", (1, 1, 512, 512), (1, 1, 7, 7), separable=True),
    Case("image 512x512 k31", (1, 1, 512, 512), (1, 1, 31, 31)),
    Case("LeNet conv1 N=256", (256, 1, 28, 28), (6, 1, 5, 5), {"padding": 2}),
    Case("ResNet 3x3 N=8 64->64 56x56", (8, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}),
    Case("1x1 N=8 256->64 56x56", (8, 256, 56, 56), (64, 256, 1, 1)),
    Case("depthwise 3x3 N=8 128ch 56x56", (8, 128, 56, 56), (128, 1, 3, 3),
         {"padding": 1, "groups": 128}),
]

FORWARD_FULL = FORWARD_QUICK + [
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

BACKWARD_QUICK = [
    Case("LeNet conv2 N=64", (64, 6, 14, 14), (16, 6, 5, 5)),
    Case("ResNet 3x3 N=8 64->64 56x56", (8, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}),
    Case("depthwise 3x3 N=8 64ch 56x56", (8, 64, 56, 56), (64, 1, 3, 3),
         {"padding": 1, "groups": 64}),
]

BACKWARD_FULL = BACKWARD_QUICK + [
    Case("LeNet conv1 N=256", (256, 1, 28, 28), (6, 1, 5, 5), {"padding": 2}),
    Case("ResNet 3x3 s2 N=8 64->128 56x56", (8, 64, 56, 56), (128, 64, 3, 3),
         {"padding": 1, "stride": 2}),
    Case("1x1 N=8 256->64 56x56", (8, 256, 56, 56), (64, 256, 1, 1)),
    Case("Inception 5x5 N=8 32->64 28x28", (8, 32, 28, 28), (64, 32, 5, 5), {"padding": 2}),
    Case("VGG first N=1 3->64 224x224", (1, 3, 224, 224), (64, 3, 3, 3), {"padding": 1}),
    Case("AlexNet 11x11 s4 N=4 3->64 224x224", (4, 3, 224, 224), (64, 3, 11, 11),
         {"padding": 2, "stride": 4}),
    Case("7x7 N=8 16->16 56x56", (8, 16, 56, 56), (16, 16, 7, 7), {"padding": 3}),
]


def _relative_error(result, reference) -> float:
    results = result if isinstance(result, tuple) else (result,)
    references = reference if isinstance(reference, tuple) else (reference,)
    worst = 0.0
    for got, expected in zip(results, references):
        got = np.asarray(got, dtype=np.float64).reshape(expected.shape)
        worst = max(worst, float(np.max(np.abs(got - expected)) / (np.max(np.abs(expected)) + 1e-30)))
    return worst


def forward_problem(case: Case) -> Problem:
    x, w = make_data(case)
    params, *_ = make_conv_params(x, w, None, **case.kwargs)
    reference = conv2d(x.astype(np.float64), w.astype(np.float64), algorithm="direct", **case.kwargs)
    ours = {}
    for name in dispatch.algorithms():
        if name == "measure":
            continue
        ours[name] = (lambda name=name: conv2d(x, w, algorithm=name, **case.kwargs))
    peers = {}
    torch = _optional("torch")
    if torch is not None:
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)

        def run_torch():
            with torch.no_grad():
                return torch.nn.functional.conv2d(tx, tw, **case.kwargs).numpy()

        peers["torch"] = run_torch
    if case.input_shape[:2] == (1, 1) and case.weight_shape[:2] == (1, 1) and not case.kwargs:
        peers.update(_single_image_peers(x[0, 0], w[0, 0]))
    params_zero = params.explicitly_padded() if params.padding_mode != "zeros" else params
    choice = dispatch.choose_forward(params_zero, x, w, "auto").algorithm
    predicted = {name: dispatch.estimate_seconds(name, params_zero) for name in dispatch.BACKENDS}
    return Problem("forward", case.name, params.flops, reference, ours, peers, choice,
                   predicted=predicted)


def backward_problem(case: Case) -> Problem:
    from .gradients import conv2d_backward

    x, w = make_data(case)
    params, *_ = make_conv_params(x, w, None, **case.kwargs)
    grad_out = np.random.default_rng(1).standard_normal(params.output_shape).astype(x.dtype)
    reference = conv2d_backward(grad_out.astype(np.float64), x.astype(np.float64),
                                w.astype(np.float64), algorithm="direct", **case.kwargs)
    ours = {
        name: (lambda name=name: conv2d_backward(grad_out, x, w, algorithm=name, **case.kwargs))
        for name in ("auto", "direct", "im2col", "fft")
    }
    peers = {}
    torch = _optional("torch")
    if torch is not None:
        tg = torch.from_numpy(grad_out)

        def run_torch():
            tx = torch.from_numpy(x).requires_grad_()
            tw = torch.from_numpy(w).requires_grad_()
            tb = torch.zeros(w.shape[0], dtype=tw.dtype, requires_grad=True)
            torch.nn.functional.conv2d(tx, tw, tb, **case.kwargs).backward(tg)
            return tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()

        peers["torch"] = run_torch
    picks = dispatch.choose_gradients(params, "auto", grad_out, x, w, True, True)
    choice = "/".join(dict.fromkeys(decision.algorithm for decision in picks))
    predicted = {name: dispatch.estimate_seconds(name, params) for name in dispatch.BACKENDS}
    # input and weight gradients: each costs one forward's FLOPs
    return Problem("backward", case.name, 2 * params.flops, reference, ours, peers, choice,
                   predicted=predicted)


def pool_problems(quick: bool) -> list[Problem]:
    from . import pooling

    shape = (16, 64, 56, 56) if quick else (64, 64, 56, 56)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    grad = np.random.default_rng(1).standard_normal(shape[:2] + (shape[2] // 2, shape[3] // 2))
    grad = grad.astype(np.float32)
    problems = []
    torch = _optional("torch")
    for kind in ("max", "avg"):
        forward = getattr(pooling, f"{kind}_pool2d")
        backward = getattr(pooling, f"{kind}_pool2d_backward")

        def ours(forward=forward, backward=backward):
            return forward(x, 2), backward(grad, x, 2)

        def numpy_reshape(kind=kind):
            blocks = x.reshape(shape[0], shape[1], shape[2] // 2, 2, shape[3] // 2, 2)
            if kind == "max":
                pooled = blocks.max(axis=(3, 5))
                # gradient to the first maximum of each window, as PyTorch routes it
                flat = blocks.transpose(0, 1, 2, 4, 3, 5).reshape(pooled.shape + (4,))
                first = flat.argmax(axis=-1)
                routed = np.zeros(flat.shape, np.float32)
                np.put_along_axis(routed, first[..., None], grad[..., None], axis=-1)
                grad_in = routed.reshape(pooled.shape + (2, 2)).transpose(0, 1, 2, 4, 3, 5)
            else:
                pooled = blocks.mean(axis=(3, 5))
                grad_in = np.broadcast_to((grad / 4)[:, :, :, None, :, None], blocks.shape)
            return pooled, grad_in.reshape(shape)

        peers = {"numpy reshape": numpy_reshape}
        if torch is not None:
            tgrad = torch.from_numpy(grad)

            def run_torch(kind=kind):
                tx = torch.from_numpy(x).requires_grad_()
                out = getattr(torch.nn.functional, f"{kind}_pool2d")(tx, 2)
                out.backward(tgrad)
                return out.detach().numpy(), tx.grad.numpy()

            peers["torch"] = run_torch
        reference = tuple(np.asarray(r, dtype=np.float64) for r in numpy_reshape())
        problems.append(Problem("pool", f"{kind} pool 2x2 fwd+bwd {shape}", 0.0, reference,
                                {"auto": ours}, peers, "-"))
    return problems


def _single_image_peers(image, kernel) -> dict[str, Callable]:
    """scipy.signal and OpenCV computing the same valid cross-correlation of one image."""
    import scipy.signal

    peers = {}
    if kernel.shape[0] * kernel.shape[1] <= 15 * 15:  # brute force beyond that takes seconds
        peers["scipy.correlate2d"] = lambda: scipy.signal.correlate2d(image, kernel, "valid")
    flipped = kernel[::-1, ::-1].copy()
    peers["scipy.fftconvolve"] = lambda: scipy.signal.fftconvolve(image, flipped, "valid")
    peers["scipy.oaconvolve"] = lambda: scipy.signal.oaconvolve(image, flipped, "valid")
    cv2 = _optional("cv2")
    if cv2 is not None:
        rows = image.shape[0] - kernel.shape[0] + 1
        cols = image.shape[1] - kernel.shape[1] + 1

        def run_cv2():
            # anchor (0, 0): output (i, j) sums kernel * image[i:i+R, j:j+S], the valid correlation
            full = cv2.filter2D(image, -1, kernel, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
            return full[:rows, :cols]

        peers["cv2.filter2D"] = run_cv2
    return peers


SIGNAL_KERNELS = (3, 5, 7, 9, 11, 15, 21, 31, 45, 63)
SIGNAL_DTYPES = ("float32", "float64")


def signal_problems(quick: bool) -> list[Problem]:
    from .signal import correlate2d

    kernels = (3, 7, 15, 31) if quick else SIGNAL_KERNELS
    dtypes = ("float32",) if quick else SIGNAL_DTYPES
    problems = []
    rng = np.random.default_rng(0)
    for dtype in dtypes:
        image = rng.standard_normal((512, 512)).astype(dtype)
        for size in kernels:
            kernel = rng.standard_normal((size, size)).astype(dtype)
            reference = correlate2d(image.astype(np.float64), kernel.astype(np.float64), "valid",
                                    algorithm="direct")
            ours = {  # default arguments bind this iteration's arrays (the loop rebinds the names)
                name: (lambda name=name, image=image, kernel=kernel:
                       correlate2d(image, kernel, "valid", algorithm=name))
                for name in ("auto", "direct", "fft")
            }
            flops = 2.0 * reference.size * size * size
            choice = _signal_choice(image, kernel)
            problems.append(Problem("signal", f"512x512 k{size} {dtype}", flops, reference, ours,
                                    _single_image_peers(image, kernel), choice, kernel=size))
    return problems


def _signal_choice(image, kernel) -> str:
    """Which backend ``correlate2d(image, kernel, "valid")`` runs with ``algorithm="auto"``."""
    from ._params import make_signal_params

    params = make_signal_params(image.shape, kernel.shape, (0, 0, 0, 0), image.dtype)
    planes = (image[np.newaxis, np.newaxis], kernel[np.newaxis, np.newaxis])
    return dispatch.choose_signal(params, *planes, "auto").algorithm


def build_problems(suite: str, quick: bool) -> list[Problem]:
    if suite == "forward":
        return [forward_problem(c) for c in (FORWARD_QUICK if quick else FORWARD_FULL)]
    if suite == "backward":
        return [backward_problem(c) for c in (BACKWARD_QUICK if quick else BACKWARD_FULL)]
    if suite == "pool":
        return pool_problems(quick)
    if suite == "signal":
        return signal_problems(quick)
    if suite in ("1d", "3d"):  # the N-d signal API (fastconv._bench_nd), run only when asked for
        from . import _bench_nd

        return _bench_nd.problems(suite, quick)
    raise ValueError(f"unknown suite {suite!r}; choose from {SUITES + ('all',)}")


# --- dispatcher regret -----------------------------------------------------------------------
def regret_grid() -> list[Case]:
    """At least 60 conv2d problems spanning the dispatcher's crossovers: single images 64² to 2048²
    with kernels 1 to 63 (square, 1xk, kxk separable and not), and CNN layers with 1 to 512
    channels, batch 1 to 256, strides 1 and 2."""
    cases = []
    for size in (64, 256, 512, 1024, 2048):
        for kernel in (1, 3, 5, 9, 15, 31, 63):
            if kernel * 4 > size and kernel > 3:
                continue
            cases.append(Case(f"image {size}x{size} k{kernel}", (1, 1, size, size), (1, 1, kernel, kernel)))
        for kernel in (7, 21):
            cases.append(Case(f"image {size}x{size} k{kernel} rank-1", (1, 1, size, size),
                              (1, 1, kernel, kernel), separable=True))
            cases.append(Case(f"image {size}x{size} 1x{kernel}", (1, 1, size, size), (1, 1, 1, kernel)))
    layers = [
        ("LeNet c1 N=256", (256, 1, 28, 28), (6, 1, 5, 5), {"padding": 2}),
        ("LeNet c2 N=256", (256, 6, 14, 14), (16, 6, 5, 5), {}),
        ("LeNet c1 N=1", (1, 1, 28, 28), (6, 1, 5, 5), {"padding": 2}),
        ("ResNet 3x3 N=1 64", (1, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}),
        ("ResNet 3x3 N=8 64", (8, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}),
        ("ResNet 3x3 N=8 128", (8, 128, 28, 28), (128, 128, 3, 3), {"padding": 1}),
        ("ResNet 3x3 N=8 256", (8, 256, 14, 14), (256, 256, 3, 3), {"padding": 1}),
        ("ResNet 3x3 N=4 512", (4, 512, 7, 7), (512, 512, 3, 3), {"padding": 1}),
        ("ResNet 3x3 s2 N=8", (8, 64, 56, 56), (128, 64, 3, 3), {"padding": 1, "stride": 2}),
        ("ResNet 1x1 s2 N=8", (8, 64, 56, 56), (128, 64, 1, 1), {"stride": 2}),
        ("1x1 N=8 256->64", (8, 256, 56, 56), (64, 256, 1, 1), {}),
        ("1x1 N=1 512->512", (1, 512, 14, 14), (512, 512, 1, 1), {}),
        ("VGG first N=1", (1, 3, 224, 224), (64, 3, 3, 3), {"padding": 1}),
        ("AlexNet 11x11 s4 N=4", (4, 3, 224, 224), (64, 3, 11, 11), {"padding": 2, "stride": 4}),
        ("Inception 5x5 N=8", (8, 32, 28, 28), (64, 32, 5, 5), {"padding": 2}),
        ("7x7 N=8 16", (8, 16, 56, 56), (16, 16, 7, 7), {"padding": 3}),
        ("7x7 s2 stem N=2", (2, 3, 224, 224), (64, 3, 7, 7), {"padding": 3, "stride": 2}),
        ("depthwise 3x3 N=8 128", (8, 128, 56, 56), (128, 1, 3, 3), {"padding": 1, "groups": 128}),
        ("depthwise 3x3 s2 N=8 64", (8, 64, 56, 56), (64, 1, 3, 3),
         {"padding": 1, "groups": 64, "stride": 2}),
        ("depthwise 5x5 N=4 256", (4, 256, 14, 14), (256, 1, 5, 5), {"padding": 2, "groups": 256}),
        ("grouped 3x3 g=8 N=8", (8, 128, 28, 28), (128, 16, 3, 3), {"padding": 1, "groups": 8}),
        ("dilated 3x3 d=2 N=4", (4, 64, 32, 32), (64, 64, 3, 3), {"padding": 2, "dilation": 2}),
        ("batch 64 3x3 16ch 32x32", (64, 16, 32, 32), (16, 16, 3, 3), {"padding": 1}),
        ("batch 128 3x3 3->32 32x32", (128, 3, 32, 32), (32, 3, 3, 3), {"padding": 1}),
        ("big kernel 15x15 N=2 8ch", (2, 8, 64, 64), (8, 8, 15, 15), {"padding": 7}),
        ("big kernel 31x31 N=1 4ch", (1, 4, 128, 128), (4, 4, 31, 31), {}),
        ("rank-1 blur 9x9 N=4 3ch", (4, 3, 256, 256), (3, 3, 9, 9), {"padding": 4}),
        ("float64 ResNet N=4", (4, 64, 28, 28), (64, 64, 3, 3), {"padding": 1}),
    ]
    for name, x, w, kw in layers:
        separable = "rank-1" in name
        dtype = "float64" if name.startswith("float64") else "float32"
        cases.append(Case(name, x, w, kw, dtype=dtype, separable=separable))
    return cases


REGRET_SKIP_FACTOR = 100.0


def regret_rows(min_time: float) -> list[dict]:
    """Time every eligible backend on every problem of :func:`regret_grid` and auto's choice.

    A backend the cost model predicts to be over ``REGRET_SKIP_FACTOR`` times slower than its best
    prediction is not timed (a 2048² image with a 63x63 direct sum takes seconds per call); with
    that margin it cannot be the fastest unless the model is wrong by two orders of magnitude."""
    rows = []
    for case in progress(regret_grid(), description="regret grid"):
        x, w = make_data(case)
        params, xc, wc, _, _ = make_conv_params(x, w, None, **case.kwargs)
        zero_form = params.explicitly_padded() if params.padding_mode != "zeros" else params
        ranking = dict(dispatch.plan(zero_form).ranking)
        best_predicted = min(ranking.values())
        eligible = {}
        for name, predicted in ranking.items():
            if predicted > REGRET_SKIP_FACTOR * best_predicted:
                continue
            fn = (lambda name=name: conv2d(x, w, algorithm=name, **case.kwargs))
            try:
                fn()
            except ValueError:  # separable on a full-rank weight
                continue
            eligible[name] = fn
        times = interleaved_seconds(eligible, min_time)
        choice = dispatch.choose_forward(zero_form, xc, wc, "auto").algorithm
        fastest = min(times.values())
        rows.append({"case": case.name, "times": times, "auto_choice": choice,
                     "regret": times[choice] / fastest})
    return rows


def format_regret(rows) -> str:
    names = [n for n in dispatch.BACKENDS if any(n in r["times"] for r in rows)]
    header = ["case"] + names + ["auto picks", "fastest", "regret"]
    lines = [header]
    for row in rows:
        times = row["times"]
        fastest = min(times, key=times.get)
        lines.append([row["case"]] + [f"{times[n] * 1e3:.3f}" if n in times else "-" for n in names]
                     + [row["auto_choice"], fastest, f"{row['regret']:.2f}"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
            for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    regrets = np.array([r["regret"] for r in rows])
    text.append("")
    text.append(f"{len(rows)} problems: auto within 1.10x of the fastest on "
                f"{np.mean(regrets <= 1.10):.0%}; geometric-mean regret "
                f"{float(np.exp(np.mean(np.log(regrets)))):.3f}; worst {regrets.max():.2f}")
    return "\n".join(text)


# --- running and reporting --------------------------------------------------------------------
QUICK_SKIP_FACTOR = 20.0


def run_problem(problem: Problem, min_time: float, quick: bool = False,
                timer: Callable = _slice_seconds) -> dict:
    """Check, then time every implementation of ``problem``, interleaved
    (``interleaved_seconds``; ``timer`` times one slice).  In quick mode, a fastconv backend the
    cost model predicts to be over ``QUICK_SKIP_FACTOR`` times slower than auto's pick is not
    timed (the row says so); everything is timed in full mode."""
    row = {"suite": problem.suite, "case": problem.name, "gflop": problem.flops / 1e9,
           "auto_choice": problem.auto_choice, "kernel": problem.kernel, "times": {},
           "skipped": {}}
    fastest_predicted = problem.predicted.get(problem.auto_choice)
    checked = {}
    for name, fn in list(problem.ours.items()) + list(problem.peers.items()):
        predicted = problem.predicted.get(name)
        if quick and fastest_predicted and predicted and predicted > QUICK_SKIP_FACTOR * fastest_predicted:
            row["skipped"][name] = f"predicted > {QUICK_SKIP_FACTOR:g}x slower (--quick)"
            continue
        try:
            result = fn()  # also the warm-up: compiled, pages faulted in
        except ValueError as error:  # e.g. separable on a full-rank kernel
            row["skipped"][name] = str(error).split(";")[0]
            continue
        error = _relative_error(result, problem.reference)
        if error > 1e-3:
            raise AssertionError(f"{problem.name}: {name} disagrees with the reference "
                                 f"(relative error {error:.2e})")
        checked[name] = fn
    row["times"] = interleaved_seconds(checked, min_time, timer)
    return row


def aligned_table(lines) -> str:
    """Rows of cells as text columns: the first left-aligned, the rest right-aligned, a rule under
    the header (``lines[0]``)."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = []
    for index, line in enumerate(lines):
        text.append("  ".join(cell.rjust(width) if i else cell.ljust(width)
                              for i, (cell, width) in enumerate(zip(line, widths))))
        if index == 0:
            text.append("  ".join("-" * width for width in widths))
    return "\n".join(text)


def format_table(rows) -> str:
    ours = [a for a in ("auto",) + tuple(dispatch.BACKENDS)
            if any(a in row["times"] for row in rows)]
    peers = sorted({name for row in rows for name in row["times"] if name not in ours})
    header = ["case", "GFLOP"] + ours + peers + ["auto picks", "auto GFLOP/s"]
    header += [f"vs {p}" for p in peers]
    lines = [header]
    for row in rows:
        times = row["times"]
        cells = [row["case"], f"{row['gflop']:.3f}" if row["gflop"] else "-"]
        for name in ours + peers:
            if name not in times:
                cells.append("-")
            elif row["gflop"]:
                cells.append(f"{times[name] * 1e3:.3f} ({row['gflop'] / times[name]:.0f})")
            else:
                cells.append(f"{times[name] * 1e3:.3f}")
        auto = times.get("auto")
        cells.append(row["auto_choice"])
        cells.append(f"{row['gflop'] / auto:.1f}" if auto and row["gflop"] else "-")
        for peer in peers:
            cells.append(f"{times[peer] / auto:.2f}x" if peer in times and auto else "-")
        lines.append(cells)
    return aligned_table(lines)


def plot_kernel_sweep(rows, path) -> None:
    """Time vs kernel size per algorithm (single 512x512 image): where the crossovers are."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit(
            "--plot needs matplotlib, an optional extra: pip install matplotlib "
            "(or pip install 'fastconv[plot]')"
        ) from None
    sweep = [r for r in rows if r["kernel"] is not None]
    dtypes = sorted({r["case"].split()[-1] for r in sweep})
    figure, axes = plt.subplots(1, len(dtypes), figsize=(6.5 * len(dtypes), 4.5), squeeze=False)
    for axis, dtype in zip(axes[0], dtypes):
        mine = [r for r in sweep if r["case"].endswith(dtype)]
        names = sorted({n for r in mine for n in r["times"]})
        for name in names:
            points = [(r["kernel"], r["times"][name] * 1e3) for r in mine if name in r["times"]]
            style = "-o" if name in ("auto", "direct", "fft", "separable") else "--s"
            axis.plot(*zip(*points), style, label=name, linewidth=2.5 if name == "auto" else 1.2)
        axis.set_yscale("log")
        axis.set_xlabel("kernel size (k x k)")
        axis.set_ylabel("median time (ms)")
        axis.set_title(f"correlate2d valid, 512x512 {dtype}, {get_num_threads()} threads")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(args) -> int:
    if args.suite == "dask":  # a local cluster of its own (fastconv/_bench_dask.py)
        from . import _bench_dask

        return _bench_dask.main(args)
    pinned = pin_threads(args.threads or get_num_threads())
    if args.suite == "regret":
        rows = regret_rows(min_time=0.05 if args.quick else 0.2)
        print(format_regret(rows))
        if args.json:
            import json

            with open(args.json, "w") as handle:
                json.dump({"threads": pinned, "rows": rows}, handle, indent=2)
        return 0
    if args.suite == "latency":
        return _run_latency(args, pinned)
    suites = SUITES if args.suite == "all" else (args.suite,)
    if args.plot and "signal" not in suites:
        suites = suites + ("signal",)  # the plot is the single-image kernel-size sweep
    from ._cpu import what_each_library_runs

    print(f"fastconv bench ({'quick' if args.quick else 'full'}): median times in ms; "
          f"threads pinned: {', '.join(pinned)}")
    print(f"instruction set (--isa {getattr(args, 'isa', 'native')}): {what_each_library_runs()}")
    print("cells: median ms (GFLOP/s); 'vs X' = X's time / fastconv auto's time (> 1 means "
          "fastconv is faster); every result is checked against a float64 reference before it is timed")
    if not jit_cache_is_warm():
        print("first run here: every kernel is compiled for this CPU as it is first used (most of "
              "this run's time; the timings exclude it) and cached for the next runs")
    all_rows = []
    min_time = 0.05 if args.quick else 0.3
    for suite in suites:
        problems = build_problems(suite, args.quick)
        rows = [run_problem(p, min_time, args.quick) for p in progress(problems, description=suite)]
        all_rows += rows
        print(f"\n== {suite} ==")
        print(format_table(rows))
        if suite in ("1d", "3d"):
            from . import _bench_nd

            print("fastconv auto / fastest peer (< 1: fastconv faster):")
            print(_bench_nd.best_peer_ratios(rows))
        not_timed = [f"{r['case']}: {name}" for r in rows for name, why in r["skipped"].items()
                     if "--quick" in why]
        if not_timed:
            print(f"not timed (predicted > {QUICK_SKIP_FACTOR:g}x slower than auto's pick; "
                  f"run without --quick for them): " + "; ".join(not_timed))
    if args.json:
        import json

        with open(args.json, "w") as handle:
            json.dump({"threads": pinned, "rows": all_rows}, handle, indent=2)
        print(f"\nwrote {args.json}")
    if args.plot:
        plot_kernel_sweep(all_rows, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _run_latency(args, pinned) -> int:
    from ._bench_latency import format_latency, latency_problems, loop_seconds
    from ._cpu import what_each_library_runs

    print(f"fastconv bench --suite latency ({'quick' if args.quick else 'full'}): median "
          f"microseconds per call; threads pinned: {', '.join(pinned)}")
    print(f"instruction set (--isa {getattr(args, 'isa', 'native')}): {what_each_library_runs()}")
    problems = latency_problems(args.quick)
    rows = [run_problem(p, 0.05 if args.quick else 0.2, timer=loop_seconds)
            for p in progress(problems, description="latency")]
    print(format_latency(rows))
    if args.json:
        import json

        with open(args.json, "w") as handle:
            json.dump({"threads": pinned, "rows": rows}, handle, indent=2)
    return 0
