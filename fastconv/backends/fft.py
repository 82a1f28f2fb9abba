"""FFT convolution: transform once per plane, reduce over channels by a pointwise product.

A valid cross-correlation of a padded input of height Hp needs a transform length L >= Hp only (not
Hp + R - 1): with the kernel's spectrum conjugated, the circular correlation at output index i reads
input rows i..i+R-1, which never wrap for the rows we keep.  Implicit zero padding is a cyclic shift
of the read-out index into the transform's zero tail, so the input is transformed unpadded.

Per (n, k) the spectrum is ``sum_c X[n, c] * conj(Wf[k, c])`` — the channel reduction as a per-frequency
complex multiply-accumulate in a compiled kernel.  Stride subsamples the result; dilation spreads the
kernel's taps in the transform buffer.  Batches and output channels are processed in chunks so the
spectra stay inside the workspace cap.

Transforms are scipy.fft's pocketfft with ``workers`` threads over whole stacks of planes; this was
measured faster than rocket-fft's in-``@njit`` transforms for the batched case (see the note in the
README's algorithm guide).
"""
from __future__ import annotations

import numpy as np
import scipy.fft
from numba import prange

from .._config import get_num_threads, get_workspace_limit, njit_parallel

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
    # output-channel chunk: its weight spectra take at most half the cap
    out_chunk = int(max(1, min(params.out_channels, (limit // 2) // (channels * spectrum))))
    # sample chunk: input spectra + chunk's product spectra + its real planes in the other half
    per_sample = params.in_channels * spectrum + out_chunk * (spectrum + plane)
    batch_chunk = int(max(1, min(params.batch, (limit // 2) // per_sample)))
    return batch_chunk, out_chunk


def workspace_bytes(params) -> int:
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
    rows = scipy.fft.rfft(planes, n=fft_shape[1], axis=-1, workers=workers)
    return scipy.fft.fft(rows, n=fft_shape[0], axis=-2, workers=workers, overwrite_x=True)


def padded_fft2(planes, fft_shape, workers):
    """Complex counterpart of :func:`padded_rfft2`."""
    rows = scipy.fft.fft(planes, n=fft_shape[1], axis=-1, workers=workers)
    return scipy.fft.fft(rows, n=fft_shape[0], axis=-2, workers=workers, overwrite_x=True)


def forward(x, w, bias, params):
    """conv2d of C-contiguous ``x`` (N, C, H, W) with ``w``; zero padding only (see ConvParams)."""
    if params.dtype.kind == "c":
        return _forward_complex(x, w, bias, params)
    fft_shape = transform_shape(params)
    workers = get_num_threads()
    out = np.empty(params.output_shape, dtype=params.dtype)
    bias = np.zeros(params.out_channels, params.dtype) if bias is None else bias
    kernels = _dilated(w, params)
    batch_chunk, out_chunk = chunk_sizes(params)
    for k0 in range(0, params.out_channels, out_chunk):
        k1 = min(params.out_channels, k0 + out_chunk)
        w_spec = padded_rfft2(kernels[k0:k1], fft_shape, workers)
        for n0 in range(0, params.batch, batch_chunk):
            n1 = min(params.batch, n0 + batch_chunk)
            x_spec = padded_rfft2(x[n0:n1], fft_shape, workers)
            y_spec = np.empty((n1 - n0, k1 - k0) + x_spec.shape[2:], dtype=x_spec.dtype)
            _spectral_mac(x_spec, w_spec, y_spec, params.out_channels_per_group, k0)
            del x_spec
            planes = scipy.fft.irfft2(y_spec, s=fft_shape, workers=workers, overwrite_x=True)
            read_out(planes, bias, out[n0:n1], k0, params)
    return out


def _forward_complex(x, w, bias, params):
    """Complex data (scipy.signal's complex correlate2d / convolve2d): full fft2 / ifft2 instead of
    the real transforms, otherwise the same chunked pipeline.

    The kernels compute the cross-correlation y[i] = sum_r x[i + r] * w[r] without conjugating w
    (conv2d's definition; callers that want scipy's conjugating correlation pass conj(w)).  Its DFT is

        Y[f] = sum_r w[r] e^{+2 pi i f r / L} X[f] = X[f] * conj( sum_r conj(w[r]) e^{-2 pi i f r / L} )
             = X[f] * conj( fft(conj(w))[f] ),

    so the weight spectrum is taken of conj(w) and ``_spectral_mac`` conjugates it back, as it does
    for real data (where conj(w) == w).
    """
    fft_shape = transform_shape(params)
    workers = get_num_threads()
    out = np.empty(params.output_shape, dtype=params.dtype)
    bias = np.zeros(params.out_channels, params.dtype) if bias is None else bias
    kernels = np.conj(_dilated(w, params))
    batch_chunk, out_chunk = chunk_sizes(params)
    for k0 in range(0, params.out_channels, out_chunk):
        k1 = min(params.out_channels, k0 + out_chunk)
        w_spec = padded_fft2(kernels[k0:k1], fft_shape, workers)
        for n0 in range(0, params.batch, batch_chunk):
            n1 = min(params.batch, n0 + batch_chunk)
            x_spec = padded_fft2(x[n0:n1], fft_shape, workers)
            y_spec = np.empty((n1 - n0, k1 - k0) + x_spec.shape[2:], dtype=x_spec.dtype)
            _spectral_mac(x_spec, w_spec, y_spec, params.out_channels_per_group, k0)
            del x_spec
            planes = scipy.fft.ifft2(y_spec, s=fft_shape, workers=workers, overwrite_x=True)
            read_out(planes, bias, out[n0:n1], k0, params)
    return out
