"""Repository-level pytest configuration: ``pytest --benchmark`` runs the benchmark suite.

* ``pytest`` runs the correctness tests in ``tests/`` (benchmarks off).
* ``pytest --benchmark`` runs the pytest-benchmark suite in ``bench/`` and prints one table per group;
  each group compares every algorithm (and the installed peers) on one shape.  pytest-benchmark's own
  options (``--benchmark-json``, ``--benchmark-compare``, ``--benchmark-histogram``, ...) still apply.
"""
from pathlib import Path

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--benchmark", action="store_true", default=False,
        help="run the benchmark suite in bench/ instead of the tests (grouped comparison tables)",
    )


def pytest_configure(config):
    running_benchmarks = config.getoption("--benchmark")
    if config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        # No paths named: `pytest` collects tests/, `pytest --benchmark` collects bench/.
        wanted = "bench" if running_benchmarks else "tests"
        config.args[:] = [arg for arg in config.args if Path(arg).name == wanted]
    if hasattr(config.option, "benchmark_disable"):
        # pytest-benchmark is installed: time only when asked to
        config.option.benchmark_disable = not running_benchmarks
        if running_benchmarks and not config.option.benchmark_sort:
            config.option.benchmark_sort = "median"
