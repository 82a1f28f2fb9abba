"""3-D max and average pooling, forward and backward, with PyTorch's semantics.

The rules are those of the 2-D functions in :mod:`fastconv.pooling`, one axis more: windows start
at ``o * stride - padding``; ``ceil_mode`` keeps a last partial window that starts inside the input
or the front/top/left padding; padding is at most half the kernel.  Max pooling treats padding as
-inf, lets NaN win (the last NaN in window order) and sends ties to the first maximum in window
order; its indices are flat ``(d * H + h) * W + w`` within a volume, as PyTorch's.  Average pooling
divides by the window clipped to the padded input (``count_include_pad=True``) or to the input, or
by ``divisor_override``.

Layout: (N, C, D, H, W), C-contiguous.  Forward kernels run one parallel task per output row
(n, c, od, oh), so a single volume parallelises as well as a batch; taps are the outer loops and
the output row the inner one (contiguous).  Backward kernels scatter each output gradient over its
window with one task per volume (n, c): overlapping windows of one volume then never race.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._config import njit_kernel, njit_parallel
from ._params import as_array, compute_dtype, contiguous, make_pool3d_params
from .backends._common import valid_output_range
from .pooling import _check_divisor


# --- kernels ----------------------------------------------------------------------------------
@njit_kernel
def _row_max(volume, first_d, first_h, pad_w, kernel_t, kernel_r, kernel_s, stride_w,
             dil_d, dil_h, dil_w, best_row, index_row):
    """Max and flat argmax of every window of one output row (windows start at input plane
    ``first_d``, row ``first_h``).  Taps in window order with strict '>' keep the first of equal
    maxima; a NaN always takes over; the first sample inside the input is taken even when it is
    -inf.  -1 marks a window that holds no input sample."""
    in_d, in_h, in_w = volume.shape
    out_w = best_row.shape[0]
    best_row[:] = -np.inf
    index_row[:] = -1
    for t in range(kernel_t):
        plane = first_d + t * dil_d
        if plane < 0 or plane >= in_d:
            continue
        for r in range(kernel_r):
            row = first_h + r * dil_h
            if row < 0 or row >= in_h:
                continue
            in_row = volume[plane, row]
            row_index = (plane * in_h + row) * in_w
            for s in range(kernel_s):
                offset = s * dil_w - pad_w
                lo, hi = valid_output_range(offset, stride_w, in_w, out_w)
                for ow in range(lo, hi):
                    column = ow * stride_w + offset
                    value = in_row[column]
                    if index_row[ow] < 0 or value > best_row[ow] or np.isnan(value):
                        best_row[ow] = value
                        index_row[ow] = row_index + column


@njit_parallel
def _max_pool_kernel(x, out, indices, want_indices, kernel_t, kernel_r, kernel_s, stride_d,
                     stride_h, stride_w, pad_d, pad_h, pad_w, dil_d, dil_h, dil_w):
    batch, channels = x.shape[0], x.shape[1]
    out_d, out_h, out_w = out.shape[2], out.shape[3], out.shape[4]
    for task in prange(batch * channels * out_d * out_h):
        oh = task % out_h
        od = (task // out_h) % out_d
        c = (task // (out_h * out_d)) % channels
        n = task // (out_h * out_d * channels)
        index_row = np.empty(out_w, dtype=np.int64)
        _row_max(x[n, c], od * stride_d - pad_d, oh * stride_h - pad_h, pad_w, kernel_t, kernel_r,
                 kernel_s, stride_w, dil_d, dil_h, dil_w, out[n, c, od, oh], index_row)
        if want_indices:
            indices[n, c, od, oh, :] = index_row


@njit_parallel
def _max_pool_backward_kernel(grad_out, x, grad_in, kernel_t, kernel_r, kernel_s, stride_d,
                              stride_h, stride_w, pad_d, pad_h, pad_w, dil_d, dil_h, dil_w):
    """grad_in (zeroed by the caller) += grad_out routed to each window's argmax (recomputed)."""
    batch, channels = x.shape[0], x.shape[1]
    out_d, out_h, out_w = grad_out.shape[2], grad_out.shape[3], grad_out.shape[4]
    for task in prange(batch * channels):
        c = task % channels
        n = task // channels
        volume = x[n, c]
        grad_volume = grad_in[n, c].reshape(volume.size)
        best_row = np.empty(out_w, dtype=x.dtype)
        index_row = np.empty(out_w, dtype=np.int64)
        for od in range(out_d):
            for oh in range(out_h):
                _row_max(volume, od * stride_d - pad_d, oh * stride_h - pad_h, pad_w, kernel_t,
                         kernel_r, kernel_s, stride_w, dil_d, dil_h, dil_w, best_row, index_row)
                grad_row = grad_out[n, c, od, oh]
                for ow in range(out_w):
                    if index_row[ow] >= 0:
                        grad_volume[index_row[ow]] += grad_row[ow]


@njit_kernel
def _window_bounds(o, stride, pad, kernel, size):
    """PyTorch's avg-pool window on one axis: (start, end) clipped to the input, and the length
    clipped to the padded input (the divisor's factor for count_include_pad=True)."""
    start = o * stride - pad
    end = min(start + kernel, size + pad)
    padded_count = end - start
    return max(start, 0), min(end, size), padded_count


@njit_kernel
def _divisor(count_include_pad, divisor_override, padded_count, count):
    if divisor_override > 0:
        return divisor_override
    return padded_count if count_include_pad else count


@njit_parallel
def _avg_pool_kernel(x, out, kernel_t, kernel_r, kernel_s, stride_d, stride_h, stride_w,
                     pad_d, pad_h, pad_w, count_include_pad, divisor_override):
    """``divisor_override`` <= 0 means none."""
    batch, channels, in_d, in_h, in_w = x.shape
    out_d, out_h, out_w = out.shape[2], out.shape[3], out.shape[4]
    for task in prange(batch * channels * out_d * out_h):
        oh = task % out_h
        od = (task // out_h) % out_d
        c = (task // (out_h * out_d)) % channels
        n = task // (out_h * out_d * channels)
        volume = x[n, c]
        d_start, d_end, padded_d = _window_bounds(od, stride_d, pad_d, kernel_t, in_d)
        h_start, h_end, padded_h = _window_bounds(oh, stride_h, pad_h, kernel_r, in_h)
        for ow in range(out_w):
            w_start, w_end, padded_w = _window_bounds(ow, stride_w, pad_w, kernel_s, in_w)
            if d_start >= d_end or h_start >= h_end or w_start >= w_end:
                out[n, c, od, oh, ow] = 0  # no input sample (PyTorch's rules leave none empty)
                continue
            total = volume.dtype.type(0)
            for plane in range(d_start, d_end):
                for row in range(h_start, h_end):
                    for column in range(w_start, w_end):
                        total += volume[plane, row, column]
            divisor = _divisor(count_include_pad, divisor_override, padded_d * padded_h * padded_w,
                               (d_end - d_start) * (h_end - h_start) * (w_end - w_start))
            out[n, c, od, oh, ow] = total / volume.dtype.type(divisor)


@njit_parallel
def _avg_pool_backward_kernel(grad_out, grad_in, kernel_t, kernel_r, kernel_s, stride_d,
                              stride_h, stride_w, pad_d, pad_h, pad_w, count_include_pad,
                              divisor_override):
    """grad_in (zeroed by the caller) += grad_out / divisor spread uniformly over each window."""
    batch, channels, in_d, in_h, in_w = grad_in.shape
    out_d, out_h, out_w = grad_out.shape[2], grad_out.shape[3], grad_out.shape[4]
    for task in prange(batch * channels):
        c = task % channels
        n = task // channels
        grad_volume = grad_in[n, c]
        for od in range(out_d):
            d_start, d_end, padded_d = _window_bounds(od, stride_d, pad_d, kernel_t, in_d)
            for oh in range(out_h):
                h_start, h_end, padded_h = _window_bounds(oh, stride_h, pad_h, kernel_r, in_h)
                for ow in range(out_w):
                    w_start, w_end, padded_w = _window_bounds(ow, stride_w, pad_w, kernel_s, in_w)
                    if d_start >= d_end or h_start >= h_end or w_start >= w_end:
                        continue
                    divisor = _divisor(count_include_pad, divisor_override,
                                       padded_d * padded_h * padded_w,
                                       (d_end - d_start) * (h_end - h_start) * (w_end - w_start))
                    share = grad_out[n, c, od, oh, ow] / grad_volume.dtype.type(divisor)
                    for plane in range(d_start, d_end):
                        for row in range(h_start, h_end):
                            for column in range(w_start, w_end):
                                grad_volume[plane, row, column] += share


# --- public API -------------------------------------------------------------------------------
def _grad_output(grad_output, params, batched, x):
    """Validate grad_output's shape against the forward output; return it and the input in one
    compute dtype, as (N, C, D', H', W') C-contiguous arrays."""
    grad = as_array(grad_output, "grad_output")
    expected = params.output_shape if batched else params.output_shape[1:]
    if grad.shape != expected:
        raise ValueError(
            f"grad_output has shape {grad.shape}, but the pooling output for input of shape "
            f"{params.input_shape if batched else params.input_shape[1:]} is {expected}"
        )
    dtype = compute_dtype(x, grad)
    grad5 = grad if batched else grad[np.newaxis]
    return contiguous(grad5, dtype), contiguous(x, dtype), dtype


def _unbatch(array, batched):
    return array if batched else array[0]


def _geometry(params):
    return (*params.kernel, *params.stride, *params.padding)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """3-D max pooling with the semantics of ``torch.nn.functional.max_pool3d``.

    Parameters
    ----------
    input : array (N, C, D, H, W) or (C, D, H, W)
    kernel_size, stride, padding, dilation : int or (int, int, int)
        ``stride`` defaults to ``kernel_size``; ``padding`` (treated as -inf) is at most half the
        kernel.
    ceil_mode : bool
    return_indices : bool
        Also return the int64 flat index ``(d * H + h) * W + w`` of each maximum in its volume.

    Returns
    -------
    ndarray (N, C, D', H', W') or (C, D', H', W'), and the indices when asked.
    """
    params, x, batched = make_pool3d_params(input, kernel_size, stride, padding, dilation,
                                            ceil_mode, op="max_pool3d")
    out = np.empty(params.output_shape, dtype=params.dtype)
    indices = np.empty(params.output_shape if return_indices else (1,) * 5, dtype=np.int64)
    if params.batch:
        _max_pool_kernel(x, out, indices, bool(return_indices), *_geometry(params),
                         *params.dilation)
    if return_indices:
        return _unbatch(out, batched), _unbatch(indices, batched)
    return _unbatch(out, batched)


def max_pool3d_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    """Gradient of :func:`max_pool3d` w.r.t. its input: each output gradient goes to its window's
    maximum (recomputed from ``input``).  ``grad_output`` must have the forward output's shape."""
    params, x, batched = make_pool3d_params(input, kernel_size, stride, padding, dilation,
                                            ceil_mode, op="max_pool3d")
    grad, x, dtype = _grad_output(grad_output, params, batched, x)
    grad_in = np.zeros(params.input_shape, dtype=dtype)
    if params.batch:
        _max_pool_backward_kernel(grad, x, grad_in, *_geometry(params), *params.dilation)
    return _unbatch(grad_in, batched)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """3-D average pooling with the semantics of ``torch.nn.functional.avg_pool3d``.

    Parameters
    ----------
    input : array (N, C, D, H, W) or (C, D, H, W)
    kernel_size, stride, padding : int or (int, int, int)
        ``stride`` defaults to ``kernel_size``; ``padding`` (zeros) is at most half the kernel.
    ceil_mode, count_include_pad : bool
    divisor_override : positive int or None

    Returns
    -------
    ndarray (N, C, D', H', W') or (C, D', H', W').
    """
    divisor = _check_divisor(divisor_override)
    params, x, batched = make_pool3d_params(input, kernel_size, stride, padding, 1, ceil_mode,
                                            op="avg_pool3d")
    out = np.empty(params.output_shape, dtype=params.dtype)
    if params.batch:
        _avg_pool_kernel(x, out, *_geometry(params), bool(count_include_pad), divisor)
    return _unbatch(out, batched)


def avg_pool3d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Gradient of :func:`avg_pool3d` w.r.t. its input: each output gradient, divided by its
    window's divisor, is spread over the window.  ``input`` supplies the shape and dtype."""
    divisor = _check_divisor(divisor_override)
    params, x, batched = make_pool3d_params(input, kernel_size, stride, padding, 1, ceil_mode,
                                            op="avg_pool3d")
    grad, x, dtype = _grad_output(grad_output, params, batched, x)
    grad_in = np.zeros(params.input_shape, dtype=dtype)
    if params.batch:
        _avg_pool_backward_kernel(grad, grad_in, *_geometry(params), bool(count_include_pad),
                                  divisor)
    return _unbatch(grad_in, batched)
