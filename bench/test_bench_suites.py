"""pytest-benchmark suites: one table per problem comparing every fastconv algorithm, ``auto`` and
the installed peers (PyTorch, OpenCV, scipy.signal, a NumPy reference).

Run with ``pytest --benchmark`` (see the repository's conftest.py).  The problems are the ones
``python -m fastconv bench`` runs (fastconv/benchmark.py), built lazily and once per session.  Each
implementation's result is checked against the problem's float64 reference before it is timed.
"""
import functools

import pytest

from fastconv import _bench_latency
from fastconv import benchmark as fastconv_bench

SUITE_CASES = {  # ids only; the data is built lazily
    "forward": [c.name for c in fastconv_bench.FORWARD_FULL],
    "backward": [c.name for c in fastconv_bench.BACKWARD_FULL],
    "pool": ["max 2x2", "avg 2x2"],
    "signal": [f"512x512 k{k} {dtype}" for dtype in fastconv_bench.SIGNAL_DTYPES
               for k in fastconv_bench.SIGNAL_KERNELS],
    "latency": _bench_latency.latency_case_names(),
}
IMPLEMENTATIONS = [
    "auto", "direct", "im2col", "fft", "separable",
    "torch", "cv2.filter2D", "scipy.correlate2d", "scipy.fftconvolve", "scipy.oaconvolve",
    "numpy reshape",
]


@functools.lru_cache(maxsize=None)
def problems(suite):
    if suite == "latency":  # built by its own module, as `python -m fastconv bench --suite latency`
        return _bench_latency.latency_problems(quick=False)
    return fastconv_bench.build_problems(suite, quick=False)


@functools.lru_cache(maxsize=None)
def checked(suite, index, name):
    """Run once and compare with the reference (cached: once per problem and implementation)."""
    problem = problems(suite)[index]
    fn = problem.ours.get(name) or problem.peers.get(name)
    if fn is None:
        return None, "not installed or not applicable to this problem"
    try:
        result = fn()
    except ValueError as error:  # e.g. separable on a full-rank kernel
        return None, str(error).split(";")[0]
    error = fastconv_bench._relative_error(result, problem.reference)
    assert error <= 1e-3, f"{name} is wrong on {problem.name}: relative error {error:.2e}"
    return fn, None


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "suite,index",
    [(suite, index) for suite, names in SUITE_CASES.items() for index in range(len(names))],
    ids=[f"{suite}: {name}".replace(" ", "_") for suite, names in SUITE_CASES.items()
         for name in names],
)
def test_bench(benchmark, suite, index, name):
    problem = problems(suite)[index]
    fn, why_not = checked(suite, index, name)
    if fn is None:
        pytest.skip(f"{name}: {why_not}")
    benchmark.group = f"{suite}: {problem.name} (auto picks {problem.auto_choice})"
    benchmark.name = name
    benchmark(fn)
