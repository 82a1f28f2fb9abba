"""Separable convolution: a rank-1 kernel w[r, s] = col[r] * row[s] applied as two 1-D passes.

Per (n, k, block of output rows) task: a horizontal pass filters the input rows the block needs with
``row`` (at the output's column stride) into a scratch block, then a vertical pass accumulates ``col``
over those rows into the output; summed over the group's input channels.  Cost per output pixel is
R + S multiply-adds per channel instead of R * S.

Rank is verified numerically: a (k, c) kernel is rank 1 when its second singular value is at most
``rank_tolerance(dtype)`` times its first.  Kernels that fail are refused with ValueError.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._config import get_num_threads, njit_parallel
from ._common import bias_or_zeros, valid_output_range

NAME = "separable"


def supports(params) -> str | None:
    """Every geometry; whether the weight is rank 1 depends on its values (see ``factorize``)."""
    return None


# Priced by the dispatcher's cost model (fastconv.dispatch.model).
COST_FEATURES = ("call", "flops", "kernel_factorisations")


def cost_features(params, threads: int) -> tuple[float, ...]:
    """Both 1-D passes' multiply-adds, and the rank check (one small SVD per (k, c) kernel) that
    runs on every call."""
    width = params.dtype.itemsize / 4.0
    span_rows = params.out_h * params.stride_h + params.dilated_kernel_h
    pair_count = params.batch * params.out_channels * params.in_channels_per_group
    flops = 2 * pair_count * params.out_w * (
        span_rows * params.kernel_w + params.out_h * params.kernel_h
    )
    return (1.0, flops * width / threads, float(params.out_channels * params.in_channels_per_group))


def rank_tolerance(dtype) -> float:
    """Relative size of the second singular value below which a kernel counts as rank 1: a few
    units of the dtype's rounding per tap, i.e. the rank-1 factors reproduce the kernel to within
    what the dtype can represent anyway."""
    return 16 * np.finfo(dtype).eps


def could_be_rank1(kernels: np.ndarray, dtype) -> bool:
    """Cheap necessary condition for every kernel of a (B, R, S) stack to be rank 1, checked before
    the SVDs that prove it (an SVD of a 45x45 kernel can cost more than the FFT convolution it
    would decide about).  A rank-1 matrix equals its skeleton through its largest entry,
    ``outer(column, row) / pivot``, up to rounding; a residual far above rounding rules rank 1 out.
    O(B R S), vectorised over the stack."""
    magnitude = np.abs(kernels)
    if not np.isfinite(magnitude).all():
        return False
    count, kernel_h, kernel_w = kernels.shape
    flat_index = magnitude.reshape(count, -1).argmax(axis=1)
    rows, cols = np.divmod(flat_index, kernel_w)
    stack = np.arange(count)
    pivot = kernels[stack, rows, cols]
    safe_pivot = np.where(pivot == 0, 1, pivot)
    column = kernels[stack, :, cols]  # (B, R): the pivot's column
    row = kernels[stack, rows, :] / safe_pivot[:, None]  # (B, S)
    residual = np.abs(kernels - column[:, :, None] * row[:, None, :]).reshape(count, -1).max(axis=1)
    bound = 1e3 * rank_tolerance(dtype) * magnitude[stack, rows, cols]
    return bool(np.all((pivot == 0) | (residual <= bound)))


def factorize(w: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray] | None:
    """``(col (K, Cg, R), row (K, Cg, S))`` with ``w[k, c] == outer(col[k, c], row[k, c])``, or None
    if some (k, c) kernel is not numerically rank 1."""
    out_channels, channels, kernel_h, kernel_w = w.shape
    kernels = np.asarray(w, dtype=np.float64).reshape(-1, kernel_h, kernel_w)
    if kernel_h == 1 or kernel_w == 1:
        # Already 1-D: split off the trivial factor without an SVD (exact, and keeps NaN taps).
        if kernel_h == 1:
            col = np.ones((kernels.shape[0], 1))
            row = kernels[:, 0, :]
        else:
            col = kernels[:, :, 0]
            row = np.ones((kernels.shape[0], 1))
    else:
        if not could_be_rank1(kernels, dtype):
            return None
        u, sigma, vt = np.linalg.svd(kernels)
        largest = sigma[:, 0]
        second = sigma[:, 1]
        if np.any(second > rank_tolerance(dtype) * np.maximum(largest, np.finfo(np.float64).tiny)):
            return None
        root = np.sqrt(largest)
        col = u[:, :, 0] * root[:, None]
        row = vt[:, 0, :] * root[:, None]
    return (
        np.ascontiguousarray(col.reshape(out_channels, channels, kernel_h), dtype=dtype),
        np.ascontiguousarray(row.reshape(out_channels, channels, kernel_w), dtype=dtype),
    )


@njit_parallel
def _separable_kernel(x, col, row, bias, out, stride_h, stride_w, dilation_h, dilation_w,
                      pad_top, pad_left, out_per_group, block_rows):
    batch, _, in_h, in_w = x.shape
    out_channels, channels, kernel_h = col.shape
    kernel_w = row.shape[2]
    out_h, out_w = out.shape[2], out.shape[3]
    blocks = (out_h + block_rows - 1) // block_rows
    for task in prange(batch * out_channels * blocks):
        block = task % blocks
        k = (task // blocks) % out_channels
        n = task // (blocks * out_channels)
        first_channel = (k // out_per_group) * channels
        oh0 = block * block_rows
        oh1 = min(out_h, oh0 + block_rows)
        first_in_row = oh0 * stride_h - pad_top
        span = (oh1 - 1 - oh0) * stride_h + (kernel_h - 1) * dilation_h + 1
        scratch = np.empty((span, out_w), dtype=out.dtype)
        for oh in range(oh0, oh1):
            out[n, k, oh, :] = bias[k]
        for c in range(channels):
            plane = x[n, first_channel + c]
            # horizontal pass: scratch[t, ow] = sum_s row[s] * plane[first_in_row + t, ow*sw + s*dw - pl]
            for t in range(span):
                dest = scratch[t]
                dest[:] = 0
                ih = first_in_row + t
                if ih < 0 or ih >= in_h:
                    continue
                in_row = plane[ih]
                for s in range(kernel_w):
                    offset = s * dilation_w - pad_left
                    lo, hi = valid_output_range(offset, stride_w, in_w, out_w)
                    tap = row[k, c, s]
                    for ow in range(lo, hi):
                        dest[ow] += tap * in_row[ow * stride_w + offset]
            # vertical pass
            for oh in range(oh0, oh1):
                out_row = out[n, k, oh]
                for r in range(kernel_h):
                    tap = col[k, c, r]
                    src = scratch[(oh - oh0) * stride_h + r * dilation_h]
                    for ow in range(out_w):
                        out_row[ow] += tap * src[ow]


def block_rows(params) -> int:
    """Output rows per task: enough tasks to keep every thread busy, few enough rows that the
    halo (R - 1 extra input rows per block) stays a small overhead."""
    tasks_wanted = 4 * get_num_threads()
    planes = params.batch * params.out_channels
    blocks = max(1, -(-tasks_wanted // planes))
    rows = -(-params.out_h // blocks)
    return int(max(rows, min(params.out_h, 4 * params.kernel_h * params.dilation_h), 1))


def forward(x, w, bias, params, factors=None):
    """conv2d with a rank-1 weight; raises ValueError if ``w`` is not separable."""
    if factors is None:
        factors = factorize(w, params.dtype)
        if factors is None:
            raise ValueError(
                f"the separable backend needs rank-1 kernels, but some (k, c) slice of the weight "
                f"{w.shape} has second singular value above {rank_tolerance(params.dtype):.1e} x "
                f"its first; use algorithm='direct', 'im2col' or 'fft'"
            )
    col, row = factors
    return forward_factors(x, col, row, bias, params)


def forward_factors(x, col, row, bias, params):
    """conv2d with the kernel given by its column and row factors (K, Cg, R) and (K, Cg, S)."""
    out = np.empty(params.output_shape, dtype=params.dtype)
    _separable_kernel(
        x, col, row, bias_or_zeros(bias, params.out_channels, params.dtype), out,
        params.stride_h, params.stride_w, params.dilation_h, params.dilation_w,
        params.pad_top, params.pad_left, params.out_channels_per_group, block_rows(params),
    )
    return out
