"""conv2d, conv1d, conv3d and sepconv2d: validate -> pad (non-zero modes) -> dispatch -> backend."""
from __future__ import annotations

import numpy as np

from . import _fast_paths, dispatch
from ._padding import pad_nchw
from ._params import as_array, as_single, make_conv3d_params, make_conv_params
from .backends import BACKENDS, direct3d, separable


def empty_batch_output(params) -> np.ndarray:
    """The result of a batch of zero samples: (0, K, H', W'), no kernel run (as PyTorch)."""
    return np.empty(params.output_shape, dtype=params.dtype)


def has_padding(params) -> bool:
    return any((params.pad_top, params.pad_bottom, params.pad_left, params.pad_right))


def _zero_padding_form(params, x, w=None):
    """Materialise a non-zero padding mode so that every backend sees implicit zeros only.

    Zero padding is materialised too when the weight ``w`` holds NaN or Inf: the definition
    multiplies every padded zero by its tap, and ``0 * inf`` is NaN (as in PyTorch), but the
    kernels skip implicit padding.  The check reads the weight only, which is small.
    """
    if params.padding_mode == "zeros" and (
        w is None or not has_padding(params) or np.isfinite(w).all()
    ):
        return params, x
    pads = (params.pad_top, params.pad_bottom, params.pad_left, params.pad_right)
    return params.explicitly_padded(), pad_nchw(x, pads, params.padding_mode)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", algorithm="auto"):
    """2-D convolution with exactly the semantics of ``torch.nn.functional.conv2d``.

    It is a cross-correlation (no kernel flip), as deep-learning libraries define convolution.

    Parameters
    ----------
    input : array (N, C, H, W) or unbatched (C, H, W)
    weight : array (K, C/groups, R, S)
    bias : array (K,) or None
    stride, dilation : int or (int, int), positive
    padding : int, (int, int), ``"valid"`` or ``"same"`` (stride 1 only; an odd total puts the extra
        row/column at the bottom/right)
    groups : int dividing C and K (``groups == C`` is depthwise)
    padding_mode : ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``
    algorithm : ``"auto"`` or a name from :func:`fastconv.algorithms`

    Returns
    -------
    ndarray (N, K, H', W') or (K, H', W'), C-contiguous, float32 or float64 (see the README's dtype
    rules).  Inputs are never modified.  A batch of zero samples (N = 0) gives the (0, K, H', W')
    result, as PyTorch; zero channels or an empty plane are a ValueError.
    """
    out = _fast_paths.conv2d(input, weight, bias, stride, padding, dilation, groups, padding_mode,
                             algorithm)
    if out is not None:
        return out
    dispatch.check_algorithm(algorithm)
    params, x, w, b, batched = make_conv_params(
        input, weight, bias, stride, padding, dilation, groups, padding_mode
    )
    if params.batch == 0:
        return empty_batch_output(params)
    params, x = _zero_padding_form(params, x, w)
    decision = dispatch.choose_forward(params, x, w, algorithm)
    if decision.algorithm == "separable":
        out = separable.forward(x, w, b, params, factors=decision.factors)
    else:
        out = BACKENDS[decision.algorithm].forward(x, w, b, params)
    return out if batched else out[0]


def length_padding(padding, op: str):
    """A 1-D op's padding as the (height, length) padding of its height-1 plane: ``"valid"`` and
    ``"same"`` pass through for conv2d to resolve (they leave the height unpadded)."""
    if isinstance(padding, str):
        return padding
    return (0, as_single(padding, "padding", minimum=0, op=op))


def as_plane(input, weight, op: str, weight_layout: str = "(K, C/groups, R)"):
    """A 1-D op's input (N, C, L) or (C, L) and weight (3-D) as views with a height-1 axis: the
    layout every 2-D kernel reads (a height-1 plane is the same contiguous row)."""
    x = as_array(input, "input")
    w = as_array(weight, "weight")
    if x.ndim not in (2, 3):
        raise ValueError(f"{op}: input must be 3-D (N, C, L) or 2-D (C, L), got shape {x.shape}")
    if w.ndim != 3:
        raise ValueError(f"{op}: weight must be 3-D {weight_layout}, got shape {w.shape}")
    return x[..., np.newaxis, :], w[:, :, np.newaxis, :]


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", algorithm="auto"):
    """1-D convolution with exactly the semantics of ``torch.nn.functional.conv1d``.

    A thin layer over :func:`conv2d`: the signal is a plane of height 1 and the kernel a 1 x R
    row, so every backend, the dispatcher and conv2d's validation serve it unchanged (the
    flattened-plane direct kernels read a height-1 plane as the same contiguous rows).

    Parameters
    ----------
    input : array (N, C, L) or unbatched (C, L)
    weight : array (K, C/groups, R)
    bias : array (K,) or None
    stride, dilation : int or (int,), positive
    padding : int, (int,), ``"valid"`` or ``"same"``
    groups, padding_mode, algorithm : as :func:`conv2d`

    Returns
    -------
    ndarray (N, K, L') or (K, L'), C-contiguous.
    """
    x, w = as_plane(input, weight, "conv1d")
    out = conv2d(x, w, bias, (1, as_single(stride, "stride", minimum=1, op="conv1d")),
                 length_padding(padding, "conv1d"),
                 (1, as_single(dilation, "dilation", minimum=1, op="conv1d")), groups,
                 padding_mode=padding_mode, algorithm=algorithm)
    return out[..., 0, :]


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros"):
    """3-D convolution with exactly the semantics of ``torch.nn.functional.conv3d``.

    A cross-correlation over (depth, height, width), computed by the direct kernel of
    :mod:`fastconv.backends.direct3d` (no algorithm choice: there is one 3-D backend).

    Parameters
    ----------
    input : array (N, C, D, H, W) or unbatched (C, D, H, W)
    weight : array (K, C/groups, T, R, S)
    bias : array (K,) or None
    stride, dilation : int or (int, int, int), positive
    padding : int, (int, int, int), ``"valid"`` or ``"same"`` (stride 1 only; an odd total puts
        the extra plane/row/column at the back/bottom/right)
    groups : int dividing C and K
    padding_mode : ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"`` (the input is
        padded explicitly, then convolved without padding, as ``torch.nn.Conv3d`` does)

    Returns
    -------
    ndarray (N, K, D', H', W') or (K, D', H', W'), C-contiguous, float32 or float64 (the dtype
    rules of :func:`conv2d`).  Inputs are never modified; N = 0 gives an empty result.
    """
    params, x, w, b, batched = make_conv3d_params(
        input, weight, bias, stride, padding, dilation, groups, padding_mode
    )
    if params.batch == 0:
        return np.empty(params.output_shape, dtype=params.dtype)
    out = direct3d.forward(x, w, b, params)
    return out if batched else out[0]


def _as_factor(value, name, length_axis_name):
    factor = as_array(value, name)
    if factor.ndim not in (1, 3):
        raise ValueError(
            f"{name} must be 1-D ({length_axis_name},) — the same filter for every channel — or 3-D "
            f"(K, C/groups, {length_axis_name}), got shape {factor.shape}"
        )
    if factor.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {factor.shape}")
    return factor


def sepconv2d(input, col, row, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
              padding_mode="zeros"):
    """Separable 2-D convolution with the kernel given by its 1-D factors.

    Equivalent to ``conv2d(input, weight, ...)`` with ``weight[k, c] = outer(col[k, c], row[k, c])``.

    ``col`` (R,) and ``row`` (S,) as 1-D vectors filter every input channel independently with the
    same kernel (output has C channels; ``groups`` must be left at 1, it is implied to be C).
    ``col`` (K, C/groups, R) and ``row`` (K, C/groups, S) give one factor pair per (k, c).
    """
    col = _as_factor(col, "col", "R")
    row = _as_factor(row, "row", "S")
    if col.ndim != row.ndim:
        raise ValueError(f"col and row must both be 1-D or both 3-D, got {col.shape} and {row.shape}")
    x_probe = as_array(input, "input")
    if col.ndim == 1:
        if groups != 1:
            raise ValueError(
                "with 1-D col/row every channel is filtered independently (groups is implied to "
                f"be the channel count); got groups={groups!r}"
            )
        if x_probe.ndim not in (3, 4):
            raise ValueError(
                f"input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {x_probe.shape}"
            )
        channels = x_probe.shape[-3]
        col = np.broadcast_to(col, (channels, 1, col.shape[0]))
        row = np.broadcast_to(row, (channels, 1, row.shape[0]))
        groups = channels
    if col.shape[:2] != row.shape[:2]:
        raise ValueError(
            f"col {col.shape} and row {row.shape} must agree on (K, C/groups)"
        )
    # A stand-in weight of the right shape lets the one params layer validate everything.
    weight_shape = col.shape[:2] + (col.shape[2], row.shape[2])
    stand_in = np.lib.stride_tricks.as_strided(
        np.zeros(1, dtype=np.result_type(col, row)), weight_shape, (0, 0, 0, 0)
    )
    params, x, _, b, batched = make_conv_params(
        input, stand_in, bias, stride, padding, dilation, groups, padding_mode
    )
    if params.batch == 0:
        return empty_batch_output(params)
    params, x = _zero_padding_form(params, x)
    col = np.ascontiguousarray(col, dtype=params.dtype)
    row = np.ascontiguousarray(row, dtype=params.dtype)
    out = separable.forward_factors(x, col, row, b, params)
    return out if batched else out[0]
