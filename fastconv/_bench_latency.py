"""``python -m fastconv bench --suite latency``: small problems, where the fixed cost of a call
decides — single images from 16² to 256² through ``correlate2d`` and ``conv2d``, and ResNet-18's
convolution layers at batch 1 — against OpenCV, scipy and PyTorch on the same data.

A call of a few microseconds is below the resolution of one ``perf_counter`` pair on a busy machine,
so each sample times a loop of calls (``sample_time`` seconds in all) and the table reports the median of
the samples divided by the loop length.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from .benchmark import Case, Problem, _optional, aligned_table, forward_problem

IMAGE_SIZES = (16, 32, 64, 96, 128, 256)
QUICK_IMAGE_SIZES = (32, 96, 256)

# ResNet-18's convolution layers at batch 1 (torchvision's resnet18: the stem, the 3x3 layers of
# each stage, the stride-2 3x3 layers and the 1x1 downsampling shortcuts).
RESNET18_BATCH1 = [
    Case("conv1 7x7 s2 3->64 224", (1, 3, 224, 224), (64, 3, 7, 7), {"stride": 2, "padding": 3}),
    Case("layer1 3x3 64->64 56", (1, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}),
    Case("layer2 3x3 s2 64->128 56", (1, 64, 56, 56), (128, 64, 3, 3), {"stride": 2, "padding": 1}),
    Case("layer2 3x3 128->128 28", (1, 128, 28, 28), (128, 128, 3, 3), {"padding": 1}),
    Case("layer2 1x1 s2 64->128 56", (1, 64, 56, 56), (128, 64, 1, 1), {"stride": 2}),
    Case("layer3 3x3 s2 128->256 28", (1, 128, 28, 28), (256, 128, 3, 3), {"stride": 2, "padding": 1}),
    Case("layer3 3x3 256->256 14", (1, 256, 14, 14), (256, 256, 3, 3), {"padding": 1}),
    Case("layer3 1x1 s2 128->256 28", (1, 128, 28, 28), (256, 128, 1, 1), {"stride": 2}),
    Case("layer4 3x3 s2 256->512 14", (1, 256, 14, 14), (512, 256, 3, 3), {"stride": 2, "padding": 1}),
    Case("layer4 3x3 512->512 7", (1, 512, 7, 7), (512, 512, 3, 3), {"padding": 1}),
    Case("layer4 1x1 s2 256->512 14", (1, 256, 14, 14), (512, 256, 1, 1), {"stride": 2}),
    Case("64->64 3x3 14 (issue 12)", (1, 64, 14, 14), (64, 64, 3, 3), {"padding": 1}),
]
QUICK_LAYERS = (1, 6, 9, 11)


def loop_seconds(fn, min_time: float = 0.2, sample_time: float = 2e-4) -> float:
    """Median seconds per call of ``fn``, timed in loops of calls that each last ``sample_time``."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(sample_time / once))
    samples = []
    began = time.perf_counter()
    while len(samples) < 5 or (time.perf_counter() - began < min_time and len(samples) < 200):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def _torch_single_image(image, kernel):
    torch = _optional("torch")
    if torch is None:
        return {}
    timage = torch.from_numpy(image)[None, None]
    tkernel = torch.from_numpy(kernel)[None, None]

    def run_torch():
        with torch.no_grad():
            return torch.nn.functional.conv2d(timage, tkernel)[0, 0].numpy()

    return {"torch": run_torch}


def correlate2d_problem(size: int, kernel_size: int, dtype: str) -> Problem:
    import scipy.signal

    from .signal import correlate2d

    rng = np.random.default_rng(size * 100 + kernel_size)
    image = rng.standard_normal((size, size)).astype(dtype)
    kernel = rng.standard_normal((kernel_size, kernel_size)).astype(dtype)
    reference = scipy.signal.correlate2d(image.astype(np.float64), kernel.astype(np.float64),
                                         "valid")
    peers = {"scipy.correlate2d": lambda: scipy.signal.correlate2d(image, kernel, "valid")}
    cv2 = _optional("cv2")
    if cv2 is not None:
        rows, cols = reference.shape

        def run_cv2():
            # anchor (0, 0): output (i, j) sums kernel * image[i:i+R, j:j+S], the valid correlation
            full = cv2.filter2D(image, -1, kernel, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
            return full[:rows, :cols]

        peers["cv2.filter2D"] = run_cv2
    peers.update(_torch_single_image(image, kernel))
    ours = {"auto": lambda: correlate2d(image, kernel, "valid")}
    return Problem("latency", f"correlate2d {size}² k{kernel_size} {dtype}",
                   2.0 * reference.size * kernel_size ** 2, reference, ours, peers, "-",
                   kernel=kernel_size)


def conv2d_problem(size: int, kernel_size: int, dtype: str) -> Problem:
    problem = forward_problem(Case(f"conv2d {size}² k{kernel_size} {dtype}", (1, 1, size, size),
                                   (1, 1, kernel_size, kernel_size), dtype=dtype))
    problem.suite = "latency"
    problem.ours = {"auto": problem.ours["auto"]}
    problem.peers = {name: fn for name, fn in problem.peers.items() if name == "torch"}
    return problem


def layer_problem(case: Case) -> Problem:
    problem = forward_problem(Case(f"ResNet-18 N=1 {case.name}", case.input_shape,
                                   case.weight_shape, case.kwargs))
    problem.suite = "latency"
    problem.ours = {"auto": problem.ours["auto"]}
    return problem


def _grid(quick: bool):
    """(kind, size, kernel size, dtype) of the single-image problems, then the layers."""
    sizes = QUICK_IMAGE_SIZES if quick else IMAGE_SIZES
    kernels = (3,) if quick else (3, 5)
    dtypes = ("float32",) if quick else ("float32", "float64")
    images = [(kind, size, kernel_size, dtype) for dtype in dtypes for kernel_size in kernels
              for size in sizes for kind in ("correlate2d", "conv2d")]
    layers = [RESNET18_BATCH1[i] for i in QUICK_LAYERS] if quick else RESNET18_BATCH1
    return images, layers


def latency_case_names(quick: bool = False) -> list[str]:
    """The problems' names, without building their data (for pytest-benchmark's ids)."""
    images, layers = _grid(quick)
    return ([f"{kind} {size}² k{kernel_size} {dtype}" for kind, size, kernel_size, dtype in images]
            + [f"ResNet-18 N=1 {case.name}" for case in layers])


def latency_problems(quick: bool) -> list[Problem]:
    images, layers = _grid(quick)
    build = {"correlate2d": correlate2d_problem, "conv2d": conv2d_problem}
    problems = [build[kind](size, kernel_size, dtype) for kind, size, kernel_size, dtype in images]
    return problems + [layer_problem(case) for case in layers]


def geomean_ratios(rows, peer: str, prefix: str) -> tuple[float, int] | None:
    """Geometric mean of fastconv auto's time / ``peer``'s over the rows whose case starts with
    ``prefix`` (< 1: fastconv is faster), and how many rows it covers."""
    ratios = [row["times"]["auto"] / row["times"][peer] for row in rows
              if row["case"].startswith(prefix) and peer in row["times"] and "auto" in row["times"]]
    if not ratios:
        return None
    return float(np.exp(np.mean(np.log(ratios)))), len(ratios)


def format_latency(rows) -> str:
    """Times in microseconds, and fastconv's time as a multiple of each peer's (< 1: faster)."""
    peers = sorted({name for row in rows for name in row["times"] if name != "auto"})
    header = ["case", "fastconv µs"] + [f"{peer} µs" for peer in peers] + [
        f"fastconv/{peer}" for peer in peers] + ["auto picks"]
    lines = [header]
    for row in rows:
        times = row["times"]
        auto = times.get("auto")
        cells = [row["case"], f"{auto * 1e6:.1f}" if auto else "-"]
        cells += [f"{times[peer] * 1e6:.1f}" if peer in times else "-" for peer in peers]
        cells += [f"{auto / times[peer]:.2f}" if peer in times and auto else "-" for peer in peers]
        cells.append(row["auto_choice"])
        lines.append(cells)
    summary = []
    for prefix, peer in (("correlate2d", "cv2.filter2D"), ("correlate2d", "torch"),
                         ("conv2d", "torch"), ("ResNet-18", "torch")):
        result = geomean_ratios(rows, peer, prefix)
        if result:
            summary.append(f"{prefix} vs {peer}: geomean fastconv/{peer} = {result[0]:.2f} "
                           f"over {result[1]} cases")
    return "\n".join([aligned_table(lines), ""] + summary)
