"""Pooling kernels for the CNN case: 2x2 windows at stride 2, no padding, no dilation, every window
inside the input.

The general kernels in ``pooling`` handle any geometry, one output row per task, clipping each tap's
range at run time and tracking argmaxes through an index row; they ran LeNet's pooling slower than
PyTorch.  With the geometry fixed, each output element is a straight-line function of four inputs
at constant offsets, written with selects instead of branches so LLVM vectorises the loops (one
task per plane), and the backward writes every input element exactly once (its window's gradient or
zero): no zero-fill pass, no scatter-add.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._config import get_num_threads, njit_kernel, njit_parallel


def applies(params) -> bool:
    return (
        params.kernel_h == params.kernel_w == params.stride_h == params.stride_w == 2
        and params.pad_h == 0 and params.pad_w == 0
        and params.dilation_h == 1 and params.dilation_w == 1
        and params.out_h * params.kernel_h <= params.in_h
        and params.out_w * params.kernel_w <= params.in_w
    )


@njit_kernel
def _first_max_tap(a, b, c, d, zero):
    """(max, tap) of the window [a b; c d] by PyTorch's rules: every NaN takes over (so the last NaN
    in window order wins), otherwise the first maximum in window order.  Written as selects so that LLVM
    vectorises the loops that call it."""
    best = a
    tap = 0
    take = b > best or b != b
    best = b if take else best
    tap = 1 if take else tap
    take = c > best or c != c
    best = c if take else best
    tap = 2 if take else tap
    take = d > best or d != d
    best = d if take else best
    tap = 3 if take else tap
    return best, tap


@njit_parallel
def _max_kernel(x, out, indices, want_indices):
    batch, channels, in_h, in_w = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    zero = x.dtype.type(0)
    for plane_index in prange(batch * channels):
        n = plane_index // channels
        c = plane_index % channels
        for oh in range(out_h):
            top, bottom, out_row = x[n, c, 2 * oh], x[n, c, 2 * oh + 1], out[n, c, oh]
            if want_indices:
                index_row = indices[n, c, oh]
                for ow in range(out_w):
                    best, tap = _first_max_tap(top[2 * ow], top[2 * ow + 1], bottom[2 * ow],
                                               bottom[2 * ow + 1], zero)
                    out_row[ow] = best
                    row_offset = in_w if tap >= 2 else 0
                    index_row[ow] = 2 * oh * in_w + row_offset + 2 * ow + (1 if tap == 1 or tap == 3 else 0)
            else:
                # the value alone: a plain max, replaced by NaN where the window holds one
                for ow in range(out_w):
                    a, b, e, f = top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1]
                    left = a if a >= b else b
                    right = e if e >= f else f
                    best = left if left >= right else right
                    finite = a == a and b == b and e == e and f == f
                    out_row[ow] = best if finite else np.nan


@njit_kernel
def _max_backward_plane(grad_out, x, grad_in, n, c, taps):
    """Plane (n, c): each window's gradient at the input its maximum came from, zero at its other
    three inputs, and zero on an odd last row or column (in no window).  ``taps`` holds a row of
    windows' winning taps."""
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    zero = grad_in.dtype.type(0)
    zero_x = x.dtype.type(0)
    grad_plane = grad_in[n, c]
    in_h, in_w = grad_plane.shape
    for i in range(2 * out_h, in_h):
        for j in range(in_w):
            grad_plane[i, j] = zero
    for i in range(2 * out_h):
        for j in range(2 * out_w, in_w):
            grad_plane[i, j] = zero
    for oh in range(out_h):
        top, bottom, grad_row = x[n, c, 2 * oh], x[n, c, 2 * oh + 1], grad_out[n, c, oh]
        for ow in range(out_w):
            _, taps[ow] = _first_max_tap(top[2 * ow], top[2 * ow + 1], bottom[2 * ow],
                                         bottom[2 * ow + 1], zero_x)
        upper, lower = grad_plane[2 * oh], grad_plane[2 * oh + 1]
        for ow in range(out_w):  # every input of the two rows written once, by a select
            g, tap = grad_row[ow], taps[ow]
            upper[2 * ow] = g if tap == 0 else zero
            upper[2 * ow + 1] = g if tap == 1 else zero
            lower[2 * ow] = g if tap == 2 else zero
            lower[2 * ow + 1] = g if tap == 3 else zero


@njit_parallel
def _max_backward_kernel(grad_out, x, grad_in, chunks):
    """The planes in ``chunks`` runs, one buffer of taps a run (allocating it per plane cost as
    much as the arithmetic on LeNet's small planes)."""
    batch, channels = x.shape[0], x.shape[1]
    planes = batch * channels
    for chunk in prange(chunks):
        taps = np.empty(grad_out.shape[3], dtype=x.dtype)
        for plane in range(chunk * planes // chunks, (chunk + 1) * planes // chunks):
            _max_backward_plane(grad_out, x, grad_in, plane // channels, plane % channels, taps)


@njit_parallel
def _avg_kernel(x, out, kernel_h, kernel_w, divisor):
    batch, channels = x.shape[0], x.shape[1]
    out_h, out_w = out.shape[2], out.shape[3]
    total_divisor = x.dtype.type(divisor)
    for plane_index in prange(batch * channels):
        n = plane_index // channels
        c = plane_index % channels
        plane = x[n, c]
        for oh in range(out_h):
            out_row = out[n, c, oh]
            out_row[:] = 0
            for r in range(kernel_h):
                row = plane[oh * kernel_h + r]
                for s in range(kernel_w):
                    for ow in range(out_w):
                        out_row[ow] += row[ow * kernel_w + s]
            for ow in range(out_w):
                out_row[ow] /= total_divisor


@njit_parallel
def _avg_backward_kernel(grad_out, grad_in, kernel_h, kernel_w, divisor):
    batch, channels = grad_in.shape[0], grad_in.shape[1]
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    zero = grad_in.dtype.type(0)
    for plane_index in prange(batch * channels):
        n = plane_index // channels
        c = plane_index % channels
        grad_plane = grad_in[n, c]
        grad_plane[out_h * kernel_h:, :] = zero
        grad_plane[:out_h * kernel_h, out_w * kernel_w:] = zero
        for oh in range(out_h):
            grad_row = grad_out[n, c, oh]
            for r in range(kernel_h):
                row = grad_plane[oh * kernel_h + r]
                for ow in range(out_w):
                    share = grad_row[ow] / grad_plane.dtype.type(divisor)
                    for s in range(kernel_w):
                        row[ow * kernel_w + s] = share


def max_pool(x, params, want_indices):
    out = np.empty(params.output_shape, dtype=params.dtype)
    indices = np.empty(params.output_shape if want_indices else (1, 1, 1, 1), dtype=np.int64)
    _max_kernel(x, out, indices, want_indices)
    return out, indices


def max_pool_backward(grad_out, x, params, dtype):
    grad_in = np.empty(params.input_shape, dtype=dtype)
    planes = grad_in.shape[0] * grad_in.shape[1]
    _max_backward_kernel(grad_out, x, grad_in, np.int64(max(1, min(planes, 4 * get_num_threads()))))
    return grad_in


def avg_pool(x, params, divisor):
    """``divisor`` is divisor_override, or the window size (no padding: count_include_pad is moot)."""
    out = np.empty(params.output_shape, dtype=params.dtype)
    _avg_kernel(x, out, params.kernel_h, params.kernel_w, divisor or params.kernel_h * params.kernel_w)
    return out


def avg_pool_backward(grad_out, params, dtype, divisor):
    grad_in = np.empty(params.input_shape, dtype=dtype)
    _avg_backward_kernel(grad_out, grad_in, params.kernel_h, params.kernel_w,
                         divisor or params.kernel_h * params.kernel_w)
    return grad_in
