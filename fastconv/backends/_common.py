"""Small compiled helpers shared by the backends."""
from __future__ import annotations

from .._config import njit_kernel


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
    """Kernels always take a bias vector: one compiled signature instead of two."""
    import numpy as np

    return np.zeros(out_channels, dtype=dtype) if bias is None else bias
