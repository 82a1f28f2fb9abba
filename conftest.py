"""Repository-level pytest configuration: ``pytest --benchmark`` runs the benchmark suite.

* ``pytest`` runs the correctness tests in ``tests/`` (benchmarks off).
* ``pytest --benchmark`` runs the pytest-benchmark suite in ``bench/`` and prints one table per group;
  each group compares every algorithm (and the installed peers) on one shape.  pytest-benchmark's own
  options (``--benchmark-json``, ``--benchmark-compare``, ``--benchmark-histogram``, ...) still apply.
"""
from pathlib import Path

ROOT = Path(__file__).parent


def pytest_addoption(parser):
    parser.addoption(
        "--benchmark", action="store_true", default=False,
        help="run the benchmark suite in bench/ instead of the tests (grouped comparison tables)",
    )


def pytest_configure(config):
    running_benchmarks = config.getoption("--benchmark")
    if hasattr(config.option, "benchmark_disable"):
        # pytest-benchmark is installed: time only when asked to
        config.option.benchmark_disable = not running_benchmarks
        if running_benchmarks and not config.option.benchmark_sort:
            config.option.benchmark_sort = "median"


def pytest_ignore_collect(collection_path, config):
    """Without explicit paths, ``pytest`` collects tests/ and ``pytest --benchmark`` collects bench/."""
    if config.args != [str(ROOT / p) for p in config.getini("testpaths")] and config.args != [str(ROOT)]:
        return None  # the user named what to collect
    benchmarking = config.getoption("--benchmark")
    path = Path(collection_path)
    if benchmarking and path == ROOT / "tests":
        return True
    if not benchmarking and path == ROOT / "bench":
        return True
    return None
