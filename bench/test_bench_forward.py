"""conv2d forward: one table per shape, every algorithm, ``auto`` and the installed peers.

Run with ``pytest --benchmark``.  Each result is checked against a float64 reference once per
(shape, implementation) before it is timed: a fast wrong answer is no win.
"""
import numpy as np
import pytest

import fastconv
from fastconv import benchmark as fastconv_bench

CASES = fastconv_bench.FULL_CASES
PEERS = ["torch", "cv2.filter2D", "scipy.correlate2d", "scipy.fftconvolve"]
_data = {}


def case_data(case):
    if case.name not in _data:
        x, w = fastconv_bench.make_data(case)
        reference = fastconv.conv2d(x.astype(np.float64), w.astype(np.float64),
                                    algorithm="direct", **case.kwargs)
        _data[case.name] = (x, w, reference)
    return _data[case.name]


def implementation(case, name, x, w):
    if name in fastconv.algorithms():
        def run():
            return fastconv.conv2d(x, w, algorithm=name, **case.kwargs)
        try:
            run()
        except ValueError as error:  # e.g. separable on a full-rank kernel
            pytest.skip(f"{name}: {error}")
        return run
    peers = fastconv_bench.peers_for(case, x, w)
    if name not in peers:
        pytest.skip(f"{name} is not installed or does not compute this problem")
    return peers[name]


@pytest.mark.parametrize("name", list(fastconv.algorithms()) + PEERS)
@pytest.mark.parametrize("case", CASES, ids=[c.name.replace(" ", "_") for c in CASES])
def test_forward(benchmark, case, name):
    x, w, reference = case_data(case)
    run = implementation(case, name, x, w)
    result = np.asarray(run()).reshape(reference.shape)
    scale = np.max(np.abs(reference))
    assert np.max(np.abs(result - reference)) <= 1e-4 * scale, f"{name} is wrong on {case.name}"
    benchmark.group = f"forward {case.name} {case.dtype}"
    benchmark.name = name
    benchmark(run)
