"""Gradients of conv2d, and the transposed convolution (which is conv2d's input gradient).

For ``out = conv2d(x, w, b)`` with stride, padding, dilation and groups:

* ``grad_input`` is the *transpose* of the forward map: every output gradient is spread back over
  the window it was computed from, weighted by the taps.  Written as a convolution it is a "full"
  convolution of the stride-upsampled ``grad_output`` with the kernel rotated by 180 degrees (the
  flip the course notes' NumPy code forgets);
* ``grad_weight[k, c]`` correlates the input channel with the output gradient of channel ``k``;
* ``grad_bias[k]`` sums the output gradient of channel ``k`` over samples and positions.

Non-zero padding modes pad the input explicitly, so their input gradient is the gradient w.r.t. the
padded input folded back onto the samples the padding copied (the adjoint of the padding).
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from numba import prange

from . import dispatch
from ._config import njit_parallel
from ._padding import pad_nchw, unpad_gradient_nchw
from ._params import (
    ConvParams,
    Conv3dParams,
    as_array,
    as_pair,
    as_single,
    as_triple,
    check_copy,
    check_memory,
    check_not_empty,
    compute_dtype,
    contiguous,
    make_conv3d_params,
    make_conv_params,
    refuse_complex,
)
from .backends import BACKENDS, direct3d
from .backends._common import all_finite
from .conv import as_plane, length_padding

GRADIENT_NAMES = ("input", "weight", "bias")


@njit_parallel
def _sum_per_channel(grad3, grad_bias):
    """grad_bias[k] = sum over (n, p) of grad3[n, k, p].  The running sum is float64 even for
    float32 data: a bias gradient adds N*H'*W' terms, and a float32 accumulator would lose about
    log2(N*H'*W') bits; the pass is memory-bound, so the wider adder costs nothing measurable."""
    batch, channels, _ = grad3.shape
    for k in prange(channels):
        total = 0.0
        for n in range(batch):
            plane = grad3[n, k]
            partial = 0.0
            for p in range(plane.shape[0]):
                partial += plane[p]
            total += partial
        grad_bias[k] = total


@njit_parallel
def _add_channel_bias(out3, bias):
    batch, channels, _ = out3.shape
    for nk in prange(batch * channels):
        out3[nk // channels, nk % channels, :] += bias[nk % channels]


def _parse_needs(needs) -> tuple[bool, bool, bool]:
    names = (needs,) if isinstance(needs, str) else needs
    try:
        names = tuple(names)
    except TypeError:
        raise TypeError(f"needs must be a sequence of names from {GRADIENT_NAMES}, got {needs!r}")
    for name in names:
        if name not in GRADIENT_NAMES:
            raise ValueError(f"needs may only name {GRADIENT_NAMES}, got {name!r} in {needs!r}")
    return tuple(name in names for name in GRADIENT_NAMES)


def _run_decided(decisions, grad_out, x, w, params):
    """Run the backends ``dispatch.choose_gradients`` chose: together when they are the same."""
    input_decision, weight_decision = decisions
    if input_decision and weight_decision and input_decision.algorithm == weight_decision.algorithm:
        return _run_backward(input_decision.algorithm, grad_out, x, w, params, True, True)
    grad_input = grad_weight = None
    if input_decision:
        grad_input, _ = _run_backward(input_decision.algorithm, grad_out, x, w, params, True, False)
    if weight_decision:
        _, grad_weight = _run_backward(weight_decision.algorithm, grad_out, x, w, params, False, True)
    return grad_input, grad_weight


def _run_backward(backend, grad_out, x, w, params, need_input, need_weight):
    """(grad_input, grad_weight) from one backend; both at once where the backend shares work."""
    module = BACKENDS[backend]
    if need_input and need_weight and hasattr(module, "backward_both"):
        return module.backward_both(grad_out, x, w, params)
    grad_input = module.backward_input(grad_out, w, params) if need_input else None
    grad_weight = module.backward_weight(grad_out, x, params) if need_weight else None
    return grad_input, grad_weight


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    padding_mode="zeros", needs=("input", "weight", "bias"), algorithm="auto"):
    """Gradients of :func:`fastconv.conv2d` w.r.t. its input, weight and bias.

    Equal to PyTorch autograd of ``torch.nn.functional.conv2d`` for every argument combination
    ``conv2d`` accepts.

    Parameters
    ----------
    grad_output : array (N, K, H', W') or (K, H', W')
        Gradient of the loss w.r.t. the forward output; its shape must be exactly the forward output
        shape (ValueError otherwise).
    input, weight, stride, padding, dilation, groups, padding_mode
        The forward call's arguments (the bias value does not enter any gradient).
    needs : sequence of ``"input"``, ``"weight"``, ``"bias"``
        Which gradients to compute; the others come back as None and cost nothing.
    algorithm : ``"auto"``, ``"measure"`` or a backend name
        ``"direct"``, ``"im2col"`` or ``"fft"``; ``"separable"`` has no backward and defers to the
        best of the others; ``"measure"`` (or ``set_autotune(True)``) times the eligible backends
        once per problem (see :func:`fastconv.dispatch.choose_backward`).

    Returns
    -------
    (grad_input, grad_weight, grad_bias)
        Shaped like ``input``, ``weight`` and ``(K,)``; None where not in ``needs``.  dtype is the
        promotion of the three arrays (float32 stays float32).  A batch of zero samples gives an
        empty input gradient and zero weight and bias gradients, as PyTorch.
    """
    return _conv2d_backward(grad_output, input, weight, stride, padding, dilation, groups,
                            padding_mode, needs, algorithm)


def conv1d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    padding_mode="zeros", needs=("input", "weight", "bias"), algorithm="auto"):
    """Gradients of :func:`fastconv.conv1d` w.r.t. its input, weight and bias, equal to PyTorch
    autograd of ``torch.nn.functional.conv1d``.

    :func:`conv2d_backward` on a plane of height 1, as conv1d is conv2d with H = 1: every backend,
    padding mode and the dispatcher serve it unchanged.

    Parameters
    ----------
    grad_output : array (N, K, L') or (K, L'), exactly the forward output's shape
    input, weight, stride, padding, dilation, groups, padding_mode
        The forward call's arguments (:func:`fastconv.conv1d`'s forms).
    needs, algorithm : as :func:`conv2d_backward`

    Returns
    -------
    (grad_input, grad_weight, grad_bias)
        Shaped like ``input``, ``weight`` and ``(K,)``; None where not in ``needs``.
    """
    op = "conv1d_backward"
    x, w = as_plane(input, weight, op)
    grad = as_array(grad_output, "grad_output")
    grad_plane = grad[..., np.newaxis, :] if grad.ndim else grad
    grad_input, grad_weight, grad_bias = _conv2d_backward(
        grad_plane, x, w, (1, as_single(stride, "stride", minimum=1, op=op)),
        length_padding(padding, op), (1, as_single(dilation, "dilation", minimum=1, op=op)),
        groups, padding_mode, needs, algorithm, shown=_squeeze_height,
    )
    return (None if grad_input is None else grad_input[..., 0, :],
            None if grad_weight is None else grad_weight[:, :, 0, :], grad_bias)


def _squeeze_height(shape) -> tuple:
    """A height-1 plane's shape as a 1-D op's caller knows it: the height axis dropped."""
    return tuple(shape[:-2]) + tuple(shape[-1:])


def _conv2d_backward(grad_output, input, weight, stride, padding, dilation, groups, padding_mode,
                     needs, algorithm, shown=tuple):
    """conv2d_backward; ``shown`` turns the plane shapes of a shape error into the caller's (the
    1-D ops pass :func:`_squeeze_height`)."""
    dispatch.check_algorithm(algorithm)
    need_input, need_weight, need_bias = _parse_needs(needs)
    params, x, w, _, batched = make_conv_params(
        input, weight, None, stride, padding, dilation, groups, padding_mode
    )
    grad = as_array(grad_output, "grad_output")
    expected = params.output_shape if batched else params.output_shape[1:]
    if grad.shape != expected:
        raise ValueError(
            f"grad_output has shape {shown(grad.shape)}, but the forward output of input "
            f"{shown(np.shape(input))} and weight {shown(params.weight_shape)} is {shown(expected)}"
        )
    dtype = compute_dtype(x, w, grad)
    if params.batch == 0:
        # no samples: the input gradient is empty, the weight and bias gradients sums over nothing
        return (np.zeros(x.shape, dtype) if need_input else None,
                np.zeros(params.weight_shape, dtype) if need_weight else None,
                np.zeros(params.out_channels, dtype) if need_bias else None)
    if dtype != params.dtype:
        params = replace(params, dtype=dtype)
        x, w = contiguous(x, dtype), contiguous(w, dtype)
    grad = contiguous(grad if batched else grad[np.newaxis], dtype)

    grad_input = grad_weight = grad_bias = None
    if need_input or need_weight:
        pads = (params.pad_top, params.pad_bottom, params.pad_left, params.pad_right)
        # grad_weight multiplies grad_output by every padded zero: with NaN/Inf in grad_output the
        # definition gives NaN there (0 * inf), which only materialised zeros reproduce
        known_finite = {}  # id -> finite: the dispatcher's data checks reuse this scan
        if need_weight and any(pads) and params.padding_mode == "zeros":
            known_finite[id(grad)] = all_finite(grad)
        explicit = params.padding_mode != "zeros" or (
            need_weight and any(pads) and not known_finite[id(grad)]
        )
        if not explicit:
            zero_params, x_zero_form = params, x
        else:
            zero_params = params.explicitly_padded()
            x_zero_form = pad_nchw(x, pads, params.padding_mode) if need_weight else None
        decisions = dispatch.choose_gradients(
            zero_params, algorithm, grad, x_zero_form, w, need_input, need_weight,
            runner=lambda name, i, wt: _run_backward(name, grad, x_zero_form, w, zero_params, i, wt),
            known_finite=known_finite,
        )
        grad_input, grad_weight = _run_decided(decisions, grad, x_zero_form, w, zero_params)
        if need_input and explicit:
            grad_input = unpad_gradient_nchw(grad_input, (params.in_h, params.in_w), pads,
                                             params.padding_mode)
        if need_input and not batched:
            grad_input = grad_input[0]
    if need_bias:
        grad_bias = np.empty(params.out_channels, dtype=dtype)
        _sum_per_channel(grad.reshape(params.batch, params.out_channels, -1), grad_bias)
    return grad_input, grad_weight, grad_bias


def _transpose_channels(x, w, b, groups, in_channels, shown=tuple):
    """``(groups, out_channels)`` of a transposed convolution of ``x`` with ``w`` (C, K/groups,
    ...), after checking groups, the weight's input channels and the bias against them; ``shown``
    turns the plane shapes of a 1-D op's errors into its caller's."""
    if isinstance(groups, (bool, np.bool_)) or not hasattr(groups, "__index__"):
        raise TypeError(f"groups must be a positive int, got {groups!r}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups}")
    weight_in = w.shape[0]
    if weight_in != in_channels:
        raise ValueError(
            f"weight of shape {shown(w.shape)} expects {weight_in} input channels, but input of "
            f"shape {shown(x.shape)} has {in_channels}"
        )
    if in_channels % groups:
        raise ValueError(f"groups={groups} must divide the input channels ({in_channels})")
    out_channels = w.shape[1] * groups
    if b is not None and b.shape != (out_channels,):
        raise ValueError(
            f"bias must have shape ({out_channels},) to match weight {shown(w.shape)} with "
            f"groups={groups}, got {b.shape}"
        )
    return groups, out_channels


def _transpose_params(input, weight, bias, stride, padding, output_padding, groups, dilation,
                      op="conv_transpose2d", shown=tuple, axes=("height", "width")):
    """Validate conv_transpose2d's arguments; return the conv2d problem whose input gradient it is,
    with the arrays: ``(params, x, w, b, batched)``.  ``op``, ``shown`` (plane shape -> caller's
    shape) and ``axes`` word the errors of the 1-D op that runs on a height-1 plane."""
    x = as_array(input, "input")
    w = as_array(weight, "weight")
    b = None if bias is None else as_array(bias, "bias")
    if x.ndim not in (3, 4):
        raise ValueError(f"input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"weight must be 4-D (C, K/groups, R, S), got shape {w.shape}")
    check_not_empty(shown(x.shape), "input", x.ndim == 4, op)
    if w.size == 0:
        raise ValueError(f"{op}: weight must not be empty, got shape {shown(w.shape)}")
    batched = x.ndim == 4
    x4 = x if batched else x[np.newaxis]
    batch, in_channels, in_h, in_w = x4.shape
    kernel_h, kernel_w = w.shape[2:]
    groups, out_channels = _transpose_channels(x, w, b, groups, in_channels, shown)
    stride_h, stride_w = as_pair(stride, "stride", minimum=1)
    pad_h, pad_w = as_pair(padding, "padding", minimum=0)
    extra_h, extra_w = as_pair(output_padding, "output_padding", minimum=0)
    dilation_h, dilation_w = as_pair(dilation, "dilation", minimum=1)
    for extra, stride_, dilation_, axis in ((extra_h, stride_h, dilation_h, axes[0]),
                                            (extra_w, stride_w, dilation_w, axes[1])):
        if extra >= stride_ and extra >= dilation_:
            raise ValueError(
                f"output_padding must be smaller than either stride or dilation; in {axis} got "
                f"output_padding={extra}, stride={stride_}, dilation={dilation_}"
            )
    out_h = (in_h - 1) * stride_h - 2 * pad_h + dilation_h * (kernel_h - 1) + extra_h + 1
    out_w = (in_w - 1) * stride_w - 2 * pad_w + dilation_w * (kernel_w - 1) + extra_w + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"{op} output would be {'x'.join(map(str, shown((out_h, out_w))))} for input "
            f"{shown(x.shape)}, weight {shown(w.shape)}, stride {shown((stride_h, stride_w))}, "
            f"padding {shown((pad_h, pad_w))}, dilation {shown((dilation_h, dilation_w))}, "
            f"output_padding {shown((extra_h, extra_w))}"
        )
    dtype = compute_dtype(x, w, b)
    check_memory(batch * out_channels * out_h * out_w * dtype.itemsize,
                 f"{op}: the output of shape {shown((batch, out_channels, out_h, out_w))}")
    check_copy(x4, dtype, "input")
    check_copy(w, dtype, "weight")
    # The forward conv2d whose input gradient this is maps (N, K, out_h, out_w) -> (N, C, in_h,
    # in_w).  Its bottom/right padding is reduced by output_padding so that it produces exactly
    # in_h x in_w rows (the extra rows are ones no output reads; their gradient is zero).
    params = ConvParams(
        batch=batch, in_channels=out_channels, in_h=out_h, in_w=out_w, out_channels=in_channels,
        kernel_h=kernel_h, kernel_w=kernel_w, stride_h=stride_h, stride_w=stride_w,
        dilation_h=dilation_h, dilation_w=dilation_w, pad_top=pad_h, pad_bottom=pad_h - extra_h,
        pad_left=pad_w, pad_right=pad_w - extra_w, groups=groups, dtype=dtype,
    )
    assert params.out_h == in_h and params.out_w == in_w, "transposed geometry is inconsistent"
    return (params, contiguous(x4, dtype), contiguous(w, dtype),
            None if b is None else contiguous(b, dtype), batched)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 2-D convolution, with the semantics of ``torch.nn.functional.conv_transpose2d``.

    It is the input gradient of ``conv2d`` with the same stride, padding, dilation and groups: each
    input sample scatters ``input * weight`` into the output.  Output size per axis is
    ``(H - 1) * stride - 2 * padding + dilation * (R - 1) + output_padding + 1``.

    Parameters
    ----------
    input : array (N, C, H, W) or unbatched (C, H, W)
    weight : array (C, K/groups, R, S)
    bias : array (K,) or None
    stride, padding, output_padding, dilation : int or (int, int)
        ``output_padding`` (added on the bottom/right) must be smaller than stride or dilation.
    groups : int dividing C

    Returns
    -------
    ndarray (N, K, H_out, W_out) or (K, H_out, W_out), float32 or float64; (0, K, H_out, W_out)
    for a batch of zero samples.
    """
    return _run_transpose(*_transpose_params(
        input, weight, bias, stride, padding, output_padding, groups, dilation
    ))


def _run_transpose(params, x, w, b, batched):
    """conv_transpose2d of validated arrays: the chosen backend's input gradient plus the bias."""
    if params.batch == 0:  # its output is this conv2d's input: (0, K, H_out, W_out)
        return np.empty(params.input_shape, dtype=params.dtype)
    decision = dispatch.choose_backward(params, "auto", x, w, operation="backward:input",
                                        needs=(True, False))
    out = BACKENDS[decision.algorithm].backward_input(x, w, params)
    if b is not None:
        _add_channel_bias(out.reshape(params.batch, params.in_channels, -1), b)
    return out if batched else out[0]


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 1-D convolution, with the semantics of ``torch.nn.functional.conv_transpose1d``.

    :func:`conv_transpose2d` on a plane of height 1 (conv1d's input gradient, as conv1d is conv2d
    with H = 1).  Output length ``(L - 1) * stride - 2 * padding + dilation * (R - 1) +
    output_padding + 1``.

    Parameters
    ----------
    input : array (N, C, L) or unbatched (C, L)
    weight : array (C, K/groups, R)
    bias : array (K,) or None
    stride, padding, output_padding, dilation : int or (int,)
        ``output_padding`` (added on the right) must be smaller than stride or dilation.
    groups : int dividing C

    Returns
    -------
    ndarray (N, K, L_out) or (K, L_out), float32 or float64; (0, K, L_out) for a batch of zero
    samples.
    """
    op = "conv_transpose1d"
    x, w = as_plane(input, weight, op, "(C, K/groups, R)")
    out = _run_transpose(*_transpose_params(
        x, w, bias, (1, as_single(stride, "stride", minimum=1, op=op)),
        (0, as_single(padding, "padding", minimum=0, op=op)),
        (0, as_single(output_padding, "output_padding", minimum=0, op=op)), groups,
        (1, as_single(dilation, "dilation", minimum=1, op=op)),
        op=op, shown=_squeeze_height, axes=("height", "length"),
    ))
    return out[..., 0, :]


def conv3d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    padding_mode="zeros", needs=("input", "weight", "bias")):
    """Gradients of :func:`fastconv.conv3d` w.r.t. its input, weight and bias, as PyTorch autograd
    of ``torch.nn.functional.conv3d`` (the conventions of :func:`conv2d_backward`).

    Parameters
    ----------
    grad_output : array (N, K, D', H', W') or (K, D', H', W'), exactly the forward output's shape
    input, weight, stride, padding, dilation, groups, padding_mode
        The forward call's arguments.
    needs : sequence of ``"input"``, ``"weight"``, ``"bias"``
        Which gradients to compute; the others come back as None and cost nothing.

    Returns
    -------
    (grad_input, grad_weight, grad_bias)
        Shaped like ``input``, ``weight`` and ``(K,)``; None where not in ``needs``; dtype the
        promotion of the three arrays.  A batch of zero samples gives an empty input gradient and
        zero weight and bias gradients.
    """
    need_input, need_weight, need_bias = _parse_needs(needs)
    params, x, w, _, batched = make_conv3d_params(
        input, weight, None, stride, padding, dilation, groups, padding_mode
    )
    grad = as_array(grad_output, "grad_output")
    expected = params.output_shape if batched else params.output_shape[1:]
    if grad.shape != expected:
        raise ValueError(
            f"grad_output has shape {grad.shape}, but the forward output of input "
            f"{np.shape(input)} and weight {params.weight_shape} is {expected}"
        )
    dtype = compute_dtype(x, w, grad)
    if params.batch == 0:
        return (np.zeros(x.shape if batched else x.shape[1:], dtype) if need_input else None,
                np.zeros(params.weight_shape, dtype) if need_weight else None,
                np.zeros(params.out_channels, dtype) if need_bias else None)
    if dtype != params.dtype:
        params = replace(params, dtype=dtype)
        x, w = contiguous(x, dtype), contiguous(w, dtype)
    grad = contiguous(grad if batched else grad[np.newaxis], dtype)
    grad_input = direct3d.backward_input(grad, w, params) if need_input else None
    if need_input and not batched:
        grad_input = grad_input[0]
    grad_weight = direct3d.backward_weight(grad, x, params) if need_weight else None
    grad_bias = None
    if need_bias:
        grad_bias = np.empty(params.out_channels, dtype=dtype)
        _sum_per_channel(grad.reshape(params.batch, params.out_channels, -1), grad_bias)
    return grad_input, grad_weight, grad_bias


def _transpose3d_params(input, weight, bias, stride, padding, output_padding, groups, dilation):
    """Validate conv_transpose3d's arguments; return ``(params, x, w, b, batched, out_size)``:
    the conv3d problem whose input gradient it is, the arrays, and the output's (D, H, W).

    As in 2-D, the forward conv3d pads by ``padding`` in front and ``padding - output_padding``
    behind.  Where output_padding exceeds padding that is negative: the last ``output_padding -
    padding`` output positions are then ones no forward output reads, so the conv3d problem is
    posed on the input without them (``params.in_size``) and they are zero-filled afterwards."""
    op = "conv_transpose3d"
    refuse_complex(op, input=input, weight=weight, bias=bias)
    x = as_array(input, "input")
    w = as_array(weight, "weight")
    b = None if bias is None else as_array(bias, "bias")
    if x.ndim not in (4, 5):
        raise ValueError(
            f"{op}: input must be 5-D (N, C, D, H, W) or 4-D (C, D, H, W), got shape {x.shape}"
        )
    if w.ndim != 5:
        raise ValueError(f"{op}: weight must be 5-D (C, K/groups, T, R, S), got shape {w.shape}")
    batched = x.ndim == 5
    check_not_empty(x.shape, "input", batched, op)
    if w.size == 0:
        raise ValueError(f"{op}: weight must not be empty, got shape {w.shape}")
    x5 = x if batched else x[np.newaxis]
    batch, in_channels = x5.shape[:2]
    in_size = x5.shape[2:]
    kernel = w.shape[2:]
    groups, out_channels = _transpose_channels(x, w, b, groups, in_channels)
    stride = as_triple(stride, "stride", minimum=1)
    pads = as_triple(padding, "padding", minimum=0)
    extras = as_triple(output_padding, "output_padding", minimum=0)
    dilation = as_triple(dilation, "dilation", minimum=1)
    for extra, stride_, dilation_, axis in zip(extras, stride, dilation,
                                               ("depth", "height", "width")):
        if extra >= stride_ and extra >= dilation_:
            raise ValueError(
                f"output_padding must be smaller than either stride or dilation; in {axis} got "
                f"output_padding={extra}, stride={stride_}, dilation={dilation_}"
            )
    out_size = tuple((size - 1) * s - 2 * p + d * (k - 1) + e + 1
                     for size, s, p, d, k, e in zip(in_size, stride, pads, dilation, kernel, extras))
    if min(out_size) < 1:
        raise ValueError(
            f"{op} output would be {'x'.join(map(str, out_size))} for input {x.shape}, weight "
            f"{w.shape}, stride {stride}, padding {pads}, dilation {dilation}, output_padding "
            f"{extras}"
        )
    dtype = compute_dtype(x, w, b)
    check_memory(batch * out_channels * math.prod(out_size) * dtype.itemsize,
                 f"{op}: the output of shape {(batch, out_channels) + out_size}")
    check_copy(x5, dtype, "input")
    check_copy(w, dtype, "weight")
    unread = tuple(max(e - p, 0) for e, p in zip(extras, pads))
    conv_pads = []
    for p, e in zip(pads, extras):
        conv_pads += [p, max(p - e, 0)]
    params = Conv3dParams(
        batch=batch, in_channels=out_channels,
        in_size=tuple(size - cut for size, cut in zip(out_size, unread)),
        out_channels=in_channels, kernel=tuple(kernel), stride=stride, dilation=dilation,
        pads=tuple(conv_pads), groups=groups, dtype=dtype,
    )
    assert params.out_size == tuple(in_size), "transposed geometry is inconsistent"
    return (params, contiguous(x5, dtype), contiguous(w, dtype),
            None if b is None else contiguous(b, dtype), batched, out_size)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 3-D convolution, with the semantics of ``torch.nn.functional.conv_transpose3d``.

    It is the input gradient of ``conv3d`` with the same stride, padding, dilation and groups,
    computed by :func:`fastconv.backends.direct3d.backward_input` (one stride-1 correlation per
    stride phase, no zeros inserted).  Output size per axis is ``(D - 1) * stride - 2 * padding +
    dilation * (T - 1) + output_padding + 1``.

    Parameters
    ----------
    input : array (N, C, D, H, W) or unbatched (C, D, H, W)
    weight : array (C, K/groups, T, R, S)
    bias : array (K,) or None
    stride, padding, output_padding, dilation : int or (int, int, int)
        ``output_padding`` (added at the back/bottom/right) must be smaller than stride or
        dilation.
    groups : int dividing C

    Returns
    -------
    ndarray (N, K, D_out, H_out, W_out) or (K, D_out, H_out, W_out), float32 or float64;
    (0, K, D_out, H_out, W_out) for a batch of zero samples.
    """
    params, x, w, b, batched, out_size = _transpose3d_params(
        input, weight, bias, stride, padding, output_padding, groups, dilation
    )
    full_shape = (params.batch, params.in_channels) + out_size
    if params.batch == 0:
        return np.empty(full_shape, dtype=params.dtype)
    out = direct3d.backward_input(x, w, params)
    if tuple(params.in_size) != out_size:
        # output_padding beyond padding: the positions past the conv3d problem's input get no
        # product, only the bias
        full = np.zeros(full_shape, dtype=params.dtype)
        full[(slice(None), slice(None)) + tuple(slice(0, size) for size in params.in_size)] = out
        out = full
    if b is not None:
        _add_channel_bias(out.reshape(params.batch, params.in_channels, -1), b)
    return out if batched else out[0]
