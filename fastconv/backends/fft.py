"""FFT convolution: transform once per plane, reduce over channels by a pointwise product.

A valid cross-correlation of a padded input of height Hp needs a transform length L >= Hp only (not
Hp + R - 1): with the kernel's spectrum conjugated, the circular correlation at output index i reads
input rows i..i+R-1, which never wrap for the rows we keep.  Implicit zero padding is a cyclic shift
of the read-out index into the transform's zero tail, so the input is transformed unpadded.

Per (n, k) the spectrum is ``sum_c X[n, c] * conj(Wf[k, c])`` — the channel reduction as a per-frequency
complex multiply-accumulate in a compiled kernel.  Stride subsamples the result; dilation spreads the
kernel's taps in the transform buffer.  Batches and output channels are processed in chunks so the
spectra stay inside the workspace cap.

Transforms are pocketfft with ``workers`` threads over whole stacks of planes, called from compiled
code through rocket-fft (``fastconv._transforms``, where the measurement that chose it is noted).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft
from numba import prange

from .. import _transforms as transforms
from .._config import get_num_threads, get_workspace_limit, njit_parallel
from . import _fft_tiled as tiled
from ._direct_blocked import transposed_flipped_weight
from .direct import transposed_params

NAME = "fft"


def supports(params) -> str | None:
    """Every conv2d parameter combination (whether it is a good idea is the dispatcher's business)."""
    return None


def transform_shape(params) -> tuple[int, int]:
    return (
        scipy.fft.next_fast_len(params.padded_h, real=True),
        scipy.fft.next_fast_len(params.padded_w, real=True),
    )


@njit_parallel
def _spectral_mac(x_spec, w_spec, y_spec, out_per_group, first_out_channel):
    """y[n, j] = sum_c x[n, c in k's group] * conj(w[j, c]) for the chunk's output channels
    j = k - first_out_channel; a chunk may span several groups."""
    batch, _, fft_h, fft_w = x_spec.shape
    chunk_channels, channels = w_spec.shape[0], w_spec.shape[1]
    for task in prange(batch * chunk_channels * fft_h):
        i = task % fft_h
        j = (task // fft_h) % chunk_channels
        n = task // (fft_h * chunk_channels)
        k = first_out_channel + j
        first_channel = (k // out_per_group) * channels
        acc = y_spec[n, j, i]
        acc[:] = 0
        for c in range(channels):
            x_row = x_spec[n, first_channel + c, i]
            w_row = w_spec[j, c, i]
            for f in range(fft_w):
                acc[f] += x_row[f] * np.conj(w_row[f])


@njit_parallel
def _read_out(planes, bias, out, first_out_channel, stride_h, stride_w, pad_top, pad_left):
    """out[n, k, oh, ow] = planes[n, j, (oh*sh - pt) mod L, (ow*sw - pl) mod L] + bias[k]."""
    batch, chunk_channels, fft_h, fft_w = planes.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for task in prange(batch * chunk_channels * out_h):
        oh = task % out_h
        j = (task // out_h) % chunk_channels
        n = task // (out_h * chunk_channels)
        k = first_out_channel + j
        src_row = planes[n, j, (oh * stride_h - pad_top) % fft_h]
        dest = out[n, k, oh]
        for ow in range(out_w):
            dest[ow] = src_row[(ow * stride_w - pad_left) % fft_w] + bias[k]


@njit_parallel
def _read_out_unit_stride(planes, bias, out, first_out_channel, stride_h, pad_top, pad_left):
    """``_read_out`` for stride_w == 1: the wrapped columns are two contiguous runs
    (the last pad_left columns of the plane, then its first ones), copied as slices so the copy
    vectorises instead of taking a modulo per element."""
    batch, chunk_channels, fft_h, fft_w = planes.shape
    out_h, out_w = out.shape[2], out.shape[3]
    wrapped = min(pad_left, out_w)
    for task in prange(batch * chunk_channels * out_h):
        oh = task % out_h
        j = (task // out_h) % chunk_channels
        n = task // (out_h * chunk_channels)
        k = first_out_channel + j
        src_row = planes[n, j, (oh * stride_h - pad_top) % fft_h]
        dest = out[n, k, oh]
        dest[:wrapped] = src_row[fft_w - pad_left:fft_w - pad_left + wrapped] + bias[k]
        dest[wrapped:] = src_row[:out_w - wrapped] + bias[k]


def read_out(planes, bias, out, first_out_channel, params):
    """Copy the kept samples of the inverse transforms into ``out`` (adding the bias)."""
    if params.stride_w == 1 and params.pad_left <= planes.shape[3]:
        _read_out_unit_stride(planes, bias, out, first_out_channel, params.stride_h,
                              params.pad_top, params.pad_left)
    else:
        _read_out(planes, bias, out, first_out_channel, params.stride_h, params.stride_w,
                  params.pad_top, params.pad_left)


def _dilated(w, params):
    if params.dilation_h == params.dilation_w == 1:
        return w
    spread = np.zeros(
        w.shape[:2] + (params.dilated_kernel_h, params.dilated_kernel_w), dtype=w.dtype
    )
    spread[:, :, ::params.dilation_h, ::params.dilation_w] = w
    return spread


def chunk_sizes(params, limit: int | None = None) -> tuple[int, int]:
    """(samples, output channels) per chunk so that the spectra fit the workspace cap."""
    limit = get_workspace_limit() if limit is None else limit
    fft_h, fft_w = transform_shape(params)
    spectrum = fft_h * (fft_w // 2 + 1) * 2 * params.dtype.itemsize
    plane = fft_h * fft_w * params.dtype.itemsize
    channels = params.in_channels_per_group
    # output-channel chunk: its weight spectra take at most half the cap, and fewer channels
    # where one sample's input spectra plus the chunk's product spectra and planes would not fit
    # beside them (the floor is one sample and one output channel)
    out_chunk = min(params.out_channels, (limit // 2) // (channels * spectrum),
                    (limit - params.in_channels * spectrum) // (channels * spectrum + spectrum + plane))
    out_chunk = int(max(1, out_chunk))
    # sample chunk: input spectra + chunk's product spectra + its real planes in the rest
    per_sample = params.in_channels * spectrum + out_chunk * (spectrum + plane)
    batch_chunk = int(max(1, min(params.batch, (limit - out_chunk * channels * spectrum) // per_sample)))
    return batch_chunk, out_chunk


def tiling(params, threads: int | None = None, limit: int | None = None):
    """The overlap-save plan (``_fft_tiled.TilePlan``) this problem runs with, or None for the
    full-size path: whichever the backend's cost model (``_fft_tiled.choose``) finds cheaper."""
    threads = get_num_threads() if threads is None else threads
    limit = get_workspace_limit() if limit is None else limit
    batch_chunk, out_chunk = chunk_sizes(params, limit)
    return tiled.choose(params, transform_shape(params), threads, limit, batch_chunk, out_chunk)


def cost_work(params, threads: int, path: str = "auto") -> tuple[float, float, float]:
    """(transform flops, full-size MAC flops, tiled mixing flops) of the path this problem takes
    (``path="full"``: of the full-size path), per call, not yet divided by ``threads``: the
    dispatcher's cost features.  A transform of n points counts 2.5 n log2 n (real or complex
    alike); a complex multiply-add 8 flops.  The tiled path's counts include the tiles its busiest
    thread runs beyond an even share (``TilePlan`` imbalance)."""
    plan = tiling(params, threads) if path == "auto" else None
    if plan is None:
        fft_h, fft_w = transform_shape(params)
        size = fft_h * fft_w
        planes = (params.batch * params.in_channels
                  + params.out_channels * params.in_channels_per_group
                  + params.batch * params.out_channels)
        macs = params.batch * params.out_channels * params.in_channels_per_group * (
            fft_h * (fft_w // 2 + 1))
        return planes * 2.5 * size * math.log2(max(size, 2)), 8.0 * macs, 0.0
    size = plan.tile_h * plan.tile_w
    per_transform = 2.5 * size * math.log2(max(size, 2))
    tiles_h, tiles_w = tiled.tile_grid(params, plan.tile_h, plan.tile_w)
    tiles = params.batch * tiles_h * tiles_w
    chunks = -(-params.out_channels // plan.out_chunk)
    tile_planes = plan.imbalance * tiles * (chunks * params.in_channels + params.out_channels)
    planes = tile_planes + params.out_channels * params.in_channels_per_group
    return planes * per_transform, 0.0, 8.0 * plan.mix_macs


# Priced by the dispatcher's cost model (fastconv.dispatch.model).  tile_mix_flops is the
# overlap-save path's channel mixing (register tiles on cache-resident spectra); the full-size
# path's channel reduction (mac_flops) streams whole-image spectra from memory and costs an order
# of magnitude more per flop.
COST_FEATURES = ("call", "transform_flops", "mac_flops", "output_elements", "tile_mix_flops")


def cost_features(params, threads: int, path: str = "auto") -> tuple[float, ...]:
    """The features of the path ``forward`` takes (``path="full"``: of the full-size path)."""
    width = params.dtype.itemsize / 4.0
    transform_flops, mac_flops, mix_flops = cost_work(params, threads, path)
    outputs = params.batch * params.out_channels * params.out_h * params.out_w
    return (1.0, transform_flops * width / threads, mac_flops * width / threads,
            outputs / threads, mix_flops * width / threads)


def _resolve_tiling(params, tiling_):
    """``forward``'s ``tiling`` argument as a TilePlan or None (full size)."""
    if tiling_ == "auto":
        return tiling(params)
    if tiling_ == "full":
        return None
    if isinstance(tiling_, tiled.TilePlan):
        return tiling_
    tile_h, tile_w = tiling_
    if tile_h < params.dilated_kernel_h or tile_w < params.dilated_kernel_w:
        raise ValueError(f"tile ({tile_h}, {tile_w}) is smaller than the dilated kernel "
                         f"({params.dilated_kernel_h}, {params.dilated_kernel_w})")
    plan = tiled.plan_tiles(params, tile_h, tile_w, get_num_threads(), get_workspace_limit())
    if plan is None:
        raise ValueError(f"tile ({tile_h}, {tile_w}) does not fit the workspace cap")
    return plan


def workspace_bytes(params) -> int:
    plan = tiling(params)
    if plan is not None:
        return (tiled._mix_weight_bytes(params, plan.tile_h, plan.tile_w, plan.out_chunk)
                + get_num_threads() * plan.tiles_per_task
                * tiled._tile_bytes(params, plan.tile_h, plan.tile_w, plan.out_chunk))
    fft_h, fft_w = transform_shape(params)
    spectrum = fft_h * (fft_w // 2 + 1) * 2 * params.dtype.itemsize
    plane = fft_h * fft_w * params.dtype.itemsize
    batch_chunk, out_chunk = chunk_sizes(params)
    return (
        out_chunk * params.in_channels_per_group * spectrum
        + batch_chunk * (params.in_channels * spectrum + out_chunk * (spectrum + plane))
    )


def padded_rfft2(planes, fft_shape, workers):
    """``rfft2(planes, s=fft_shape)`` without transforming the zero rows of the padding: the row
    transforms run on the planes' own rows (a kernel has R of them, not fft_h), and only the column
    transforms see the zero-padded height.  Same result, a fraction of the row work for kernels."""
    rows = transforms.rfft_last(planes, fft_shape[1], workers)
    return transforms.fft_second_last(rows, fft_shape[0], workers)


def padded_fft2(planes, fft_shape, workers):
    """Complex counterpart of :func:`padded_rfft2`."""
    rows = transforms.fft_last(planes, fft_shape[1], workers)
    return transforms.fft_second_last(rows, fft_shape[0], workers)


def forward(x, w, bias, params, tiling="auto"):
    """conv2d of C-contiguous ``x`` (N, C, H, W) with ``w``; zero padding only (see ConvParams).

    ``tiling``: ``"auto"`` (the cheaper of overlap-save tiles and full-size transforms, see
    :func:`tiling`), ``"full"``, a tile size ``(tile_h, tile_w)`` or a ``_fft_tiled.TilePlan``
    (the last three for tests and measurements).

    Real data uses real transforms.  Complex data (scipy.signal's complex correlate2d /
    convolve2d) uses full fft2 / ifft2, otherwise the same chunked pipeline.  The kernels compute
    the cross-correlation y[i] = sum_r x[i + r] * w[r] without conjugating w (conv2d's definition;
    callers that want scipy's conjugating correlation pass conj(w)).  Its DFT is

        Y[f] = sum_r w[r] e^{+2 pi i f r / L} X[f] = X[f] * conj( sum_r conj(w[r]) e^{-2 pi i f r / L} )
             = X[f] * conj( fft(conj(w))[f] ),

    so the weight spectrum is taken of conj(w) and ``_spectral_mac`` conjugates it back, as it does
    for real data (where conj(w) == w).
    """
    if params.dtype.kind == "c":
        transform, inverse = padded_fft2, transforms.ifft2_last
        kernels = np.conj(_dilated(w, params))
    else:
        transform, inverse = padded_rfft2, transforms.irfft2_last
        kernels = _dilated(w, params)
    out = np.empty(params.output_shape, dtype=params.dtype)
    bias = np.zeros(params.out_channels, params.dtype) if bias is None else bias
    plan = _resolve_tiling(params, tiling)
    if plan is not None:
        return tiled.forward(x, np.ascontiguousarray(kernels), bias, out, params, plan)
    fft_shape = transform_shape(params)
    workers = get_num_threads()
    batch_chunk, out_chunk = chunk_sizes(params)
    for k0 in range(0, params.out_channels, out_chunk):
        k1 = min(params.out_channels, k0 + out_chunk)
        w_spec = transform(kernels[k0:k1], fft_shape, workers)
        for n0 in range(0, params.batch, batch_chunk):
            n1 = min(params.batch, n0 + batch_chunk)
            x_spec = transform(x[n0:n1], fft_shape, workers)
            y_spec = np.empty((n1 - n0, k1 - k0) + x_spec.shape[2:], dtype=x_spec.dtype)
            _spectral_mac(x_spec, w_spec, y_spec, params.out_channels_per_group, k0)
            del x_spec
            planes = inverse(y_spec, fft_shape, workers)
            read_out(planes, bias, out[n0:n1], k0, params)
    return out


# --- backward ---------------------------------------------------------------------------------
# Both gradients are correlations/convolutions of an "upsampled" grad_out: a plane U[n, k] of the
# transform size holding grad_out[n, k, oh, ow] at (oh*sh - pad_top, ow*sw - pad_left) mod L (zeros
# elsewhere, i.e. the stride's holes).  Then
#   grad_in[n, c]  = sum_k  U[n, k] (*) w_dilated[k, c]       (a convolution: spectra multiply)
#   grad_w[k, c]   = sum_n  U[n, k] (x) x[n, c]  read at (r*dh, s*dw)   (a correlation: conj(U) X)
# Every index the sums touch lies in a window of length in + pad_top + pad_bottom (or
# in + pad_top) <= L, so the circular wrap never aliases two distinct terms.
def backward_transform_shape(params) -> tuple[int, int]:
    return (
        scipy.fft.next_fast_len(max(params.padded_h, params.in_h + params.pad_top), real=True),
        scipy.fft.next_fast_len(max(params.padded_w, params.in_w + params.pad_left), real=True),
    )


@njit_parallel
def _scatter_upsampled(grad_out, planes, stride_h, stride_w, pad_top, pad_left):
    """planes[n, k] = 0 except planes[n, k, (oh*sh - pt) mod L, (ow*sw - pl) mod L] = grad_out."""
    batch, out_channels, out_h, out_w = grad_out.shape
    fft_h, fft_w = planes.shape[2], planes.shape[3]
    for task in prange(batch * out_channels):
        k = task % out_channels
        n = task // out_channels
        plane = planes[n, k]
        plane[:, :] = 0
        for oh in range(out_h):
            dest = plane[(oh * stride_h - pad_top) % fft_h]
            source = grad_out[n, k, oh]
            for ow in range(out_w):
                dest[(ow * stride_w - pad_left) % fft_w] = source[ow]


@njit_parallel
def _spectral_mac_input(u_spec, w_spec, g_spec, out_per_group):
    """g[n, c] = sum over k in c's group of u[n, k] * w[k, c mod Cg] (no conjugate: a convolution)."""
    batch, in_channels, fft_h, fft_w = g_spec.shape
    channels = w_spec.shape[1]
    for task in prange(batch * in_channels * fft_h):
        i = task % fft_h
        c = (task // fft_h) % in_channels
        n = task // (fft_h * in_channels)
        group = c // channels
        acc = g_spec[n, c, i]
        acc[:] = 0
        for k in range(group * out_per_group, (group + 1) * out_per_group):
            u_row = u_spec[n, k, i]
            w_row = w_spec[k, c % channels, i]
            for f in range(fft_w):
                acc[f] += u_row[f] * w_row[f]


@njit_parallel
def _spectral_mac_weight(u_spec, x_spec, gw_spec, out_per_group):
    """gw[k, c] += sum_n conj(u[n, k]) * x[n, group(k)*Cg + c]: a correlation, accumulated over the
    chunk's samples (the caller zeroes ``gw_spec`` once)."""
    batch = u_spec.shape[0]
    out_channels, channels, fft_h, fft_w = gw_spec.shape
    for task in prange(out_channels * channels * fft_h):
        i = task % fft_h
        c = (task // fft_h) % channels
        k = task // (fft_h * channels)
        channel = (k // out_per_group) * channels + c
        acc = gw_spec[k, c, i]
        for n in range(batch):
            u_row = u_spec[n, k, i]
            x_row = x_spec[n, channel, i]
            for f in range(fft_w):
                acc[f] += np.conj(u_row[f]) * x_row[f]


def _backward_batch_chunk(params, fft_shape, need_input, need_weight) -> int:
    fft_h, fft_w = fft_shape
    spectrum = fft_h * (fft_w // 2 + 1) * 2 * params.dtype.itemsize
    plane = fft_h * fft_w * params.dtype.itemsize
    per_sample = params.out_channels * (plane + spectrum)
    if need_input:
        per_sample += params.in_channels * (spectrum + plane)
    if need_weight:
        per_sample += params.in_channels * spectrum
    return int(max(1, min(params.batch, get_workspace_limit() // per_sample)))


def _backward(grad_out, x, w, params, need_input, need_weight):
    fft_shape = backward_transform_shape(params)
    workers = get_num_threads()
    spectrum_shape = (fft_shape[0], fft_shape[1] // 2 + 1)
    grad_in = np.empty(params.input_shape, dtype=params.dtype) if need_input else None
    if need_input:
        w_spec = transforms.rfft2_last(_dilated(w, params), fft_shape, workers)
    if need_weight:
        complex_dtype = np.result_type(params.dtype, np.complex64)
        gw_spec = np.zeros((params.out_channels, params.in_channels_per_group) + spectrum_shape,
                           dtype=complex_dtype)
    batch_chunk = _backward_batch_chunk(params, fft_shape, need_input, need_weight)
    for n0 in range(0, params.batch, batch_chunk):
        n1 = min(params.batch, n0 + batch_chunk)
        upsampled = np.empty((n1 - n0, params.out_channels) + fft_shape, dtype=params.dtype)
        _scatter_upsampled(grad_out[n0:n1], upsampled, params.stride_h, params.stride_w,
                           params.pad_top, params.pad_left)
        u_spec = transforms.rfft2_last(upsampled, upsampled.shape[-2:], workers)
        del upsampled
        if need_weight:
            x_spec = transforms.rfft2_last(x[n0:n1], fft_shape, workers)
            _spectral_mac_weight(u_spec, x_spec, gw_spec, params.out_channels_per_group)
            del x_spec
        if need_input:
            g_spec = np.empty((n1 - n0, params.in_channels) + spectrum_shape, dtype=u_spec.dtype)
            _spectral_mac_input(u_spec, w_spec, g_spec, params.out_channels_per_group)
            planes = transforms.irfft2_last(g_spec, fft_shape, workers)
            grad_in[n0:n1] = planes[:, :, :params.in_h, :params.in_w]
    grad_w = None
    if need_weight:
        planes = transforms.irfft2_last(gw_spec, fft_shape, workers)
        grad_w = np.ascontiguousarray(
            planes[:, :, :params.dilated_kernel_h:params.dilation_h,
                   :params.dilated_kernel_w:params.dilation_w],
            dtype=params.dtype,
        )
    return grad_in, grad_w


def tiled_input_gradient_params(params, threads: int | None = None):
    """The input gradient as a forward problem on overlap-save tiles, or None: at stride 1 without
    dilation it is the correlation of the zero-padded grad_out with the flipped, transposed
    weights (``direct.transposed_params``), taken when the planner tiles that problem."""
    transposed = transposed_params(params)
    if transposed is None or tiling(transposed, threads) is None:
        return None
    return transposed


def _tiled_input_gradient(grad_out, w, params):
    transposed = tiled_input_gradient_params(params)
    if transposed is None:
        return None
    return forward(np.ascontiguousarray(grad_out, dtype=params.dtype),
                   transposed_flipped_weight(w, params.groups), None, transposed)


def backward_input(grad_out, w, params):
    """Gradient w.r.t. the (zero-padding form) input: on tiles as a forward correlation where
    that applies, otherwise by full-size transforms (see the note above)."""
    grad_in = _tiled_input_gradient(grad_out, w, params)
    if grad_in is not None:
        return grad_in
    return _backward(grad_out, None, w, params, True, False)[0]


def backward_weight(grad_out, x, params):
    """Gradient w.r.t. the weight, by full-size transforms (see the note above)."""
    return _backward(grad_out, x, None, params, False, True)[1]


def backward_both(grad_out, x, w, params):
    """Both gradients, sharing the transform of the upsampled grad_out unless the input gradient
    runs on tiles."""
    grad_in = _tiled_input_gradient(grad_out, w, params)
    if grad_in is not None:
        return grad_in, backward_weight(grad_out, x, params)
    return _backward(grad_out, x, w, params, True, True)
