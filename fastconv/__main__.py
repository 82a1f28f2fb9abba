"""Command line: ``python -m fastconv bench|calibrate|info|train``."""
from __future__ import annotations

import argparse
import sys


def _add_bench_parser(subparsers):
    bench = subparsers.add_parser("bench", help="time every algorithm and the installed peers")
    bench.add_argument("--quick", action="store_true", help="a few shapes per suite, under a minute")
    bench.add_argument("--threads", type=int, default=None,
                       help="threads for fastconv and every peer (default: Numba's default)")
    bench.add_argument("--suite", default="all", choices=("forward", "backward", "pool", "signal", "all", "regret", "dask"),
                       help="which benchmarks to run (default: all; 'regret' times every backend "
                            "on 60+ shapes to score the dispatcher; 'dask' fastconv.dask on a "
                            "local cluster, not part of 'all')")
    bench.add_argument("--isa", default="native", choices=("native", "avx2"),
                       help="run every library restricted to this instruction set (on an AVX-512 "
                            "host, 'avx2' measures what AVX2 machines get: Numba, PyTorch/oneDNN "
                            "and OpenBLAS alike, in a child process)")
    bench.add_argument("--json", metavar="FILE", help="also write the raw timings as JSON")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="write time vs kernel size per algorithm (needs matplotlib)")


def _add_calibrate_parser(subparsers):
    calibrate = subparsers.add_parser(
        "calibrate", help="fit the dispatcher's cost model to this machine (stored in the cache dir)"
    )
    calibrate.add_argument("--quick", action="store_true", help="a smaller grid (about a minute)")


def _run_calibrate(args) -> int:
    from . import calibration

    return calibration.main(args)


def _run_bench(args) -> int:
    import os
    import subprocess

    from ._cpu import restricted_environment

    restriction = restricted_environment(args.isa)
    if any(os.environ.get(name) != value for name, value in restriction.items()):
        # the target ISA is fixed when Numba, PyTorch and OpenBLAS load: rerun in a child process
        command = [sys.executable, "-m", "fastconv"] + sys.argv[1:] if sys.argv[0].endswith(
            "__main__.py") else [sys.executable, "-m", "fastconv", "bench"] + _bench_argv(args)
        return subprocess.call(command, env=dict(os.environ, **restriction))
    from . import benchmark

    return benchmark.main(args)


def _bench_argv(args) -> list:
    """``args`` back as command-line options (for a child process started from ``main(argv)``)."""
    argv = ["--suite", args.suite, "--isa", args.isa]
    if args.quick:
        argv.append("--quick")
    for option in ("threads", "json", "plot"):
        if getattr(args, option) is not None:
            argv += [f"--{option}", str(getattr(args, option))]
    return argv


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


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"bench": _run_bench, "calibrate": _run_calibrate, "info": _run_info,
                "train": _run_train}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError) as error:  # bad options, missing data: say it plainly
        parser.exit(2, f"python -m fastconv {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
