"""Unshared (locally connected) and tiled convolution, forward and backward.

Both operators have conv2d's local connectivity — output ``(oh, ow)`` sees the ``R x S`` window of
every input channel starting at ``(oh * stride_h - pad_top, ow * stride_w - pad_left)`` — but not its
weight sharing:

* **tiled convolution** (weight ``(tH, tW, K, C, R, S)``) uses the kernel bank
  ``weight[oh % tH, ow % tW]`` at output ``(oh, ow)``: kernels cycle with period ``(tH, tW)``;
* **unshared / locally connected convolution** (weight ``(out_h, out_w, K, C, R, S)``) uses a
  different kernel bank at every output position.  It *is* tiled convolution with tiles equal to the
  output size, and is computed by the same kernels.

``tH = tW = 1`` is ordinary conv2d (cross-correlation, PyTorch semantics, groups = dilation = 1).

Bias is either shared, shape ``(K,)`` as in conv2d, or one per tile, shape ``(tH, tW, K)`` (for
local_conv2d ``(out_h, out_w, K)``, the "untied" bias of Keras' LocallyConnected2D).

Kernel design
-------------
There is no weight reuse across output positions, only across the batch: at one position the output
is the small matrix product ``patches (N, C R S) @ weight[tile] (K, C R S)^T``.  So every kernel
works position by position: gather the ``N x CRS`` patch matrix once (zeros where the window hangs
over the padding — padding is never materialised), then run dot products over the contiguous ``CRS``
axis, which LLVM vectorises.  The weight of a position is read once per call and reused across the
whole batch while it sits in L1.

* forward: one parallel task per output position (no two tasks write the same output element);
* grad_weight: one task per (tile, share of that tile's output rows); when there are fewer tiles than
  threads, the rows of a tile are split over private accumulators summed at the end (bounded by the
  workspace limit), so ``tH = tW = 1`` still runs in parallel;
* grad_input: windows of neighbouring positions overlap in the input, so tasks are split by
  (batch block, channel block), which never collide, and each scatters its share of every position
  (batch blocks first: they keep the dot products over the full C R S row).
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np
from numba import prange

from ._config import get_num_threads, get_workspace_limit, njit_kernel, njit_parallel
from ._params import (
    ConvParams,
    as_array,
    as_pair,
    check_fits,
    check_not_empty,
    compute_dtype,
    contiguous,
    resolve_padding,
)

GRADIENT_NAMES = ("input", "weight", "bias")


# --- parameters ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TiledConvParams:
    """Geometry of one tiled/local convolution call: conv2d's geometry plus the tile period."""

    conv: ConvParams  # groups = dilation = 1; weight_shape there is one tile's (K, C, R, S)
    tile_h: int
    tile_w: int
    bias_kind: str  # "none", "shared" (K,) or "tiled" (tH, tW, K)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.tile_h, self.tile_w) + self.conv.weight_shape

    @property
    def bias_shape(self) -> tuple[int, ...] | None:
        if self.bias_kind == "shared":
            return (self.conv.out_channels,)
        if self.bias_kind == "tiled":
            return (self.tile_h, self.tile_w, self.conv.out_channels)
        return None

    @property
    def depth(self) -> int:
        """Length of one flattened receptive field: C R S."""
        return self.conv.in_channels * self.conv.kernel_h * self.conv.kernel_w


def _make_tiled_params(input, weight, bias, stride, padding, *, local: bool, op: str):
    """Validate the arguments of tiled_conv2d / local_conv2d (and their backward).

    Returns ``(params, x (N, C, H, W), w (tH, tW, K, C R S), tile_bias (tH, tW, K) or None, batched)``,
    all C-contiguous in the compute dtype.
    """
    x = as_array(input, "input")
    w = as_array(weight, "weight")
    b = None if bias is None else as_array(bias, "bias")
    weight_layout = "(out_h, out_w, K, C, R, S)" if local else "(tH, tW, K, C, R, S)"
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {x.shape}")
    if w.ndim != 6:
        raise ValueError(f"{op}: weight must be 6-D {weight_layout}, got shape {w.shape}")
    check_not_empty(x.shape, "input", x.ndim == 4, op)
    if w.size == 0:
        raise ValueError(f"{op}: weight must not be empty, got shape {w.shape}")
    batched = x.ndim == 4
    x4 = x if batched else x[np.newaxis]
    batch, in_channels, in_h, in_w = x4.shape
    tile_h, tile_w, out_channels, weight_channels, kernel_h, kernel_w = w.shape
    if weight_channels != in_channels:
        raise ValueError(
            f"{op}: weight of shape {w.shape} {weight_layout} expects {weight_channels} input "
            f"channels, but input of shape {x.shape} has {in_channels}"
        )
    stride_hw = as_pair(stride, "stride", minimum=1)
    pads = resolve_padding(padding, kernel_h, kernel_w, (1, 1), stride_hw)
    conv = ConvParams(
        batch=batch, in_channels=in_channels, in_h=in_h, in_w=in_w,
        out_channels=out_channels, kernel_h=kernel_h, kernel_w=kernel_w,
        stride_h=stride_hw[0], stride_w=stride_hw[1],
        pad_top=pads[0], pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3],
        dtype=compute_dtype(x, w, b), has_bias=b is not None,
    )
    check_fits(conv)
    if local:
        if (tile_h, tile_w) != (conv.out_h, conv.out_w):
            raise ValueError(
                f"{op}: weight of shape {w.shape} must start with the output size "
                f"({conv.out_h}, {conv.out_w}) (input {x.shape}, kernel ({kernel_h}, {kernel_w}), "
                f"stride {stride_hw}, padding {pads[0]}/{pads[1]}/{pads[2]}/{pads[3]} "
                "top/bottom/left/right)"
            )
    elif tile_h > conv.out_h or tile_w > conv.out_w:
        raise ValueError(
            f"{op}: the tile period ({tile_h}, {tile_w}) of weight {w.shape} exceeds the output size "
            f"({conv.out_h}, {conv.out_w}); kernels beyond the output would never be used"
        )
    if b is None:
        bias_kind = "none"
    elif b.shape == (out_channels,):
        bias_kind = "shared"
    elif b.shape == (tile_h, tile_w, out_channels):
        bias_kind = "tiled"
    else:
        raise ValueError(
            f"{op}: bias must have shape ({out_channels},) or ({tile_h}, {tile_w}, {out_channels}) "
            f"to match weight {w.shape}, got {b.shape}"
        )
    params = TiledConvParams(conv=conv, tile_h=tile_h, tile_w=tile_w, bias_kind=bias_kind)
    dtype = conv.dtype
    flat_weight = contiguous(w, dtype).reshape(tile_h, tile_w, out_channels, params.depth)
    tile_bias = None
    if b is not None:
        tile_bias = np.ascontiguousarray(
            np.broadcast_to(b.astype(dtype, copy=False), (tile_h, tile_w, out_channels))
        )
    return params, contiguous(x4, dtype), flat_weight, tile_bias, batched


def _check_needs(needs, op) -> frozenset:
    if isinstance(needs, str):
        needs = (needs,)
    try:
        wanted = frozenset(needs)
    except TypeError:
        raise TypeError(f"{op}: needs must be a collection of names from {GRADIENT_NAMES}, got {needs!r}") from None
    unknown = wanted - set(GRADIENT_NAMES)
    if unknown:
        raise ValueError(f"{op}: needs may only name {GRADIENT_NAMES}, got {sorted(unknown)}")
    return wanted


def _check_grad_output(grad_output, params, batched, op):
    grad = as_array(grad_output, "grad_output")
    expected = params.conv.output_shape if batched else params.conv.output_shape[1:]
    if grad.shape != expected:
        raise ValueError(
            f"{op}: grad_output must have the output's shape {expected}, got {grad.shape}"
        )
    return grad if batched else grad[np.newaxis]


# --- kernels --------------------------------------------------------------------------------------
@njit_kernel
def _gather_patches(x, patches, top, left, kernel_h, kernel_w):
    """``patches[n]`` = the flattened (C, R, S) window of image n whose corner is (top, left); zeros
    where the window hangs over the implicit padding."""
    batch, channels, in_h, in_w = x.shape
    for n in range(batch):
        j = 0
        for c in range(channels):
            for r in range(kernel_h):
                ih = top + r
                row_inside = 0 <= ih < in_h
                for s in range(kernel_w):
                    iw = left + s
                    if row_inside and 0 <= iw < in_w:
                        patches[n, j] = x[n, c, ih, iw]
                    else:
                        patches[n, j] = 0
                    j += 1


@njit_parallel
def _tiled_forward_kernel(x, weight, tile_bias, out, stride_h, stride_w, pad_top, pad_left,
                          kernel_h, kernel_w):
    # weight (tH, tW, K, CRS); tile_bias (tH, tW, K); out (N, K, out_h, out_w).
    batch = x.shape[0]
    tile_h, tile_w, out_channels, depth = weight.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for position in prange(out_h * out_w):
        oh = position // out_w
        ow = position % out_w
        patches = np.empty((batch, depth), dtype=x.dtype)
        _gather_patches(x, patches, oh * stride_h - pad_top, ow * stride_w - pad_left,
                        kernel_h, kernel_w)
        bank = weight[oh % tile_h, ow % tile_w]
        bank_bias = tile_bias[oh % tile_h, ow % tile_w]
        for n in range(batch):
            patch = patches[n]
            for k in range(out_channels):
                taps = bank[k]
                total = bank_bias[k]
                for j in range(depth):
                    total += patch[j] * taps[j]
                out[n, k, oh, ow] = total


@njit_parallel
def _tiled_grad_weight_kernel(x, grad_out, partial, stride_h, stride_w, pad_top, pad_left,
                              kernel_h, kernel_w):
    # partial (splits, tH, tW, K, CRS), zero on entry: split ``p`` of tile (th, tw) accumulates the
    # output rows th + i tH with i % splits == p, so tasks never write the same element.
    splits, tile_h, tile_w, out_channels, depth = partial.shape
    batch = x.shape[0]
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    for task in prange(splits * tile_h * tile_w):
        split = task // (tile_h * tile_w)
        th = (task // tile_w) % tile_h
        tw = task % tile_w
        accumulator = partial[split, th, tw]
        patches = np.empty((batch, depth), dtype=x.dtype)
        row_count = 0
        for oh in range(th, out_h, tile_h):
            mine = row_count % splits == split
            row_count += 1
            if not mine:
                continue
            for ow in range(tw, out_w, tile_w):
                _gather_patches(x, patches, oh * stride_h - pad_top, ow * stride_w - pad_left,
                                kernel_h, kernel_w)
                for n in range(batch):
                    patch = patches[n]
                    for k in range(out_channels):
                        gradient = grad_out[n, k, oh, ow]
                        row = accumulator[k]
                        for j in range(depth):
                            row[j] += gradient * patch[j]


@njit_parallel
def _tiled_grad_bias_kernel(grad_out, grad_tile_bias):
    # One task per output channel: each writes only its own column of grad_tile_bias (tH, tW, K).
    batch, out_channels, out_h, out_w = grad_out.shape
    tile_h, tile_w = grad_tile_bias.shape[0], grad_tile_bias.shape[1]
    for k in prange(out_channels):
        for n in range(batch):
            for oh in range(out_h):
                for ow in range(out_w):
                    grad_tile_bias[oh % tile_h, ow % tile_w, k] += grad_out[n, k, oh, ow]


@njit_parallel
def _tiled_grad_input_kernel(grad_out, weight, grad_x, stride_h, stride_w, pad_top, pad_left,
                             kernel_h, kernel_w, batch_blocks, channel_blocks):
    # grad_x (N, C, H, W) zero on entry.  Task (batch block, channel block) owns those images and
    # channels of grad_x, so overlapping windows never collide; the bank slice [k, c_lo RS : c_hi RS]
    # of a position is read once per task and reused over its images.
    batch, channels, in_h, in_w = grad_x.shape
    tile_h, tile_w, out_channels, depth = weight.shape
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    taps_per_channel = kernel_h * kernel_w
    images_per_block = (batch + batch_blocks - 1) // batch_blocks
    channels_per_block = (channels + channel_blocks - 1) // channel_blocks
    for task in prange(batch_blocks * channel_blocks):
        n_lo = (task // channel_blocks) * images_per_block
        n_hi = min(batch, n_lo + images_per_block)
        c_lo = (task % channel_blocks) * channels_per_block
        c_hi = min(channels, c_lo + channels_per_block)
        if n_lo < n_hi and c_lo < c_hi:
            j_lo = c_lo * taps_per_channel
            width = (c_hi - c_lo) * taps_per_channel
            grad_patch = np.empty(width, dtype=grad_x.dtype)
            for oh in range(out_h):
                top = oh * stride_h - pad_top
                for ow in range(out_w):
                    left = ow * stride_w - pad_left
                    bank = weight[oh % tile_h, ow % tile_w]
                    for n in range(n_lo, n_hi):
                        grad_patch[:] = 0
                        for k in range(out_channels):
                            gradient = grad_out[n, k, oh, ow]
                            taps = bank[k]
                            for j in range(width):
                                grad_patch[j] += gradient * taps[j_lo + j]
                        j = 0
                        for c in range(c_lo, c_hi):
                            for r in range(kernel_h):
                                ih = top + r
                                row_inside = 0 <= ih < in_h
                                for s in range(kernel_w):
                                    iw = left + s
                                    if row_inside and 0 <= iw < in_w:
                                        grad_x[n, c, ih, iw] += grad_patch[j]
                                    j += 1


# --- drivers -------------------------------------------------------------------------------------
def _forward(params, x, weight, tile_bias):
    conv = params.conv
    out = np.empty(conv.output_shape, dtype=conv.dtype)
    if conv.batch == 0:  # no samples: the (0, K, out_h, out_w) result, no kernel run
        return out
    if tile_bias is None:
        tile_bias = np.zeros((params.tile_h, params.tile_w, conv.out_channels), dtype=conv.dtype)
    _tiled_forward_kernel(x, weight, tile_bias, out, conv.stride_h, conv.stride_w,
                          conv.pad_top, conv.pad_left, conv.kernel_h, conv.kernel_w)
    return out


def _weight_splits(params) -> int:
    """Private accumulators per tile for grad_weight: enough tasks to feed every thread twice,
    no more than the tile has output rows, and within the workspace limit."""
    conv = params.conv
    tiles = params.tile_h * params.tile_w
    rows_per_tile = -(-conv.out_h // params.tile_h)
    wanted = min(rows_per_tile, max(1, math.ceil(2 * get_num_threads() / tiles)))
    weight_bytes = tiles * conv.out_channels * params.depth * conv.dtype.itemsize
    return max(1, min(wanted, get_workspace_limit() // max(weight_bytes, 1)))


def _backward(params, x, weight, grad_out, wanted):
    conv = params.conv
    if conv.batch == 0:
        # no samples: an empty input gradient; weight and bias gradients are sums over nothing
        bias_shape = params.bias_shape
        return (np.zeros(conv.input_shape, conv.dtype) if "input" in wanted else None,
                np.zeros(params.weight_shape, conv.dtype) if "weight" in wanted else None,
                np.zeros(bias_shape, conv.dtype) if "bias" in wanted and bias_shape else None)
    grad_input = grad_weight = grad_tile_bias = None
    if "input" in wanted:
        grad_input = np.zeros(conv.input_shape, dtype=conv.dtype)
        # Prefer splitting the batch: a task then runs dot products over the whole C R S row (long,
        # vectorised inner loops) at the price of re-reading the weights once per batch block.
        # Channel blocks only make up for a batch too small to feed every thread.
        target_tasks = 2 * get_num_threads()
        batch_blocks = min(conv.batch, target_tasks)
        channel_blocks = min(conv.in_channels, -(-target_tasks // batch_blocks))
        _tiled_grad_input_kernel(grad_out, weight, grad_input, conv.stride_h, conv.stride_w,
                                 conv.pad_top, conv.pad_left, conv.kernel_h, conv.kernel_w,
                                 batch_blocks, channel_blocks)
    if "weight" in wanted:
        partial = np.zeros((_weight_splits(params),) + weight.shape, dtype=conv.dtype)
        _tiled_grad_weight_kernel(x, grad_out, partial, conv.stride_h, conv.stride_w,
                                  conv.pad_top, conv.pad_left, conv.kernel_h, conv.kernel_w)
        grad_weight = (partial[0] if partial.shape[0] == 1 else partial.sum(axis=0))
        grad_weight = grad_weight.reshape(params.weight_shape)
    if "bias" in wanted and params.bias_kind != "none":
        grad_tile_bias = np.zeros((params.tile_h, params.tile_w, conv.out_channels), dtype=conv.dtype)
        _tiled_grad_bias_kernel(grad_out, grad_tile_bias)
        if params.bias_kind == "shared":
            grad_tile_bias = grad_tile_bias.sum(axis=(0, 1))
    return grad_input, grad_weight, grad_tile_bias


def _run_backward(op, grad_output, input, weight, bias, stride, padding, needs, local):
    wanted = _check_needs(needs, op)
    params, x, w, _, batched = _make_tiled_params(input, weight, bias, stride, padding, local=local, op=op)
    grad = _check_grad_output(grad_output, params, batched, op)
    grad = contiguous(grad, params.conv.dtype)
    grad_input, grad_weight, grad_bias = _backward(params, x, w, grad, wanted)
    if grad_input is not None and not batched:
        grad_input = grad_input[0]
    return grad_input, grad_weight, grad_bias


# --- public API ------------------------------------------------------------------------------------
def tiled_conv2d(input, weight, bias=None, stride=1, padding=0):
    """Tiled convolution: kernels cycle with period ``(tH, tW)`` over the output positions.

    ``out[n, k, oh, ow] = bias + sum_{c, r, s} weight[oh % tH, ow % tW, k, c, r, s]
    * x_padded[n, c, oh * stride_h + r, ow * stride_w + s]`` (cross-correlation, zero padding).

    Parameters
    ----------
    input : array (N, C, H, W) or unbatched (C, H, W)
    weight : array (tH, tW, K, C, R, S); ``tH <= out_h``, ``tW <= out_w``.  ``tH = tW = 1`` is
        ``conv2d``; ``(tH, tW) == (out_h, out_w)`` is ``local_conv2d``.
    bias : array (K,) shared by all tiles, (tH, tW, K) one per tile, or None
    stride : int or (int, int), positive
    padding : int, (int, int), ``"valid"`` or ``"same"`` (stride 1 only)

    Returns
    -------
    ndarray (N, K, out_h, out_w) or (K, out_h, out_w), float32 or float64 (conv2d's dtype rules);
    ``out_h = (H + pad_top + pad_bottom - R) // stride_h + 1``.  Inputs are never modified.
    """
    params, x, w, b, batched = _make_tiled_params(input, weight, bias, stride, padding,
                                                  local=False, op="tiled_conv2d")
    out = _forward(params, x, w, b)
    return out if batched else out[0]


def tiled_conv2d_backward(grad_output, input, weight, bias=None, stride=1, padding=0, *,
                          needs=GRADIENT_NAMES):
    """Gradients of :func:`tiled_conv2d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_output : array shaped like the forward output (N, K, out_h, out_w) or (K, out_h, out_w)
    input, weight, bias, stride, padding : the forward call's arguments; ``bias`` is only used for
        its shape (``grad_bias`` has the same shape; it is None when ``bias`` is None)
    needs : collection of ``"input"``, ``"weight"``, ``"bias"``
        The gradients to compute; the others are returned as None.

    Returns
    -------
    (grad_input, grad_weight, grad_bias), shaped like input, weight and bias.
    """
    return _run_backward("tiled_conv2d_backward", grad_output, input, weight, bias, stride, padding,
                         needs, local=False)


def local_conv2d(input, weight, bias=None, stride=1, padding=0):
    """Unshared (locally connected) convolution: a different kernel bank at every output position.

    ``out[n, k, oh, ow] = bias + sum_{c, r, s} weight[oh, ow, k, c, r, s]
    * x_padded[n, c, oh * stride_h + r, ow * stride_w + s]``: conv2d's connectivity without its
    weight sharing (Keras' former ``LocallyConnected2D``).

    Parameters
    ----------
    input : array (N, C, H, W) or unbatched (C, H, W)
    weight : array (out_h, out_w, K, C, R, S), ``out_h = (H + pad_top + pad_bottom - R) // stride_h + 1``
    bias : array (K,) shared, (out_h, out_w, K) untied, or None
    stride : int or (int, int), positive
    padding : int, (int, int), ``"valid"`` or ``"same"`` (stride 1 only)

    Returns
    -------
    ndarray (N, K, out_h, out_w) or (K, out_h, out_w); inputs are never modified.
    """
    params, x, w, b, batched = _make_tiled_params(input, weight, bias, stride, padding,
                                                  local=True, op="local_conv2d")
    out = _forward(params, x, w, b)
    return out if batched else out[0]


def local_conv2d_backward(grad_output, input, weight, bias=None, stride=1, padding=0, *,
                          needs=GRADIENT_NAMES):
    """Gradients of :func:`local_conv2d`; arguments and returns as :func:`tiled_conv2d_backward`."""
    return _run_backward("local_conv2d_backward", grad_output, input, weight, bias, stride, padding,
                         needs, local=True)
