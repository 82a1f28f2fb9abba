"""Every tunable knob of fastconv in one place: Numba flags, threads, workspace cap, cache locations.

Environment variables (read once, at import):

``FASTCONV_WORKSPACE_MB``   cap on scratch memory one call may allocate (im2col columns, FFT spectra); 256.
``FASTCONV_SERIAL_MACS``    multiply-adds below which a kernel runs on the calling thread; default from
                            the CPU (``_cpu.default_serial_macs``: 262144 with 32- or 64-byte vectors).
``FASTCONV_CACHE_DIR``      where fastconv keeps calibration and wisdom files; default: the user cache dir.
``NUMBA_CACHE_DIR``         Numba's own setting for where compiled kernels are cached (see ``info``).
"""
from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numba


# --- threading layer ----------------------------------------------------------------------------
# Numba prefers TBB (safe for concurrent callers, e.g. Dask workers running tasks in threads, and its
# workers do not spin against OpenBLAS's).  pip installs the ``tbb`` wheel's libtbb into the
# environment's lib/ directory, which is not on the loader's path, so Numba's TBB extension fails to
# load and Numba silently falls back to OpenMP.  Loading the library by its full path first (global
# symbols) satisfies the extension's dependency: the loader reuses an already-loaded soname.
_TBB_SONAMES = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib"}


def _tbb_library_path():
    soname = _TBB_SONAMES.get(sys.platform)
    if soname is None:
        return None
    try:
        from importlib import metadata

        for file in metadata.files("tbb") or ():
            if file.name == soname:
                return Path(metadata.distribution("tbb").locate_file(file)).resolve()
    except metadata.PackageNotFoundError:
        pass
    candidate = Path(sys.prefix) / "lib" / soname
    return candidate if candidate.exists() else None


def _load_tbb() -> str | None:
    """Make libtbb loadable for Numba; returns its path, or None when it is not installed here."""
    path = _tbb_library_path()
    if path is None or not path.exists():
        return None
    try:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return None
    return str(path)


TBB_LIBRARY = _load_tbb()
"""Where the TBB runtime Numba's threading layer uses was loaded from (None: not installed)."""

# Numba flags for every kernel.  ``fastmath`` is restricted to the flags that keep IEEE semantics for
# non-finite values: 'nnan'/'ninf' would let LLVM assume NaN/Inf never occur, and the direct definition
# must propagate them exactly.  'reassoc' and 'contract' let LLVM vectorise reductions and fuse
# multiply-adds, which changes rounding only at the level of a reordered sum.
FASTMATH_FLAGS = {"reassoc", "contract", "nsz", "arcp"}

KERNEL_FLAGS = dict(cache=True, nogil=True, fastmath=FASTMATH_FLAGS, error_model="numpy")
PARALLEL_KERNEL_FLAGS = dict(KERNEL_FLAGS, parallel=True)

njit_kernel = numba.njit(**KERNEL_FLAGS)
"""Decorator for a serial kernel (called from parallel ones, or too small to split)."""

njit_parallel = numba.njit(**PARALLEL_KERNEL_FLAGS)
"""Decorator for a kernel whose outermost loop is a ``prange`` over independent work."""

njit_inline = numba.njit(inline="always", **KERNEL_FLAGS)
"""Decorator for a micro-kernel inlined into its callers by Numba itself: LLVM's inliner gives up on
a large caller and leaves the call, passing every array as a structure and vectors through memory."""

_MIB = 1 << 20


def _workspace_from_env() -> int:
    raw = os.environ.get("FASTCONV_WORKSPACE_MB", "256")
    try:
        mib = float(raw)
    except ValueError:
        raise ValueError(f"FASTCONV_WORKSPACE_MB must be a number of MiB, got {raw!r}") from None
    if mib <= 0:
        raise ValueError(f"FASTCONV_WORKSPACE_MB must be positive, got {raw!r}")
    return int(mib * _MIB)


_workspace_bytes = _workspace_from_env()


# --- the latency path ---------------------------------------------------------------------------
# Waking the other threads for a parallel region costs a few microseconds (and a task per thread
# gains nothing on a few thousand multiply-adds), so small problems run on the calling thread.  The
# threshold is about what one core does in the time a parallel launch costs, several times over.
def _serial_macs_from_env() -> int:
    from ._cpu import default_serial_macs

    raw = os.environ.get("FASTCONV_SERIAL_MACS") or str(default_serial_macs())
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"FASTCONV_SERIAL_MACS must be an integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"FASTCONV_SERIAL_MACS must be >= 0, got {raw!r}")
    return value


SERIAL_MACS = _serial_macs_from_env()


def runs_serially(multiply_adds: int) -> bool:
    """Whether a kernel call of this many multiply-adds runs on the calling thread."""
    return multiply_adds < SERIAL_MACS


def get_workspace_limit() -> int:
    """Bytes of scratch memory one call may allocate (im2col columns, FFT spectra)."""
    return _workspace_bytes


def set_workspace_limit(nbytes: int) -> None:
    """Cap scratch memory per call; larger problems are processed in chunks."""
    global _workspace_bytes
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int,)) and not hasattr(nbytes, "__index__"):
        raise TypeError(f"workspace limit must be an integer number of bytes, got {type(nbytes).__name__}")
    nbytes = int(nbytes)
    if nbytes < 1 << 16:
        raise ValueError(f"workspace limit must be at least 64 KiB, got {nbytes} bytes")
    _workspace_bytes = nbytes


def cache_dir() -> Path:
    """Directory for fastconv's own persistent files (calibration, autotune wisdom)."""
    override = os.environ.get("FASTCONV_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fastconv"


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in fastconv's kernels and in the BLAS that im2col's GEMM calls."""
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"set_num_threads: n must be an integer, got {type(n).__name__}")
    n = int(n)
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(
            f"set_num_threads: n must be between 1 and {numba.config.NUMBA_NUM_THREADS} "
            f"(NUMBA_NUM_THREADS), got {n}"
        )
    numba.set_num_threads(n)
    _limit_blas_threads(n)


def get_num_threads() -> int:
    """Threads fastconv's parallel kernels use."""
    return numba.get_num_threads()


def _limit_blas_threads(n: int) -> None:
    # Numba's np.dot calls SciPy's bundled BLAS, NumPy's matmul its own: threadpoolctl reaches both.
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")


# --- small BLAS calls without worker threads ----------------------------------------------------
# After a multi-threaded call, OpenBLAS's workers spin-wait for a while (2**28 cycles by default,
# tens of milliseconds) before sleeping; on a machine with as many cores as threads they then compete
# with the next kernel's threads: the small Linear layers' GEMMs of a LeNet training step slowed
# the conv kernels after them (docs/measurements.md).  Small GEMMs gain nothing from threads,
# so they run with one: openblas_set_num_threads on every OpenBLAS loaded, through threadpoolctl's
# per-library controllers found once (microseconds, unlike a threadpoolctl context), restored after.
_openblas_setters = None


def _openblas_functions():
    global _openblas_setters
    if _openblas_setters is None:
        functions = []
        try:
            from threadpoolctl import ThreadpoolController

            for controller in ThreadpoolController().lib_controllers:
                if controller.internal_api == "openblas":  # (symbol prefixes handled by threadpoolctl)
                    functions.append((controller.get_num_threads, controller.set_num_threads))
        except Exception:  # pragma: no cover - no threadpoolctl-visible OpenBLAS: nothing to limit
            functions = []
        _openblas_setters = functions
    return _openblas_setters


class single_threaded_blas:
    """Context manager: OpenBLAS (NumPy's and SciPy's) runs with one thread inside."""

    __slots__ = ("_previous",)

    def __enter__(self):
        self._previous = []
        for get, set_ in _openblas_functions():
            threads = get()
            self._previous.append((set_, threads))
            if threads != 1:
                set_(1)
        return self

    def __exit__(self, *exc):
        for set_, threads in self._previous:
            if threads != 1:
                set_(threads)
        return False
