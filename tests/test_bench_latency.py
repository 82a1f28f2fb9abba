"""The latency suite's problems compute what their peers compute, and its names and table hold."""
import numpy as np
import pytest

from fastconv import _bench_latency, benchmark


def test_quick_latency_problems_agree_with_their_references():
    pytest.importorskip("torch")
    problems = _bench_latency.latency_problems(quick=True)
    assert [p.name for p in problems] == _bench_latency.latency_case_names(quick=True)
    rows = [benchmark.run_problem(p, 0.0, timer=lambda fn, _: 1e-6 if fn is not None else None)
            for p in problems[:4] + problems[-1:]]  # run_problem checks each result first
    for row in rows:
        assert "auto" in row["times"] and len(row["times"]) >= 2, row
    table = _bench_latency.format_latency(rows)
    assert "fastconv/torch" in table and "geomean" in table


def test_loop_seconds_times_one_call():
    calls = []
    seconds = _bench_latency.loop_seconds(lambda: calls.append(1), min_time=0.0)
    assert 0 < seconds < 1e-3 and len(calls) >= 7


def test_geomean_of_ratios():
    rows = [{"case": "conv2d a", "times": {"auto": 2.0, "torch": 1.0}},
            {"case": "conv2d b", "times": {"auto": 1.0, "torch": 2.0}},
            {"case": "other", "times": {"auto": 9.0, "torch": 1.0}}]
    value, count = _bench_latency.geomean_ratios(rows, "torch", "conv2d")
    assert count == 2 and np.isclose(value, 1.0)
