"""2-D max, average and power-average (Lp) pooling, forward and backward, PyTorch semantics; 1-D
max and average pooling as the 2-D kernels on a plane of height 1.

Windows start at ``o * stride - padding``; with ``ceil_mode`` a last partial window is kept when it
starts inside the input or the left padding (PyTorch's rule).  Padding may be at most half the
kernel.  Max pooling treats padding as -inf and lets NaN win (ties go to the first maximum in window
order, as PyTorch does); average pooling divides by the window size clipped to the padded input
(``count_include_pad=True``) or to the input (``False``), or by ``divisor_override``.

A batch of zero samples gives the empty (0, C, H', W') result (and an empty input gradient) without
running a kernel, as PyTorch; zero channels or an empty plane are a ValueError (PyTorch refuses them).

Layout: (N, C, H, W), C-contiguous.  Forward kernels run one parallel task per output row
(n, c, oh), so a single image parallelises as well as a batch.  Backward kernels scatter each output
gradient over its window: one task per plane (n, c), or per output row when vertically adjacent
windows do not overlap (stride >= dilated kernel), where rows write disjoint input rows.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from . import _pool_tiles
from ._config import njit_kernel, njit_parallel
from ._params import (
    PoolParams,
    as_array,
    as_single,
    check_copy,
    check_not_empty,
    compute_dtype,
    contiguous,
    make_pool_params,
    pooled_size,
)
from .backends._common import valid_output_range

# --- kernels ----------------------------------------------------------------------------------
@njit_kernel
def _window_bounds(o, stride, pad, kernel, size):
    """PyTorch's avg-pool window: (start, end) clipped to the input, and the size clipped to the
    padded input (the divisor for count_include_pad=True)."""
    start = o * stride - pad
    end = min(start + kernel, size + pad)
    padded_count = end - start
    return max(start, 0), min(end, size), padded_count


@njit_kernel
def _row_max(plane, ih0, pad_w, kernel_h, kernel_w, stride_w, dilation_h, dilation_w, best_row,
             index_row):
    """Max and flat argmax of every window of one output row (windows start at input row ``ih0``).
    Taps are the outer loops and output columns the inner one, so the compare-and-select runs over a
    contiguous output row (vectorisable) while every window still sees its taps in window order:
    strict '>' keeps the first of equal maxima, a NaN always takes over, and the first sample
    inside the input is taken even when it is -inf (PyTorch's rules).  -1 marks an empty window."""
    in_h, in_w = plane.shape
    out_w = best_row.shape[0]
    best_row[:] = -np.inf
    index_row[:] = -1
    for r in range(kernel_h):
        ih = ih0 + r * dilation_h
        if ih < 0 or ih >= in_h:
            continue
        in_row = plane[ih]
        for s in range(kernel_w):
            offset = s * dilation_w - pad_w
            lo, hi = valid_output_range(offset, stride_w, in_w, out_w)
            for ow in range(lo, hi):
                iw = ow * stride_w + offset
                value = in_row[iw]
                if index_row[ow] < 0 or value > best_row[ow] or np.isnan(value):
                    best_row[ow] = value
                    index_row[ow] = ih * in_w + iw


@njit_parallel
def _max_pool_kernel(x, out, indices, want_indices, kernel_h, kernel_w, stride_h, stride_w,
                     pad_h, pad_w, dilation_h, dilation_w):
    batch, channels = x.shape[0], x.shape[1]
    out_h, out_w = out.shape[2], out.shape[3]
    for task in prange(batch * channels * out_h):
        oh = task % out_h
        c = (task // out_h) % channels
        n = task // (out_h * channels)
        index_row = np.empty(out_w, dtype=np.int64)
        _row_max(x[n, c], oh * stride_h - pad_h, pad_w, kernel_h, kernel_w, stride_w, dilation_h,
                 dilation_w, out[n, c, oh], index_row)
        if want_indices:
            indices[n, c, oh, :] = index_row


@njit_parallel
def _max_pool_backward_kernel(grad_out, x, grad_in, kernel_h, kernel_w, stride_h, stride_w,
                              pad_h, pad_w, dilation_h, dilation_w, split_rows):
    """grad_in (zeroed by the caller) += grad_out routed to each window's argmax (recomputed)."""
    batch, channels, in_h, in_w = x.shape
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    rows_per_task = 1 if split_rows else out_h
    tasks_per_plane = out_h // rows_per_task
    for task in prange(batch * channels * tasks_per_plane):
        first_row = (task % tasks_per_plane) * rows_per_task
        c = (task // tasks_per_plane) % channels
        n = task // (tasks_per_plane * channels)
        plane = x[n, c]
        grad_plane = grad_in[n, c].reshape(in_h * in_w)
        best_row = np.empty(out_w, dtype=x.dtype)
        index_row = np.empty(out_w, dtype=np.int64)
        for oh in range(first_row, first_row + rows_per_task):
            _row_max(plane, oh * stride_h - pad_h, pad_w, kernel_h, kernel_w, stride_w,
                     dilation_h, dilation_w, best_row, index_row)
            grad_row = grad_out[n, c, oh]
            for ow in range(out_w):
                if index_row[ow] >= 0:
                    grad_plane[index_row[ow]] += grad_row[ow]


@njit_parallel
def _avg_pool_kernel(x, out, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                     count_include_pad, divisor_override):
    """``divisor_override`` <= 0 means none.  Empty windows (entirely padding) give 0."""
    batch, channels, in_h, in_w = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for task in prange(batch * channels * out_h):
        oh = task % out_h
        c = (task // out_h) % channels
        n = task // (out_h * channels)
        plane = x[n, c]
        row_start, row_end, padded_rows = _window_bounds(oh, stride_h, pad_h, kernel_h, in_h)
        for ow in range(out_w):
            col_start, col_end, padded_cols = _window_bounds(ow, stride_w, pad_w, kernel_w, in_w)
            if row_start >= row_end or col_start >= col_end:
                out[n, c, oh, ow] = 0
                continue
            total = plane.dtype.type(0)
            for ih in range(row_start, row_end):
                for iw in range(col_start, col_end):
                    total += plane[ih, iw]
            if divisor_override > 0:
                divisor = divisor_override
            elif count_include_pad:
                divisor = padded_rows * padded_cols
            else:
                divisor = (row_end - row_start) * (col_end - col_start)
            out[n, c, oh, ow] = total / plane.dtype.type(divisor)


@njit_parallel
def _avg_pool_backward_kernel(grad_out, grad_in, kernel_h, kernel_w, stride_h, stride_w,
                              pad_h, pad_w, count_include_pad, divisor_override, split_rows):
    """grad_in (zeroed by the caller) += grad_out / divisor spread uniformly over each window."""
    batch, channels, in_h, in_w = grad_in.shape
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    rows_per_task = 1 if split_rows else out_h
    tasks_per_plane = out_h // rows_per_task
    for task in prange(batch * channels * tasks_per_plane):
        first_row = (task % tasks_per_plane) * rows_per_task
        c = (task // tasks_per_plane) % channels
        n = task // (tasks_per_plane * channels)
        grad_plane = grad_in[n, c]
        for oh in range(first_row, first_row + rows_per_task):
            row_start, row_end, padded_rows = _window_bounds(oh, stride_h, pad_h, kernel_h, in_h)
            for ow in range(out_w):
                col_start, col_end, padded_cols = _window_bounds(ow, stride_w, pad_w, kernel_w,
                                                                 in_w)
                if row_start >= row_end or col_start >= col_end:
                    continue
                if divisor_override > 0:
                    divisor = divisor_override
                elif count_include_pad:
                    divisor = padded_rows * padded_cols
                else:
                    divisor = (row_end - row_start) * (col_end - col_start)
                share = grad_out[n, c, oh, ow] / grad_plane.dtype.type(divisor)
                for ih in range(row_start, row_end):
                    for iw in range(col_start, col_end):
                        grad_plane[ih, iw] += share


@njit_parallel
def _lp_pool_kernel(x, out, norm_type, inverse, window, kernel_h, kernel_w, stride_h, stride_w):
    """PyTorch's formula: ``(avg_pool(x ** p) * (kh * kw)) ** (1 / p)``, where the average divides
    by the window clipped to the input (so a ceil_mode edge window is rescaled, not a plain sum)."""
    batch, channels, in_h, in_w = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for task in prange(batch * channels * out_h):
        oh = task % out_h
        c = (task // out_h) % channels
        n = task // (out_h * channels)
        plane = x[n, c]
        row_start, row_end, padded_rows = _window_bounds(oh, stride_h, 0, kernel_h, in_h)
        for ow in range(out_w):
            col_start, col_end, padded_cols = _window_bounds(ow, stride_w, 0, kernel_w, in_w)
            total = plane.dtype.type(0)
            for ih in range(row_start, row_end):
                for iw in range(col_start, col_end):
                    total += plane[ih, iw] ** norm_type
            mean = total / plane.dtype.type(padded_rows * padded_cols)
            out[n, c, oh, ow] = (mean * window) ** inverse


@njit_parallel
def _lp_pool_backward_kernel(grad_out, x, grad_in, norm_type, inverse, window, kernel_h, kernel_w,
                             stride_h, stride_w, split_rows):
    """Chain rule through ``(mean * K) ** (1/p)`` and ``mean = sum(x ** p) / count``; a window whose
    mean is exactly 0 gets zero gradient (PyTorch's relu in the formula masks it)."""
    batch, channels, in_h, in_w = x.shape
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    rows_per_task = 1 if split_rows else out_h
    tasks_per_plane = out_h // rows_per_task
    for task in prange(batch * channels * tasks_per_plane):
        first_row = (task % tasks_per_plane) * rows_per_task
        c = (task // tasks_per_plane) % channels
        n = task // (tasks_per_plane * channels)
        plane = x[n, c]
        grad_plane = grad_in[n, c]
        for oh in range(first_row, first_row + rows_per_task):
            row_start, row_end, padded_rows = _window_bounds(oh, stride_h, 0, kernel_h, in_h)
            for ow in range(out_w):
                col_start, col_end, padded_cols = _window_bounds(ow, stride_w, 0, kernel_w, in_w)
                count = plane.dtype.type(padded_rows * padded_cols)
                total = plane.dtype.type(0)
                for ih in range(row_start, row_end):
                    for iw in range(col_start, col_end):
                        total += plane[ih, iw] ** norm_type
                mean = total / count
                if mean == 0:
                    continue
                grad_mean = (grad_out[n, c, oh, ow] * inverse
                             * (mean * window) ** (inverse - 1) * window)
                scale = grad_mean / count * norm_type
                for ih in range(row_start, row_end):
                    for iw in range(col_start, col_end):
                        grad_plane[ih, iw] += scale * plane[ih, iw] ** (norm_type - 1)


# --- public API -------------------------------------------------------------------------------
def _grad_output(grad_output, params, batched, x):
    """Validate grad_output's shape against the forward output; return it and the input in one
    compute dtype, as (N, C, H', W') C-contiguous arrays."""
    grad = as_array(grad_output, "grad_output")
    expected = params.output_shape if batched else params.output_shape[1:]
    if grad.shape != expected:
        raise ValueError(
            f"grad_output has shape {grad.shape}, but the pooling output for input of shape "
            f"{params.input_shape if batched else params.input_shape[1:]} is {expected}"
        )
    dtype = compute_dtype(x, grad)
    grad4 = grad if batched else grad[np.newaxis]
    return contiguous(grad4, dtype), contiguous(x, dtype), dtype


def _rows_independent(params, dilated_kernel_h) -> bool:
    """Output rows write disjoint input rows when vertically adjacent windows do not overlap."""
    return params.stride_h >= dilated_kernel_h


def _unbatch(array, batched):
    return array if batched else array[0]


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling with the semantics of ``torch.nn.functional.max_pool2d``.

    Parameters
    ----------
    input : array (N, C, H, W) or (C, H, W)
    kernel_size, stride, padding, dilation : int or (int, int)
        ``stride`` defaults to ``kernel_size``; ``padding`` (treated as -inf) is at most half the
        kernel.
    ceil_mode : bool
        Round the output size up; the last window must start inside the input or left padding.
    return_indices : bool
        Also return the int64 flat index ``h * W + w`` of each maximum within its plane.

    Returns
    -------
    ndarray (N, C, H', W') or (C, H', W'), and the indices when asked.  NaN in a window wins; ties go
    to the first maximum in window order.
    """
    params, x, batched = make_pool_params(input, kernel_size, stride, padding, dilation, ceil_mode,
                                          op="max_pool2d")
    return _run_max_pool(params, x, batched, return_indices)


def _run_max_pool(params, x, batched, return_indices):
    """max_pool2d of the validated (N, C, H, W) ``x``."""
    if params.batch == 0:  # no samples: the (0, C, H', W') result, no kernel run (as PyTorch)
        out = np.empty(params.output_shape, dtype=params.dtype)
        return (out, np.empty(params.output_shape, dtype=np.int64)) if return_indices else out
    if _pool_tiles.applies(params):
        out, indices = _pool_tiles.max_pool(x, params, bool(return_indices))
        return (_unbatch(out, batched), _unbatch(indices, batched)) if return_indices else _unbatch(out, batched)
    out = np.empty(params.output_shape, dtype=params.dtype)
    indices = np.empty(params.output_shape if return_indices else (1, 1, 1, 1), dtype=np.int64)
    _max_pool_kernel(x, out, indices, bool(return_indices), params.kernel_h, params.kernel_w,
                     params.stride_h, params.stride_w, params.pad_h, params.pad_w,
                     params.dilation_h, params.dilation_w)
    if return_indices:
        return _unbatch(out, batched), _unbatch(indices, batched)
    return _unbatch(out, batched)


def max_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    """Gradient of :func:`max_pool2d` w.r.t. its input: each output gradient goes to its window's
    maximum (recomputed from ``input``; ties to the first, as PyTorch).  Same arguments as the
    forward; ``grad_output`` must have the forward output's shape."""
    params, x, batched = make_pool_params(input, kernel_size, stride, padding, dilation, ceil_mode,
                                          op="max_pool2d")
    return _run_max_pool_backward(grad_output, params, x, batched)


def _run_max_pool_backward(grad_output, params, x, batched):
    """max_pool2d_backward of the validated (N, C, H, W) ``x``; ``grad_output`` is checked here."""
    grad, x, dtype = _grad_output(grad_output, params, batched, x)
    if params.batch == 0:
        return np.zeros(params.input_shape, dtype=dtype)
    if _pool_tiles.applies(params):
        return _unbatch(_pool_tiles.max_pool_backward(grad, x, params, dtype), batched)
    grad_in = np.zeros(params.input_shape, dtype=dtype)
    dilated_h = params.dilation_h * (params.kernel_h - 1) + 1
    _max_pool_backward_kernel(grad, x, grad_in, params.kernel_h, params.kernel_w,
                              params.stride_h, params.stride_w, params.pad_h, params.pad_w,
                              params.dilation_h, params.dilation_w,
                              _rows_independent(params, dilated_h))
    return _unbatch(grad_in, batched)


def _check_divisor(divisor_override):
    if divisor_override is None:
        return 0
    if isinstance(divisor_override, (bool, np.bool_)) or not hasattr(divisor_override, "__index__"):
        raise TypeError(f"divisor_override must be a positive int or None, got {divisor_override!r}")
    if int(divisor_override) < 1:
        raise ValueError(f"divisor_override must be a positive int, got {divisor_override!r}")
    return int(divisor_override)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-D average pooling with the semantics of ``torch.nn.functional.avg_pool2d``.

    Parameters
    ----------
    input : array (N, C, H, W) or (C, H, W)
    kernel_size, stride, padding : int or (int, int)
        ``stride`` defaults to ``kernel_size``; ``padding`` (zeros) is at most half the kernel.
    ceil_mode : bool
    count_include_pad : bool
        Divide by the window clipped to the padded input (True) or to the input (False).
    divisor_override : positive int or None
        Divide every window sum by this instead.

    Returns
    -------
    ndarray (N, C, H', W') or (C, H', W').
    """
    divisor = _check_divisor(divisor_override)
    params, x, batched = make_pool_params(input, kernel_size, stride, padding, 1, ceil_mode,
                                          op="avg_pool2d")
    return _run_avg_pool(params, x, batched, count_include_pad, divisor)


def _run_avg_pool(params, x, batched, count_include_pad, divisor):
    """avg_pool2d of the validated (N, C, H, W) ``x``; ``divisor`` 0 means no override."""
    if params.batch == 0:
        return np.empty(params.output_shape, dtype=params.dtype)
    if _pool_tiles.applies(params):
        return _unbatch(_pool_tiles.avg_pool(x, params, divisor), batched)
    out = np.empty(params.output_shape, dtype=params.dtype)
    _avg_pool_kernel(x, out, params.kernel_h, params.kernel_w, params.stride_h, params.stride_w,
                     params.pad_h, params.pad_w, bool(count_include_pad), divisor)
    return _unbatch(out, batched)


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Gradient of :func:`avg_pool2d` w.r.t. its input: each output gradient, divided by its
    window's divisor, is spread over the window (the "upsample" of the notes).  ``input`` supplies
    the shape and dtype."""
    divisor = _check_divisor(divisor_override)
    params, x, batched = make_pool_params(input, kernel_size, stride, padding, 1, ceil_mode,
                                          op="avg_pool2d")
    return _run_avg_pool_backward(grad_output, params, x, batched, count_include_pad, divisor)


def _run_avg_pool_backward(grad_output, params, x, batched, count_include_pad, divisor):
    """avg_pool2d_backward of the validated (N, C, H, W) ``x``; ``grad_output`` is checked here."""
    grad, x, dtype = _grad_output(grad_output, params, batched, x)
    if params.batch == 0:
        return np.zeros(params.input_shape, dtype=dtype)
    if _pool_tiles.applies(params):
        return _unbatch(_pool_tiles.avg_pool_backward(grad, params, dtype, divisor), batched)
    grad_in = np.zeros(params.input_shape, dtype=dtype)
    _avg_pool_backward_kernel(grad, grad_in, params.kernel_h, params.kernel_w, params.stride_h,
                              params.stride_w, params.pad_h, params.pad_w, bool(count_include_pad),
                              divisor, _rows_independent(params, params.kernel_h))
    return _unbatch(grad_in, batched)


def _check_norm_type(norm_type) -> float:
    if isinstance(norm_type, (bool, np.bool_)) or not isinstance(norm_type, (int, float, np.number)):
        raise TypeError(f"norm_type must be a real number, got {norm_type!r}")
    norm_type = float(norm_type)
    if norm_type == 0 or math.isnan(norm_type):
        raise ValueError(f"norm_type must be non-zero and not NaN, got {norm_type!r}")
    return norm_type


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling with the semantics of ``torch.nn.functional.lp_pool2d``:
    ``(sum over the window of x ** p) ** (1 / p)`` — ``norm_type=2`` is the L2-norm pooling of the
    notes.  ``norm_type=inf`` is max pooling of ``|x|`` and ``-inf`` min pooling of ``|x|``.

    With ``ceil_mode`` an edge window that hangs off the input is rescaled to the full window size,
    as PyTorch's formula ``(avg_pool2d(x ** p) * kh * kw) ** (1 / p)`` does.  Negative inputs with a
    non-integer ``p`` give NaN, as ``pow`` does.
    """
    norm_type = _check_norm_type(norm_type)
    if math.isinf(norm_type):
        magnitude = np.abs(as_array(input, "input"))
        if norm_type > 0:
            return max_pool2d(magnitude, kernel_size, stride, 0, 1, ceil_mode)
        return -max_pool2d(-magnitude, kernel_size, stride, 0, 1, ceil_mode)
    params, x, batched = make_pool_params(input, kernel_size, stride, 0, 1, ceil_mode,
                                          op="lp_pool2d")
    out = np.empty(params.output_shape, dtype=params.dtype)
    if params.batch == 0:
        return out
    typed = params.dtype.type
    _lp_pool_kernel(x, out, typed(norm_type), typed(1 / norm_type),
                    typed(params.kernel_h * params.kernel_w), params.kernel_h, params.kernel_w,
                    params.stride_h, params.stride_w)
    return _unbatch(out, batched)


def lp_pool2d_backward(grad_output, input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Gradient of :func:`lp_pool2d` w.r.t. its input (PyTorch autograd of its formula; windows
    whose power sum is exactly 0 get zero gradient)."""
    norm_type = _check_norm_type(norm_type)
    if math.isinf(norm_type):
        # d|x|/dx = sign(x); the max (or min) of |x| routes the gradient to one sample per window.
        x = as_array(input, "input")
        magnitude = np.abs(x) if norm_type > 0 else -np.abs(x)
        routed = max_pool2d_backward(grad_output, magnitude, kernel_size, stride, 0, 1, ceil_mode)
        return routed * np.sign(x).astype(routed.dtype, copy=False)
    params, x, batched = make_pool_params(input, kernel_size, stride, 0, 1, ceil_mode,
                                          op="lp_pool2d")
    grad, x, dtype = _grad_output(grad_output, params, batched, x)
    grad_in = np.zeros(params.input_shape, dtype=dtype)
    if params.batch == 0:
        return grad_in
    typed = np.dtype(dtype).type
    _lp_pool_backward_kernel(grad, x, grad_in, typed(norm_type), typed(1 / norm_type),
                             typed(params.kernel_h * params.kernel_w), params.kernel_h,
                             params.kernel_w, params.stride_h, params.stride_w,
                             _rows_independent(params, params.kernel_h))
    return _unbatch(grad_in, batched)


# --- 1-D pooling: the 2-D kernels on a plane of height 1 ------------------------------------------
# A (N, C, L) signal is a (N, C, 1, L) plane pooled with a 1 x k window, stride 1 and no padding in
# height: its single output row is the 1-D result, ceil_mode's rule applies to the length alone
# (the height keeps exactly one window) and a max index h * W + w is the position w in the signal.
def _pool1d_params(input, kernel_size, stride, padding, dilation, ceil_mode, op):
    """Validate 1-D pooling arguments as PyTorch does, in 1-D terms; return ``(params, x, batched)``
    with ``params`` the height-1 :class:`PoolParams` and ``x`` the (N, C, 1, L) C-contiguous input
    in the compute dtype."""
    x = as_array(input, "input")
    if x.ndim not in (2, 3):
        raise ValueError(f"{op}: input must be 3-D (N, C, L) or 2-D (C, L), got shape {x.shape}")
    batched = x.ndim == 3
    check_not_empty(x.shape, "input", batched, op)
    kernel = as_single(kernel_size, "kernel_size", minimum=1, op=op)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        stride = kernel
    else:
        stride = as_single(stride, "stride", minimum=1, op=op)
    pad = as_single(padding, "padding", minimum=0, op=op)
    dilation = as_single(dilation, "dilation", minimum=1, op=op)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
    if 2 * pad > kernel:
        raise ValueError(f"{op}: padding {pad} must be at most half of kernel_size {kernel}")
    length = x.shape[-1]
    out_length = pooled_size(length, kernel, stride, pad, dilation, bool(ceil_mode))
    if out_length < 1:
        raise ValueError(
            f"{op}: input of shape {x.shape} is too small for kernel_size {kernel} with padding "
            f"{pad} and dilation {dilation}: output length would be {out_length}"
        )
    batch, channels = x.shape[:2] if batched else (1, x.shape[0])
    params = PoolParams(
        batch=batch, channels=channels, in_h=1, in_w=length, kernel_h=1, kernel_w=kernel,
        stride_h=1, stride_w=stride, pad_h=0, pad_w=pad, dilation_h=1, dilation_w=dilation,
        ceil_mode=bool(ceil_mode), dtype=compute_dtype(x),
    )
    plane = x[..., np.newaxis, :]
    plane = plane if batched else plane[np.newaxis]
    check_copy(plane, params.dtype, "input")
    return params, contiguous(plane, params.dtype), batched


def _grad_plane(grad_output, params, batched):
    """1-D ``grad_output``, its shape checked against the forward output in 1-D terms, as the
    height-1 plane the 2-D backward kernels take."""
    grad = as_array(grad_output, "grad_output")
    expected = (params.batch, params.channels, params.out_w)
    expected = expected if batched else expected[1:]
    if grad.shape != expected:
        in_shape = (params.batch, params.channels, params.in_w)
        raise ValueError(
            f"grad_output has shape {grad.shape}, but the pooling output for input of shape "
            f"{in_shape if batched else in_shape[1:]} is {expected}"
        )
    return grad[..., np.newaxis, :]


def _squeeze(array):
    return array[..., 0, :]


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """1-D max pooling with the semantics of ``torch.nn.functional.max_pool1d``.

    Parameters
    ----------
    input : array (N, C, L) or (C, L)
    kernel_size, stride, padding, dilation : int or (int,)
        ``stride`` defaults to ``kernel_size``; ``padding`` (treated as -inf) is at most half the
        kernel.
    ceil_mode : bool
        Round the output length up; the last window must start inside the input or left padding.
    return_indices : bool
        Also return the int64 position of each maximum in the signal.

    Returns
    -------
    ndarray (N, C, L') or (C, L'), and the indices when asked: the rules of :func:`max_pool2d`.
    """
    params, x, batched = _pool1d_params(input, kernel_size, stride, padding, dilation, ceil_mode,
                                        "max_pool1d")
    result = _run_max_pool(params, x, batched, return_indices)
    if return_indices:
        return _squeeze(result[0]), _squeeze(result[1])
    return _squeeze(result)


def max_pool1d_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    """Gradient of :func:`max_pool1d` w.r.t. its input: each output gradient goes to its window's
    maximum (recomputed from ``input``; ties to the first, as PyTorch)."""
    params, x, batched = _pool1d_params(input, kernel_size, stride, padding, dilation, ceil_mode,
                                        "max_pool1d")
    return _squeeze(_run_max_pool_backward(_grad_plane(grad_output, params, batched), params, x,
                                           batched))


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """1-D average pooling with the semantics of ``torch.nn.functional.avg_pool1d``.

    Parameters
    ----------
    input : array (N, C, L) or (C, L)
    kernel_size, stride, padding : int or (int,)
        ``stride`` defaults to ``kernel_size``; ``padding`` (zeros) is at most half the kernel.
    ceil_mode : bool
    count_include_pad : bool
        Divide by the window clipped to the padded input (True) or to the input (False).

    Returns
    -------
    ndarray (N, C, L') or (C, L').
    """
    params, x, batched = _pool1d_params(input, kernel_size, stride, padding, 1, ceil_mode,
                                        "avg_pool1d")
    return _squeeze(_run_avg_pool(params, x, batched, count_include_pad, 0))


def avg_pool1d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of :func:`avg_pool1d` w.r.t. its input: each output gradient, divided by its
    window's divisor, is spread over the window.  ``input`` supplies the shape and dtype."""
    params, x, batched = _pool1d_params(input, kernel_size, stride, padding, 1, ceil_mode,
                                        "avg_pool1d")
    return _squeeze(_run_avg_pool_backward(_grad_plane(grad_output, params, batched), params, x,
                                           batched, count_include_pad, 0))
