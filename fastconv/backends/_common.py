"""Small compiled helpers shared by the backends."""
from __future__ import annotations

import numpy as np
from numba import prange

from .._config import njit_kernel, njit_parallel


@njit_kernel
def valid_output_range(offset, stride, in_size, out_size):
    """Output positions ``o`` in [lo, hi) whose input index ``o * stride + offset`` lies in
    [0, in_size): the positions that do not read implicit zero padding.  Clipping loops to this
    range is how every kernel handles zero padding without a padded copy."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = (in_size - 1 - offset) // stride + 1
    lo = min(lo, out_size)
    hi = max(lo, min(hi, out_size))
    return lo, hi


def bias_or_zeros(bias, out_channels, dtype):
    """Kernels always take a bias vector, and a read-only one: Numba compiles a writable and a
    read-only array argument as two signatures, so zeros made here, the caller's array and the
    vectors the fast paths cache would each cost a first call another compilation."""
    return read_only_view(np.zeros(out_channels, dtype=dtype) if bias is None else bias)


def read_only_view(array):
    """A read-only view of ``array`` (the array itself stays writable)."""
    view = array.view()
    view.flags.writeable = False
    return view


@njit_kernel
def _flat_all_finite(values):
    # x * 0 is 0 for finite x and NaN for NaN or +-Inf; the running sum turns NaN if any term is.
    # Safe under our fastmath flags: folding x * 0 to 0 would need 'nnan' and 'ninf', which are off.
    total = values.dtype.type(0)
    for i in range(values.shape[0]):
        total += values[i] * 0
    return total == 0


_FINITE_BLOCK = 1 << 16


@njit_parallel
def _flat_all_finite_parallel(values):
    """``_flat_all_finite`` over blocks on every thread: a check of a large gradient or batch is a
    memory-speed pass that one core alone would make a backward call wait for."""
    blocks = -(-values.shape[0] // _FINITE_BLOCK)
    bad = 0
    for block in prange(blocks):
        if not _flat_all_finite(values[block * _FINITE_BLOCK:(block + 1) * _FINITE_BLOCK]):
            bad += 1
    return bad == 0


def all_finite(*arrays) -> bool:
    """True if no array holds NaN or Inf: one compiled pass, no temporary boolean array (split
    over the threads from a few blocks up)."""
    for array in arrays:
        if array is None:
            continue
        flat = np.ravel(array)  # a view for the contiguous arrays the kernels receive
        if flat.dtype.kind not in "fc":
            continue  # integers are always finite
        if flat.dtype.kind == "c":
            flat = flat.view(flat.real.dtype)
        check = _flat_all_finite_parallel if flat.size >= 4 * _FINITE_BLOCK else _flat_all_finite
        if not check(flat):
            return False
    return True


_INTEGER_SCAN_BLOCK = 4096


@njit_kernel
def _flat_integer_valued(values):
    # Block by block, so that typical float data (a fraction in the first block) stop at once while
    # the inner loop stays a branch-free count LLVM vectorises.  v - floor(v) is 0 exactly for whole
    # numbers and NaN for NaN or Inf.  (A float sum of the fractions would not do: 'reassoc' lets
    # LLVM rewrite it as sum(v) - sum(floor(v)), which loses a tiny fraction next to large values.)
    size = values.shape[0]
    for start in range(0, size, _INTEGER_SCAN_BLOCK):
        block = values[start:min(size, start + _INTEGER_SCAN_BLOCK)]
        fractional = 0
        for i in range(block.shape[0]):
            fractional += (block[i] - np.floor(block[i])) != 0
        if fractional:
            return False
    return True


def all_integer_valued(*arrays) -> bool:
    """True if every value (both parts of complex values) of every array is a finite whole number."""
    for array in arrays:
        if array is None:
            continue
        flat = np.ravel(array)
        if flat.dtype.kind not in "fc":
            continue  # integers are whole numbers
        if flat.dtype.kind == "c":
            flat = flat.view(flat.real.dtype)
        if not _flat_integer_valued(flat):
            return False
    return True
