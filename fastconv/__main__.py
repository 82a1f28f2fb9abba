"""Command line: ``python -m fastconv bench|calibrate|info|train``."""
from __future__ import annotations

import argparse
import sys


def _add_bench_parser(subparsers):
    bench = subparsers.add_parser("bench", help="time every algorithm and the installed peers")
    bench.add_argument("--quick", action="store_true", help="a few shapes per suite, under a minute")
    bench.add_argument("--threads", type=int, default=None,
                       help="threads for fastconv and every peer (default: Numba's default)")
    bench.add_argument("--suite", default="all",
                       choices=("forward", "backward", "pool", "signal", "all", "regret", "latency",
                                "1d", "3d", "dask"),
                       help="which benchmarks to run (default: all; 'regret' times every backend "
                            "on 60+ shapes to score the dispatcher; 'latency' times small calls "
                            "against OpenCV, scipy and PyTorch; '1d' and '3d' the N-d signal "
                            "API against scipy.signal and NumPy; 'dask' fastconv.dask on a local "
                            "cluster; none of these is part of 'all')")
    _add_isa_option(bench, "run every benchmark")
    bench.add_argument("--json", metavar="FILE", help="also write the raw timings as JSON")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="write time vs kernel size per algorithm (needs matplotlib)")


def _add_calibrate_parser(subparsers):
    calibrate = subparsers.add_parser(
        "calibrate", help="fit the dispatcher's cost model to this machine (stored in the cache dir)"
    )
    calibrate.add_argument("--quick", action="store_true", help="a smaller grid (about a minute)")
    calibrate.add_argument("--fits", type=int, default=1,
                           help="measure the grid this many times and fit the median times "
                                "(how the shipped sets are made)")
    calibrate.add_argument("--print-shipped", action="store_true",
                           help="print the result as an entry of SHIPPED_COEFFICIENTS")
    _add_isa_option(calibrate, "fit the model")


def _add_isa_option(parser, what):
    parser.add_argument("--isa", default="native", choices=("native", "avx2"),
                        help=f"{what} with every library restricted to this instruction set (on an "
                             "AVX-512 host, 'avx2' measures what AVX2 machines get: Numba, "
                             "PyTorch/oneDNN and OpenBLAS alike, in a child process)")


def _rerun_restricted(isa: str) -> int | None:
    """The exit code of this command rerun in a child process restricted to ``isa``, or None when
    this process already runs it (the target ISA is fixed when Numba, PyTorch and OpenBLAS load)."""
    import os
    import subprocess

    from ._cpu import restricted_environment

    restriction = restricted_environment(isa)
    if all(os.environ.get(name) == value for name, value in restriction.items()):
        return None
    return subprocess.call([sys.executable, "-m", "fastconv"] + _current_argv,
                           env=dict(os.environ, **restriction))


def _run_calibrate(args) -> int:
    restricted = _rerun_restricted(args.isa)
    if restricted is not None:
        return restricted
    from . import calibration

    return calibration.main(args)


def _run_bench(args) -> int:
    restricted = _rerun_restricted(args.isa)
    if restricted is not None:
        return restricted
    from . import benchmark

    return benchmark.main(args)


def _run_info(args) -> int:
    from . import info

    print(info.report())
    return 0


def _run_train(args) -> int:
    from .training import run_train

    run_train(args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastconv", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_bench_parser(subparsers)
    _add_calibrate_parser(subparsers)
    subparsers.add_parser("info", help="versions, threads, CPU, cache locations, GEMM rate")
    from .training import add_train_parser

    add_train_parser(subparsers)
    return parser


_current_argv: list = []  # this command's arguments, for a restricted child process to rerun


def main(argv=None) -> int:
    global _current_argv
    parser = build_parser()
    _current_argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(_current_argv)
    handlers = {"bench": _run_bench, "calibrate": _run_calibrate, "info": _run_info,
                "train": _run_train}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError) as error:  # bad options, missing data: say it plainly
        parser.exit(2, f"python -m fastconv {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
