"""The N-d benchmark suites (``bench --suite 1d|3d``) build problems whose every contender computes
the reference: checked on shrunk sizes (the suites' own sizes take seconds per call)."""
import numpy as np
import pytest

from fastconv import _bench_nd


def _results_match(problem):
    reference = problem.reference if isinstance(problem.reference, tuple) else (problem.reference,)
    for name, run in {**problem.ours, **problem.peers}.items():
        got = run()
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(reference), name
        for part, expected in zip(got, reference):
            scale = np.abs(expected).max()
            np.testing.assert_allclose(part, expected, rtol=0, atol=1e-4 * scale, err_msg=name)


def test_3d_suite_problems_compute_the_reference(monkeypatch):
    pytest.importorskip("scipy")
    monkeypatch.setattr(_bench_nd, "VOLUME_SIDE", 12)
    monkeypatch.setattr(_bench_nd, "CONV3D_LAYERS", (
        ("tiny k3", (2, 3, 6, 7, 5), (4, 3, 3, 3, 3), 1, 1),
        ("tiny k5", (1, 1, 8, 8, 8), (5, 1, 5, 5, 5), 2, 1),
        ("tiny k3 s2", (2, 3, 7, 6, 9), (4, 3, 3, 3, 3), 1, 2)))
    problems = _bench_nd.problems("3d", quick=False)
    names = [problem.name for problem in problems]
    assert sum(name.startswith("conv3d") for name in names) == 6  # three layers, fwd and bwd
    for problem in problems:
        _results_match(problem)


def test_1d_suite_problems_compute_the_reference(monkeypatch):
    monkeypatch.setattr(_bench_nd, "SIGNAL_LENGTH", 500)
    monkeypatch.setattr(_bench_nd, "KERNELS_1D", (3, 40))
    problems = _bench_nd.problems("1d", quick=True)
    assert [problem.name for problem in problems] == ["1e6 x 3 float32", "1e6 x 40 float32"]
    for problem in problems:
        _results_match(problem)
