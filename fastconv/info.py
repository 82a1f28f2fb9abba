"""``python -m fastconv info``: what fastconv runs on, and how fast its GEMM can go here."""
from __future__ import annotations

import os
import platform
import time

import numpy as np


def gemm_flops_per_second(size: int = 2048, dtype=np.float32, repeats: int = 3) -> float:
    """Best-of-``repeats`` FLOP/s of a NumPy ``size``² matrix product: the machine's GEMM rate."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def _cpu_features() -> str:
    """The CPU the kernels are compiled for (NUMBA_CPU_NAME/NUMBA_CPU_FEATURES, else the host), its
    vector registers and the register tile that follows."""
    from ._cpu import target_cpu, tile_shape

    cpu = target_cpu()
    wanted = [f for f in ("avx512f", "avx2", "fma", "sse4.2", "neon") if f in cpu.features]
    restricted = " (restricted by NUMBA_CPU_NAME/NUMBA_CPU_FEATURES)" if os.environ.get(
        "NUMBA_CPU_FEATURES") or os.environ.get("NUMBA_CPU_NAME") else ""
    return (f"{cpu.name} ({', '.join(wanted) or 'baseline'}){restricted}; ISA {cpu.isa}: "
            f"{cpu.vector_registers} vector registers of {cpu.vector_bytes} bytes; "
            f"register tile {tile_shape()} (channels x vectors x bytes; FASTCONV_TILE)")


def report() -> str:
    import numba
    import scipy
    from threadpoolctl import threadpool_info

    from . import __version__
    from ._config import cache_dir, get_num_threads, get_workspace_limit
    from .dispatch import MODEL, wisdom_path

    blas = [
        f"{entry.get('internal_api')} {entry.get('version')} ({entry.get('num_threads')} threads, "
        f"{os.path.basename(entry.get('filepath', ''))})"
        for entry in threadpool_info() if entry.get("user_api") == "blas"
    ]
    lines = [
        f"fastconv {__version__}",
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"numba {numba.__version__}",
        f"CPU: {_cpu_features()}, {os.cpu_count()} logical cores",
        f"threads: numba {get_num_threads()} (NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}, "
        f"layer {numba.threading_layer() if _threading_layer_ready() else 'not yet chosen'}; "
        f"TBB runtime {_tbb_library()})",
        "BLAS: " + ("; ".join(blas) if blas else "none found"),
        f"cost model: shipped {MODEL.shipped_set} set (FASTCONV_COST_MODEL)"
        + ("; refined by this machine's calibration" if MODEL.coefficients and MODEL.calibrated
           else ""),
        f"workspace cap: {get_workspace_limit() / 2**20:.0f} MiB (FASTCONV_WORKSPACE_MB)",
        f"JIT cache: {numba.config.CACHE_DIR or 'next to the sources in __pycache__ (NUMBA_CACHE_DIR unset)'}",
        f"fastconv cache dir (calibration): {cache_dir()}",
        f"autotune wisdom file: {wisdom_path()} (FASTCONV_WISDOM)",
        f"float32 GEMM rate (NumPy 2048² matmul): {gemm_flops_per_second() / 1e9:.1f} GFLOP/s",
    ]
    return "\n".join(lines)


def _tbb_library() -> str:
    from ._config import TBB_LIBRARY

    return TBB_LIBRARY or "not installed"


def _threading_layer_ready() -> bool:
    """Numba chooses its threading layer at the first parallel launch: make one (a tiny conv2d)."""
    import numba

    try:
        numba.threading_layer()
        return True
    except ValueError:
        from .conv import conv2d

        conv2d(np.ones((2, 2, 4, 4), np.float32), np.ones((4, 2, 3, 3), np.float32), algorithm="direct")
    try:
        numba.threading_layer()
        return True
    except ValueError:
        return False
