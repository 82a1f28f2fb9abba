"""Repeated small calls in microseconds: a memo of everything a call's shapes decide.

People call ``correlate2d`` / ``convolve2d`` (and batch-1 ``conv2d``) in loops over tiles, frames and patches, where the
arithmetic takes a few microseconds and the general path's Python work (validating and normalising
every argument, building the params object, asking the dispatcher, packing weights, allocating
padded copies) took several times longer.  Everything but the data is a function of the call's
shapes, dtype and options, so it is computed once per distinct call and memoised here; a repeated
call checks only what could differ (types, dtype, layout) and runs one kernel.

A call takes this path only where its result is by construction the general path's:

* NumPy arrays of one native float dtype (no conversion, no copy), C-contiguous, 2-D;
* ``boundary="fill"`` with a zero ``fillvalue`` (the padding stays implicit);
* the dispatcher's choice for the shape is ``direct`` (data-independent: exact for any values,
  NaN and Inf included) — or ``algorithm="direct"`` was asked for;
* a per-task padded buffer costs little (see ``_plan_signal``).

``conv2d`` takes it under the same conditions for its arguments (zero padding mode, a weight of
the input's dtype and a bias of it or None, C-contiguous input; the choice ``direct`` or ``im2col``,
whose results do not depend on the data; with padding, a weight holding NaN or Inf takes the
general path, which materialises the padded zeros it multiplies).

Everything else (and the first call of each shape, which fills the memo) takes the general path;
the memo is dropped whenever the dispatcher's model changes, and keyed by the thread count.
"""
from __future__ import annotations

import threading
from typing import Callable, NamedTuple

import numpy as np

from . import dispatch
from ._config import get_num_threads, runs_serially
from ._params import make_conv_params, make_signal_params, signal_padding
from .backends import BACKENDS, _direct_blocked
from .backends._common import bias_or_zeros, read_only_view

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_MODES = ("full", "same", "valid")
# A per-task buffer re-reads kernel_h - 1 rows per task: take the fast path only while that is at
# most this share of the rows a task computes (otherwise the general path's one padded copy wins).
_MAX_EXTRA_ROW_SHARE = 0.25


class SignalPlan(NamedTuple):
    kernel: Callable
    x_shape: tuple  # in1 as (1, 1, H, W)
    out_shape: tuple  # (1, 1, H', W')
    dtype: np.dtype
    offsets: np.ndarray  # tap offsets in a task's buffer (reversed for convolution)
    bias: np.ndarray  # a zero
    pad_top: int
    pad_left: int
    kernel_h: int
    padded_w: int
    rows_per_task: int


_signal_plans: dict = {}
_lock = threading.Lock()
_NOT_FAST = None


_conv_plans: dict = {}


def forget() -> None:
    """Drop every memoised plan (the dispatcher calls this when its model changes)."""
    with _lock:
        _signal_plans.clear()
        _conv_plans.clear()


def signal(in1, in2, mode, boundary, fillvalue, algorithm, flip):
    """scipy's correlate2d (``flip=False``) / convolve2d (``flip=True``) on the fast path, or None
    when this call must take the general path."""
    if (type(in1) is not np.ndarray or type(in2) is not np.ndarray or type(mode) is not str
            or boundary != "fill" or type(fillvalue) not in (int, float) or fillvalue != 0
            or (algorithm != "auto" and algorithm != "direct")):
        return None
    dtype = in1.dtype
    if in2.dtype != dtype or in1.ndim != 2 or in2.ndim != 2 or not (
            in1.flags.c_contiguous and in2.flags.c_contiguous):
        return None
    key = (flip, mode, algorithm, in1.shape, in2.shape, dtype, get_num_threads())
    plan = _signal_plans.get(key, False)
    if plan is False:
        plan = _plan_signal(mode, algorithm, in1.shape, in2.shape, dtype, flip)
        with _lock:
            _signal_plans[key] = plan
    if plan is _NOT_FAST:
        return None
    if type(plan) is BlockedSignalPlan:
        return plan.run(in1, in2)
    out = np.empty(plan.out_shape, plan.dtype)
    plan.kernel(in1.reshape(plan.x_shape), in2.reshape(1, -1), plan.offsets, plan.bias, out,
                plan.pad_top, plan.pad_left, plan.kernel_h, plan.padded_w, plan.rows_per_task)
    return out[0, 0]


def _plan_signal(mode, algorithm, in_shape, kernel_shape, dtype, flip):
    """The plan of a fast call with these shapes, or _NOT_FAST (the general path then also raises
    whatever error the arguments deserve)."""
    if dtype not in _FLOATS or mode not in _MODES or 0 in in_shape or 0 in kernel_shape:
        return _NOT_FAST
    if mode == "valid" and not all(a >= b for a, b in zip(in_shape, kernel_shape)):
        return _NOT_FAST  # scipy's input swap (or its error): the general path
    pads = signal_padding(mode, in_shape, kernel_shape, flip)
    try:
        params = make_signal_params(in_shape, kernel_shape, pads, dtype)
    except ValueError:
        return _NOT_FAST
    if algorithm == "auto" and dispatch.signal_ranking(params)[0] != "direct":
        return _NOT_FAST
    kernel_h, kernel_w = kernel_shape
    out_h, out_w = params.out_h, params.out_w
    serial = runs_serially(out_h * out_w * kernel_h * kernel_w)
    rows = (_direct_blocked.serial_rows_per_task(out_h, params.padded_w, dtype.itemsize) if serial
            else _direct_blocked.rows_per_task(out_h, params.padded_w, dtype.itemsize, 1,
                                               channels=1))
    if not serial and kernel_h - 1 > _MAX_EXTRA_ROW_SHARE * rows:
        return _blocked_signal_plan(params, in_shape, kernel_shape, flip)
    offsets = _direct_blocked.tap_offsets(1, kernel_h, kernel_w, (1, 1), (1, 1), rows, out_w)
    if flip:  # convolution: the kernel reversed is the tap order reversed
        offsets = _read_only(np.ascontiguousarray(offsets[::-1]))
    return SignalPlan(
        kernel=_direct_blocked.one_channel_padding_kernel(serial),
        x_shape=(1, 1) + tuple(in_shape), out_shape=(1, 1, out_h, out_w), dtype=dtype,
        offsets=offsets, bias=_read_only(np.zeros(1, dtype)), pad_top=pads[0], pad_left=pads[2],
        kernel_h=kernel_h, padded_w=params.padded_w, rows_per_task=rows,
    )


class BlockedSignalPlan(NamedTuple):
    run: Callable  # run(in1, in2) -> the 2-D result


def _blocked_signal_plan(params, in_shape, kernel_shape, flip):
    """A plane whose tasks are too short for per-task padding: the direct backend's kernels with
    one shared padded copy, as the general path runs them, without its per-call Python work."""
    forward = BACKENDS["direct"].forward
    x_shape = (1, 1) + tuple(in_shape)
    w_shape = (1, 1) + tuple(kernel_shape)

    def run(in1, in2):
        kernel = np.ascontiguousarray(in2[::-1, ::-1]) if flip else in2
        return forward(in1.reshape(x_shape), kernel.reshape(w_shape), None, params)[0, 0]

    return BlockedSignalPlan(run)


class ConvPlan(NamedTuple):
    run: Callable  # run(x (N, C, H, W), weight, bias or None) -> the output
    batched: bool
    padded: bool  # zero padding present: NaN/Inf weights take the general path


def conv2d(input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm):
    """``fastconv.conv2d`` on the fast path, or None when this call must take the general path."""
    if (type(input) is not np.ndarray or type(weight) is not np.ndarray
            or not (bias is None or type(bias) is np.ndarray) or padding_mode != "zeros"
            or dispatch.get_autotune()):
        return None
    dtype = input.dtype
    if weight.dtype != dtype or not input.flags.c_contiguous or not weight.flags.c_contiguous or (
            bias is not None and (bias.dtype != dtype or not bias.flags.c_contiguous)):
        return None
    key = (input.shape, weight.shape, None if bias is None else bias.shape, stride, padding,
           dilation, groups, algorithm, dtype, get_num_threads())
    try:
        plan = _conv_plans.get(key, False)
    except TypeError:  # an unhashable argument (a list): the general path validates it
        return None
    if plan is False:
        plan = _plan_conv(input, weight, bias, stride, padding, dilation, groups, algorithm)
        with _lock:
            _conv_plans[key] = plan
    if plan is _NOT_FAST or (plan.padded and not np.isfinite(weight).all()):
        return None
    x = input if plan.batched else input[np.newaxis]
    out = plan.run(x, weight, bias)
    return out if plan.batched else out[0]


def _plan_conv(input, weight, bias, stride, padding, dilation, groups, algorithm):
    if input.dtype not in _FLOATS or algorithm not in ("auto", "direct", "im2col") or (
            input.size == 0):
        return _NOT_FAST
    try:
        params, _, _, _, batched = make_conv_params(input, weight, bias, stride, padding, dilation,
                                                    groups, "zeros")
    except (TypeError, ValueError):
        return _NOT_FAST
    if algorithm == "auto":
        algorithm = dispatch.plan(params).ranking[0][0]
        if algorithm not in ("direct", "im2col"):  # choices that look at the data
            return _NOT_FAST
    pads = (params.pad_top, params.pad_bottom, params.pad_left, params.pad_right)
    run = _one_channel_run(params, pads) if algorithm == "direct" else None
    if run is None:
        def run(x, weight, bias, forward=BACKENDS[algorithm].forward):
            return forward(x, weight, bias, params)
    return ConvPlan(run, batched, any(pads))


def _one_channel_run(params, pads):
    """For single images and depthwise layers at stride 1 (one input and one output channel per
    group) that the direct backend runs on its padding kernel — serial problems, or stacks of
    planes — the call straight to that kernel with everything but the data precomputed; else None.
    The same kernel and arguments as ``_direct_blocked.correlate`` chooses, without its per-call
    layout and offset work."""
    one_channel = params.out_channels == params.groups and params.in_channels_per_group == 1
    unit = (params.stride_h, params.stride_w) == (params.dilation_h, params.dilation_w) == (1, 1)
    if not (one_channel and unit and min(pads) >= 0):
        return None
    out_h, out_w = params.out_h, params.out_w
    serial = runs_serially(params.batch * params.out_channels * out_h * out_w
                           * params.kernel_h * params.kernel_w)
    if not _direct_blocked.pads_own_rows(params.batch, params.groups, (1, 1), (1, 1), pads, serial):
        return None
    layout = _direct_blocked.plane_layout(out_h, out_w, params.kernel_h, params.kernel_w,
                                          (1, 1), (1, 1))
    rows = (_direct_blocked.serial_rows_per_task(out_h, layout.plane_w, params.dtype.itemsize)
            if serial else _direct_blocked.rows_per_task(
                out_h, layout.plane_w, params.dtype.itemsize, params.batch * params.groups,
                channels=1))
    offsets = _direct_blocked.tap_offsets(1, params.kernel_h, params.kernel_w, (1, 1), (1, 1),
                                          rows, out_w)
    kernel = _direct_blocked.one_channel_padding_kernel(serial)
    out_shape = (params.batch, params.out_channels, out_h, out_w)
    zero_bias = bias_or_zeros(None, params.out_channels, params.dtype)
    groups, dtype = params.groups, params.dtype

    def run(x, weight, bias):
        out = np.empty(out_shape, dtype)
        b = zero_bias if bias is None else read_only_view(bias)  # read-only, as every kernel's
        kernel(x, weight.reshape(groups, -1), offsets, b, out, pads[0], pads[2], params.kernel_h,
               layout.plane_w, rows)
        return out

    return run


dispatch.on_model_change(forget)


def _read_only(array):
    array.flags.writeable = False
    return array
