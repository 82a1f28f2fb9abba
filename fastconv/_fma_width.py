"""Whether this CPU executes a 64-byte fused multiply-add at full width.

AVX-512 is one instruction set on two kinds of hardware: Intel's server cores and AMD Zen 5 retire
two 64-byte FMAs per cycle, AMD Zen 4 splits each into two 32-byte halves and retires one.  Per flop,
the register-tile kernels (direct, im2col's GEMM, Winograd) are then about twice as fast on the first
kind while an FFT (loads and shuffles) gains far less, so the cost model needs its own coefficient
set for each (``fastconv.dispatch.model``).  The feature flags cannot tell the two apart, and under a
hypervisor neither can the CPU name (LLVM may report a client core for a server one), so this module
measures it: the multiply-add rate of 64-byte vectors against 32-byte ones, each over enough
independent chains to hide the FMA latency.  Full width doubles the rate; split execution leaves it
equal.  It runs once per machine (a few milliseconds, plus the first compilation) and the answer is
stored in the fastconv cache directory; ``FASTCONV_COST_MODEL`` chooses a set without it.
"""
from __future__ import annotations

import functools
import time

import numpy as np
from numba import literally

from . import _simd
from ._config import njit_kernel

_WIDE_BYTES = 64
_HALF_BYTES = 32
_ITERATIONS = 100_000
_REPEATS = 7
FULL_WIDTH_RATIO = 1.5
"""Above this ratio of 64-byte to 32-byte multiply-add rates (2 at full width, 1 when split) the
CPU counts as full width: halfway, so clock changes and noise cannot tip it."""


@njit_kernel
def _fma_chains(iterations, out, nbytes):
    """Twelve independent chains of ``nbytes``-byte multiply-adds (twice the FMA pipes times their
    latency, so throughput, not latency, sets the pace); ``a * m + m`` with m = 0.5 converges to 1
    (no overflow, no denormals).  ``nbytes`` is compiled in: one specialisation per width."""
    literally(nbytes)
    m = _simd.broadcast(out[0], nbytes)
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = a10 = a11 = m
    for _ in range(iterations):
        a0, a1, a2, a3 = _simd.fma(a0, m, m), _simd.fma(a1, m, m), _simd.fma(a2, m, m), _simd.fma(a3, m, m)
        a4, a5, a6, a7 = _simd.fma(a4, m, m), _simd.fma(a5, m, m), _simd.fma(a6, m, m), _simd.fma(a7, m, m)
        a8, a9, a10, a11 = _simd.fma(a8, m, m), _simd.fma(a9, m, m), _simd.fma(a10, m, m), _simd.fma(a11, m, m)
    _simd.store(out, 0, ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)))


@njit_kernel
def _wide_chains(iterations, out):
    _fma_chains(iterations, out, _WIDE_BYTES)


@njit_kernel
def _half_chains(iterations, out):
    _fma_chains(iterations, out, _HALF_BYTES)


# Called from Python, ``_fma_chains(n, out, 64)`` goes through Numba's literal dispatch (typing fails,
# is retried with the literal) on every call, which has been seen to cost milliseconds, as long as
# the probe's loop: the two widths then time the same and the ratio reads 2 whatever the hardware.
# Each width gets a compiled entry point of its own instead, and the rate is taken from the
# difference between a long and a short run, so what a call costs in itself cancels out.
_PROBES = {_WIDE_BYTES: _wide_chains, _HALF_BYTES: _half_chains}


def measure_width_ratio(iterations: int = _ITERATIONS, repeats: int = _REPEATS) -> float:
    """The 64-byte multiply-add rate over the 32-byte one, in lanes per second: for each width the
    best of ``repeats`` interleaved runs (the least disturbed) of ``iterations`` and of twice as
    many, the rate taken from the difference."""
    out = np.full(_WIDE_BYTES // 4, 0.5, np.float32)
    best = {(nbytes, n): np.inf for nbytes in _PROBES for n in (iterations, 2 * iterations)}
    for probe in _PROBES.values():
        probe(1, out)  # compile (or load from the cache) outside the timing
    for _ in range(repeats):
        for nbytes, n in best:
            out[0] = 0.5
            start = time.perf_counter()
            _PROBES[nbytes](n, out)
            best[nbytes, n] = min(best[nbytes, n], time.perf_counter() - start)
    seconds = {nbytes: max(best[nbytes, 2 * iterations] - best[nbytes, iterations], 1e-9)
               for nbytes in _PROBES}
    return (_WIDE_BYTES / seconds[_WIDE_BYTES]) / (_HALF_BYTES / seconds[_HALF_BYTES])


@functools.lru_cache(maxsize=1)
def full_width_fma() -> bool:
    """Whether 64-byte multiply-adds run at full width here (measured once per machine; the
    answer is kept in the cache directory's ``cpu.json``)."""
    from ._wisdom import cpu_store, machine_fingerprint

    store = cpu_store()
    # v2: the differenced timing (a v1 ratio, which could read 2 on split units, is not reused)
    key = f"fma_width_ratio_v2:{machine_fingerprint()}"
    ratio = store.get(key)
    if not isinstance(ratio, (int, float)):
        ratio = measure_width_ratio()
        store.update({key: ratio})
    return ratio > FULL_WIDTH_RATIO
