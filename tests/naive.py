"""Plain-NumPy twins of fastconv's kernels: slow, obviously correct — the oracle for the tests.

Each twin computes in float64 straight from the definition, with explicit padding via ``np.pad``.
"""
from __future__ import annotations

import numpy as np

TORCH_TO_NUMPY_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def padding_amounts(padding, kernel_hw, dilation, stride=(1, 1)):
    """(top, bottom, left, right) as PyTorch resolves ``padding``."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel_hw)]
        return (total[0] // 2, total[0] - total[0] // 2, total[1] // 2, total[1] - total[1] // 2)
    ph, pw = pair(padding)
    return (ph, ph, pw, pw)


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """torch.nn.functional.conv2d from its definition (cross-correlation), NCHW or CHW."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    stride_h, stride_w = pair(stride)
    dil_h, dil_w = pair(dilation)
    out_channels, channels, kernel_h, kernel_w = w.shape
    top, bottom, left, right = padding_amounts(padding, (kernel_h, kernel_w), (dil_h, dil_w))
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)),
                    mode=TORCH_TO_NUMPY_PAD[padding_mode])
    batch, _, padded_h, padded_w = padded.shape
    out_h = (padded_h - dil_h * (kernel_h - 1) - 1) // stride_h + 1
    out_w = (padded_w - dil_w * (kernel_w - 1) - 1) // stride_w + 1
    out = np.zeros((batch, out_channels, out_h, out_w))
    out_per_group = out_channels // groups
    for k in range(out_channels):
        group = k // out_per_group
        for c in range(channels):
            plane = padded[:, group * channels + c]
            for r in range(kernel_h):
                for s in range(kernel_w):
                    window = plane[:, r * dil_h: r * dil_h + stride_h * (out_h - 1) + 1: stride_h,
                                   s * dil_w: s * dil_w + stride_w * (out_w - 1) + 1: stride_w]
                    out[:, k] += w[k, c, r, s] * window
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return out[0] if unbatched else out


# ---------------------------------------------------------------------------------------------------
# Issue 10: tiled / unshared (local) convolution, distance-weighted and plain average pooling.
# ---------------------------------------------------------------------------------------------------
def _tiled_geometry(x, w, stride, padding):
    x = np.asarray(x, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    kernel_h, kernel_w = w.shape[-2:]
    top, bottom, left, right = padding_amounts(padding, (kernel_h, kernel_w), (1, 1))
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    stride_h, stride_w = pair(stride)
    out_h = (padded.shape[2] - kernel_h) // stride_h + 1
    out_w = (padded.shape[3] - kernel_w) // stride_w + 1
    return x, padded, unbatched, (top, left), (stride_h, stride_w), (out_h, out_w)


def tiled_conv2d(x, w, bias=None, stride=1, padding=0):
    """Tiled convolution from its definition: output (oh, ow) uses kernel bank w[oh % tH, ow % tW].

    ``w`` is (tH, tW, K, C, R, S); ``bias`` is (K,), (tH, tW, K) or None.  Local (unshared)
    convolution is the case (tH, tW) == (out_h, out_w)."""
    w = np.asarray(w, dtype=np.float64)
    _, padded, unbatched, _, (stride_h, stride_w), (out_h, out_w) = _tiled_geometry(x, w, stride, padding)
    tile_h, tile_w, out_channels, _, kernel_h, kernel_w = w.shape
    out = np.zeros((padded.shape[0], out_channels, out_h, out_w))
    for oh in range(out_h):
        for ow in range(out_w):
            window = padded[:, :, oh * stride_h: oh * stride_h + kernel_h,
                            ow * stride_w: ow * stride_w + kernel_w]
            out[:, :, oh, ow] = np.einsum("ncrs,kcrs->nk", window, w[oh % tile_h, ow % tile_w])
            if bias is not None:
                bias64 = np.asarray(bias, dtype=np.float64)
                out[:, :, oh, ow] += bias64 if bias64.ndim == 1 else bias64[oh % tile_h, ow % tile_w]
    return out[0] if unbatched else out


local_conv2d = tiled_conv2d  # weight (out_h, out_w, K, C, R, S): every position its own tile


def tiled_conv2d_backward(grad_out, x, w, bias=None, stride=1, padding=0):
    """(grad_input, grad_weight, grad_bias) of tiled_conv2d, from the chain rule on the definition."""
    w = np.asarray(w, dtype=np.float64)
    x64, padded, unbatched, (top, left), (stride_h, stride_w), (out_h, out_w) = _tiled_geometry(
        x, w, stride, padding)
    grad_out = np.asarray(grad_out, dtype=np.float64)
    if unbatched:
        grad_out = grad_out[None]
    tile_h, tile_w, out_channels, _, kernel_h, kernel_w = w.shape
    grad_padded = np.zeros_like(padded)
    grad_w = np.zeros_like(w)
    grad_tile_bias = np.zeros((tile_h, tile_w, out_channels))
    for oh in range(out_h):
        for ow in range(out_w):
            rows = slice(oh * stride_h, oh * stride_h + kernel_h)
            cols = slice(ow * stride_w, ow * stride_w + kernel_w)
            g = grad_out[:, :, oh, ow]
            bank = (oh % tile_h, ow % tile_w)
            grad_w[bank] += np.einsum("nk,ncrs->kcrs", g, padded[:, :, rows, cols])
            grad_padded[:, :, rows, cols] += np.einsum("nk,kcrs->ncrs", g, w[bank])
            grad_tile_bias[bank] += g.sum(axis=0)
    in_h, in_w = x64.shape[2:]
    grad_x = grad_padded[:, :, top: top + in_h, left: left + in_w]
    grad_x = grad_x[0] if unbatched else grad_x
    grad_b = None
    if bias is not None:
        grad_b = grad_tile_bias.sum(axis=(0, 1)) if np.ndim(bias) == 1 else grad_tile_bias
    return grad_x, grad_w, grad_b


def _pool_with_window(x, window, stride, padding, count_include_pad):
    x = np.asarray(x, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    kernel_h, kernel_w = window.shape
    stride_h, stride_w = pair(stride)
    pad_h, pad_w = pair(padding)
    padded = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))
    inside = np.pad(np.ones(x.shape[2:]), ((pad_h, pad_h), (pad_w, pad_w)))
    out_h = (padded.shape[2] - kernel_h) // stride_h + 1
    out_w = (padded.shape[3] - kernel_w) // stride_w + 1
    out = np.zeros(x.shape[:2] + (out_h, out_w))
    for oh in range(out_h):
        for ow in range(out_w):
            rows = slice(oh * stride_h, oh * stride_h + kernel_h)
            cols = slice(ow * stride_w, ow * stride_w + kernel_w)
            total = (padded[:, :, rows, cols] * window).sum(axis=(2, 3))
            norm = window.sum() if count_include_pad else (window * inside[rows, cols]).sum()
            out[:, :, oh, ow] = total / norm
    return out[0] if unbatched else out


def weighted_avg_pool2d(x, kernel_size, stride=None, padding=0, sigma=1.0, count_include_pad=True):
    """Gaussian-weighted average: tap (r, s) weighs exp(-(dr^2 / 2 sigma_h^2 + ds^2 / 2 sigma_w^2)),
    (dr, ds) its offset from the window's centre ((R - 1) / 2, (S - 1) / 2)."""
    kernel_h, kernel_w = pair(kernel_size)
    sigma_h, sigma_w = pair(sigma)
    dr = np.arange(kernel_h) - (kernel_h - 1) / 2
    ds = np.arange(kernel_w) - (kernel_w - 1) / 2
    window = np.exp(-dr[:, None] ** 2 / (2 * sigma_h ** 2) - ds[None, :] ** 2 / (2 * sigma_w ** 2))
    return _pool_with_window(x, window, pair(kernel_size) if stride is None else stride, padding,
                             count_include_pad)

# ==============================================================================================
# Issue 4: conv2d gradients, transposed convolution, pooling (forward and backward).
# Same rules: float64, straight from the definitions, no cleverness.
# ==============================================================================================
def _padding_source_indices(in_h, in_w, pads, padding_mode):
    """For each padded position, the flat input index it copies (-1 for a zero)."""
    top, bottom, left, right = pads
    flat = np.arange(in_h * in_w).reshape(in_h, in_w)
    if padding_mode == "zeros":
        return np.pad(flat, ((top, bottom), (left, right)), mode="constant", constant_values=-1)
    return np.pad(flat, ((top, bottom), (left, right)), mode=TORCH_TO_NUMPY_PAD[padding_mode])


def conv2d_backward(grad_out, x, w, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros"):
    """(grad_input, grad_weight, grad_bias) of conv2d: every output gradient is multiplied back
    onto the samples and taps that produced that output (the chain rule, term by term)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    grad_out = np.asarray(grad_out, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x, grad_out = x[None], grad_out[None]
    stride_h, stride_w = pair(stride)
    dil_h, dil_w = pair(dilation)
    out_channels, channels, kernel_h, kernel_w = w.shape
    pads = padding_amounts(padding, (kernel_h, kernel_w), (dil_h, dil_w))
    top, bottom, left, right = pads
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)),
                    mode=TORCH_TO_NUMPY_PAD[padding_mode])
    batch, in_channels, in_h, in_w = x.shape
    out_h, out_w = grad_out.shape[2], grad_out.shape[3]
    grad_padded = np.zeros_like(padded)
    grad_w = np.zeros_like(w)
    out_per_group = out_channels // groups
    for k in range(out_channels):
        group = k // out_per_group
        for c in range(channels):
            channel = group * channels + c
            for r in range(kernel_h):
                for s in range(kernel_w):
                    rows = slice(r * dil_h, r * dil_h + stride_h * (out_h - 1) + 1, stride_h)
                    cols = slice(s * dil_w, s * dil_w + stride_w * (out_w - 1) + 1, stride_w)
                    grad_w[k, c, r, s] = np.sum(grad_out[:, k] * padded[:, channel, rows, cols])
                    grad_padded[:, channel, rows, cols] += w[k, c, r, s] * grad_out[:, k]
    # adjoint of the padding: each padded sample's gradient goes to the sample it copied
    source = _padding_source_indices(in_h, in_w, pads, padding_mode).ravel()
    keep = source >= 0
    grad_x = np.zeros((batch, in_channels, in_h * in_w))
    flat_grad = grad_padded.reshape(batch, in_channels, -1)
    for position in np.flatnonzero(keep):
        grad_x[:, :, source[position]] += flat_grad[:, :, position]
    grad_x = grad_x.reshape(x.shape)
    grad_b = grad_out.sum(axis=(0, 2, 3))
    return (grad_x[0] if unbatched else grad_x), grad_w, grad_b


def conv_transpose2d(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """torch.nn.functional.conv_transpose2d from its definition: every input sample scatters
    ``x * w[c, k]`` into the output at ``i * stride - padding + r * dilation``."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    stride_h, stride_w = pair(stride)
    pad_h, pad_w = pair(padding)
    extra_h, extra_w = pair(output_padding)
    dil_h, dil_w = pair(dilation)
    batch, in_channels, in_h, in_w = x.shape
    _, out_per_group, kernel_h, kernel_w = w.shape
    in_per_group = in_channels // groups
    out_h = (in_h - 1) * stride_h - 2 * pad_h + dil_h * (kernel_h - 1) + extra_h + 1
    out_w = (in_w - 1) * stride_w - 2 * pad_w + dil_w * (kernel_w - 1) + extra_w + 1
    # scatter into a buffer that also holds the rows/cols padding removes, then crop
    full = np.zeros((batch, out_per_group * groups, out_h + 2 * pad_h + kernel_h * dil_h + stride_h,
                     out_w + 2 * pad_w + kernel_w * dil_w + stride_w))
    for c in range(in_channels):
        group = c // in_per_group
        for k in range(out_per_group):
            for r in range(kernel_h):
                for s in range(kernel_w):
                    rows = slice(r * dil_h, r * dil_h + stride_h * (in_h - 1) + 1, stride_h)
                    cols = slice(s * dil_w, s * dil_w + stride_w * (in_w - 1) + 1, stride_w)
                    full[:, group * out_per_group + k, rows, cols] += w[c, k, r, s] * x[:, c]
    out = full[:, :, pad_h:pad_h + out_h, pad_w:pad_w + out_w].copy()
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return out[0] if unbatched else out


def pool_output_size(size, kernel, stride, pad, dilation, ceil_mode):
    """PyTorch's rule (aten/src/ATen/native/Pool.h, pooling_output_shape)."""
    numerator = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode):
    kernel_h, kernel_w = pair(kernel_size)
    stride_h, stride_w = pair(kernel_size if stride is None else stride)
    pad_h, pad_w = pair(padding)
    dil_h, dil_w = pair(dilation)
    out_h = pool_output_size(x.shape[-2], kernel_h, stride_h, pad_h, dil_h, ceil_mode)
    out_w = pool_output_size(x.shape[-1], kernel_w, stride_w, pad_w, dil_w, ceil_mode)
    return kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, out_h, out_w


def _max_pool_core(x, kernel_size, stride, padding, dilation, ceil_mode):
    """Values and flat argmax indices (N, C, H', W'): taps in window order, '>' keeps the first
    maximum, a NaN always takes over; padding never wins."""
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, out_h, out_w = \
        _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode)
    batch, channels, in_h, in_w = x.shape
    values = np.full((batch, channels, out_h, out_w), -np.inf)
    indices = np.full((batch, channels, out_h, out_w), -1, dtype=np.int64)
    for oh in range(out_h):
        for ow in range(out_w):
            for r in range(kernel_h):
                for s in range(kernel_w):
                    ih = oh * stride_h - pad_h + r * dil_h
                    iw = ow * stride_w - pad_w + s * dil_w
                    if not (0 <= ih < in_h and 0 <= iw < in_w):
                        continue
                    v = x[:, :, ih, iw]
                    take = (indices[:, :, oh, ow] < 0) | (v > values[:, :, oh, ow]) | np.isnan(v)
                    values[:, :, oh, ow] = np.where(take, v, values[:, :, oh, ow])
                    indices[:, :, oh, ow] = np.where(take, ih * in_w + iw, indices[:, :, oh, ow])
    return values, indices


def _batched(x):
    x = np.asarray(x, dtype=np.float64)
    return (x[None], True) if x.ndim == 3 else (x, False)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    x, unbatched = _batched(x)
    values, indices = _max_pool_core(x, kernel_size, stride, padding, dilation, ceil_mode)
    if unbatched:
        values, indices = values[0], indices[0]
    return (values, indices) if return_indices else values


def max_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    x, unbatched = _batched(x)
    grad_out = np.asarray(grad_out, dtype=np.float64).reshape(
        (x.shape[0], x.shape[1]) + np.shape(grad_out)[-2:])
    _, indices = _max_pool_core(x, kernel_size, stride, padding, dilation, ceil_mode)
    grad_x = np.zeros(x.shape[:2] + (x.shape[2] * x.shape[3],))
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            # index -1: a window (dilated, padded) that holds only padding has no input to route to
            routed = indices[n, c].ravel() >= 0
            np.add.at(grad_x[n, c], indices[n, c].ravel()[routed], grad_out[n, c].ravel()[routed])
    grad_x = grad_x.reshape(x.shape)
    return grad_x[0] if unbatched else grad_x


def _avg_windows(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """Yield (oh, ow, row slice, col slice, divisor) for every output of avg_pool2d (ATen's rule:
    the count-include-pad divisor is the window clipped to the padded input)."""
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, _, _, out_h, out_w = \
        _pool_geometry(x, kernel_size, stride, padding, 1, ceil_mode)
    in_h, in_w = x.shape[-2:]
    for oh in range(out_h):
        for ow in range(out_w):
            h0, w0 = oh * stride_h - pad_h, ow * stride_w - pad_w
            h1, w1 = min(h0 + kernel_h, in_h + pad_h), min(w0 + kernel_w, in_w + pad_w)
            padded_count = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, in_h), min(w1, in_w)
            if divisor_override:
                divisor = divisor_override
            elif count_include_pad:
                divisor = padded_count
            else:
                divisor = (h1 - h0) * (w1 - w0)
            yield oh, ow, slice(h0, h1), slice(w0, w1), divisor, (out_h, out_w)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    x, unbatched = _batched(x)
    out = None
    for oh, ow, rows, cols, divisor, out_hw in _avg_windows(
            x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        if out is None:
            out = np.zeros(x.shape[:2] + out_hw)
        out[:, :, oh, ow] = x[:, :, rows, cols].sum(axis=(2, 3)) / divisor
    return out[0] if unbatched else out


def avg_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    x, unbatched = _batched(x)
    grad_out = np.asarray(grad_out, dtype=np.float64).reshape(
        x.shape[:2] + np.shape(grad_out)[-2:])
    grad_x = np.zeros_like(x)
    for oh, ow, rows, cols, divisor, _ in _avg_windows(
            x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        grad_x[:, :, rows, cols] += (grad_out[:, :, oh, ow] / divisor)[:, :, None, None]
    return grad_x[0] if unbatched else grad_x


def lp_pool2d(x, norm_type, kernel_size, stride=None, ceil_mode=False):
    """PyTorch's definition: (avg_pool2d(x ** p) * kh * kw) ** (1 / p)."""
    kernel_h, kernel_w = pair(kernel_size)
    mean = avg_pool2d(np.asarray(x, dtype=np.float64) ** norm_type, kernel_size, stride, 0,
                      ceil_mode)
    with np.errstate(invalid="ignore"):
        return (mean * kernel_h * kernel_w) ** (1.0 / norm_type)


def lp_pool2d_backward(grad_out, x, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Chain rule through the definition: d out / d mean, then avg_pool2d's backward, then
    d(x ** p)/dx; a window whose mean is 0 contributes nothing (PyTorch's relu masks it)."""
    x = np.asarray(x, dtype=np.float64)
    kernel_h, kernel_w = pair(kernel_size)
    window = kernel_h * kernel_w
    mean = avg_pool2d(x ** norm_type, kernel_size, stride, 0, ceil_mode)
    with np.errstate(divide="ignore", invalid="ignore"):
        grad_mean = np.where(
            mean == 0, 0.0,
            np.asarray(grad_out) * (1.0 / norm_type) * (mean * window) ** (1.0 / norm_type - 1)
            * window,
        )
    grad_power = avg_pool2d_backward(grad_mean, x, kernel_size, stride, 0, ceil_mode)
    return grad_power * norm_type * x ** (norm_type - 1)

# --- scipy.signal 2-D API: correlate2d / convolve2d -------------------------------------------
# From scipy.signal's documented definitions, in float64 (complex128 for complex input), with the
# boundary applied by np.pad: ``full`` pads R - 1 rows on each side; ``same`` keeps in1's shape,
# centred so that correlation starts (R - 1) // 2 rows before in1 and convolution R // 2 rows.

SIGNAL_TO_NUMPY_PAD = {"fill": "constant", "wrap": "wrap", "symm": "symmetric"}


def _signal_2d(in1, in2, mode, boundary, fillvalue, flip):
    in1 = np.asarray(in1)
    in2 = np.asarray(in2)
    if mode == "valid" and all(b >= a for a, b in zip(in1.shape, in2.shape)) and in1.shape != in2.shape:
        # the larger input plays in1; correlation is then reversed (convolution commutes)
        swapped = _signal_2d(in2, in1, mode, boundary, fillvalue, flip)
        return swapped if flip else swapped[::-1, ::-1]
    exact = np.complex128 if np.iscomplexobj(in1) or np.iscomplexobj(in2) else np.float64
    x = in1.astype(exact)
    kernel = in2.astype(exact)
    kernel = kernel[::-1, ::-1] if flip else np.conj(kernel)
    kernel_h, kernel_w = kernel.shape
    if mode == "full":
        pads = ((kernel_h - 1, kernel_h - 1), (kernel_w - 1, kernel_w - 1))
    elif mode == "same":
        top = kernel_h // 2 if flip else (kernel_h - 1) // 2
        left = kernel_w // 2 if flip else (kernel_w - 1) // 2
        pads = ((top, kernel_h - 1 - top), (left, kernel_w - 1 - left))
    else:
        pads = ((0, 0), (0, 0))
    extra = {"constant_values": fillvalue} if boundary == "fill" else {}
    padded = np.pad(x, pads, mode=SIGNAL_TO_NUMPY_PAD[boundary], **extra)
    out_h = padded.shape[0] - kernel_h + 1
    out_w = padded.shape[1] - kernel_w + 1
    out = np.zeros((out_h, out_w), dtype=exact)
    for r in range(kernel_h):
        for s in range(kernel_w):
            out += kernel[r, s] * padded[r:r + out_h, s:s + out_w]
    return out


def correlate2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    """scipy.signal.correlate2d from its definition: sum in1[i + r, j + s] * conj(in2[r, s])."""
    return _signal_2d(in1, in2, mode, boundary, fillvalue, flip=False)


def convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    """scipy.signal.convolve2d from its definition: sum in1[i - r, j - s] * in2[r, s]."""
    return _signal_2d(in1, in2, mode, boundary, fillvalue, flip=True)


# --- scipy.signal N-d API: correlate / convolve (issue 19) ------------------------------------
# From the definition, any number of dimensions: the full convolution adds one shifted, scaled copy
# of in1 per element of in2; correlation is convolution with in2 reversed and conjugated.  Floats
# accumulate in float64 (complex128), integers in int64 (wrapping, the residue scipy's integer
# loops keep) — the caller casts to the result dtype.  ``same`` is the centred part of ``full``
# with in1's shape; ``valid`` the centred part of shape in1 - in2 + 1, with the larger input
# playing in1 (a swapped correlation is reversed and conjugated), as scipy documents.

def _accumulation_dtype(in1, in2):
    kind = np.result_type(in1, in2).kind
    return {"c": np.complex128, "f": np.float64}.get(kind, np.int64)


def convolve_nd_full(in1, in2):
    in1 = np.asarray(in1)
    in2 = np.asarray(in2)
    dtype = _accumulation_dtype(in1, in2)
    out = np.zeros(tuple(a + b - 1 for a, b in zip(in1.shape, in2.shape)), dtype=dtype)
    x = in1.astype(dtype)
    weights = in2.astype(dtype)
    for index in np.ndindex(*in2.shape):
        window = tuple(slice(i, i + n) for i, n in zip(index, in1.shape))
        out[window] += weights[index] * x
    return out


def _centred(array, shape):
    start = [(n - m) // 2 for n, m in zip(array.shape, shape)]
    return array[tuple(slice(s, s + m) for s, m in zip(start, shape))]


def convolve_nd(in1, in2, mode="full"):
    """scipy.signal.convolve from its definition (accumulation dtype, see above)."""
    in1 = np.asarray(in1)
    in2 = np.asarray(in2)
    if mode == "valid" and all(b >= a for a, b in zip(in1.shape, in2.shape)):
        in1, in2 = in2, in1
    full = convolve_nd_full(in1, in2)
    if mode == "full":
        return full
    if mode == "same":
        return _centred(full, in1.shape)
    return _centred(full, tuple(a - b + 1 for a, b in zip(in1.shape, in2.shape)))


def correlate_nd(in1, in2, mode="full"):
    """scipy.signal.correlate from its definition: sum_l in1[l + k] * conj(in2[l]) (shifted)."""
    in1 = np.asarray(in1)
    in2 = np.asarray(in2)
    if mode == "valid" and in1.shape != in2.shape and all(
            b >= a for a, b in zip(in1.shape, in2.shape)):
        swapped = correlate_nd(in2, in1, mode)
        reversed_ = swapped[(slice(None, None, -1),) * swapped.ndim]
        return np.conj(reversed_) if np.iscomplexobj(reversed_) else reversed_
    reversed_in2 = in2[(slice(None, None, -1),) * in2.ndim]
    return convolve_nd(in1, np.conj(reversed_in2) if np.iscomplexobj(in2) else reversed_in2, mode)


# ==============================================================================================
# Issue 19: conv3d, from its definition (float64, explicit padding with np.pad).
# ==============================================================================================
def triple(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value, value)


def conv3d_padding_amounts(padding, kernel, dilation):
    """((front, back), (top, bottom), (left, right)) as PyTorch resolves conv3d's ``padding``."""
    if padding == "valid":
        return ((0, 0),) * 3
    if padding == "same":
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return tuple((total // 2, total - total // 2) for total in totals)
    return tuple((p, p) for p in triple(padding))


def conv3d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """torch.nn.functional.conv3d from its definition (cross-correlation), NCDHW or CDHW: for every
    output channel, input channel of its group and tap, add the strided window times the tap."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    unbatched = x.ndim == 4
    if unbatched:
        x = x[None]
    stride, dilation = triple(stride), triple(dilation)
    out_channels, channels, *kernel = w.shape
    pads = conv3d_padding_amounts(padding, kernel, dilation)
    padded = np.pad(x, ((0, 0), (0, 0)) + pads, mode=TORCH_TO_NUMPY_PAD[padding_mode])
    out_size = [(p - d * (k - 1) - 1) // s + 1
                for p, k, d, s in zip(padded.shape[2:], kernel, dilation, stride)]
    out = np.zeros((x.shape[0], out_channels, *out_size))
    out_per_group = out_channels // groups
    for k in range(out_channels):
        group = k // out_per_group
        for c in range(channels):
            volume = padded[:, group * channels + c]
            for t in range(kernel[0]):
                for r in range(kernel[1]):
                    for s in range(kernel[2]):
                        window = volume[
                            :,
                            t * dilation[0]: t * dilation[0] + stride[0] * (out_size[0] - 1) + 1: stride[0],
                            r * dilation[1]: r * dilation[1] + stride[1] * (out_size[1] - 1) + 1: stride[1],
                            s * dilation[2]: s * dilation[2] + stride[2] * (out_size[2] - 1) + 1: stride[2],
                        ]
                        out[:, k] += w[k, c, t, r, s] * window
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)[None, :, None, None, None]
    return out[0] if unbatched else out


def _pool3d_geometry(shape, kernel_size, stride, padding, dilation, ceil_mode):
    kernel = triple(kernel_size)
    stride = triple(kernel_size if stride is None else stride)
    padding, dilation = triple(padding), triple(dilation)
    out = tuple(pool_output_size(size, k, s, p, d, ceil_mode)
                for size, k, s, p, d in zip(shape[-3:], kernel, stride, padding, dilation))
    return kernel, stride, padding, dilation, out


def _windows3d(shape, kernel, stride, padding, dilation, out):
    """For every output position, the flat in-volume indices of its window's samples inside the
    input, in window order."""
    in_d, in_h, in_w = shape[-3:]
    for position in np.ndindex(*out):
        taps = []
        for tap in np.ndindex(*kernel):
            index = [o * s - p + t * d for o, s, p, t, d in zip(position, stride, padding, tap,
                                                                 dilation)]
            if all(0 <= i < n for i, n in zip(index, (in_d, in_h, in_w))):
                taps.append((index[0] * in_h + index[1]) * in_w + index[2])
        yield position, taps


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(values, flat indices) of torch's max_pool3d, NCDHW: the first maximum in window order,
    a NaN always takes over (the last one)."""
    x = np.asarray(x, dtype=np.float64)
    kernel, stride, padding, dilation, out = _pool3d_geometry(x.shape, kernel_size, stride,
                                                              padding, dilation, ceil_mode)
    flat = x.reshape(x.shape[:2] + (-1,))
    values = np.full(x.shape[:2] + out, -np.inf)
    indices = np.full(x.shape[:2] + out, -1, dtype=np.int64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for position, taps in _windows3d(x.shape, kernel, stride, padding, dilation, out):
                best, best_index = -np.inf, -1
                for index in taps:
                    value = flat[n, c, index]
                    if best_index < 0 or value > best or np.isnan(value):
                        best, best_index = value, index
                values[(n, c) + position], indices[(n, c) + position] = best, best_index
    return values, indices


def max_pool3d_backward(grad_out, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    _, indices = max_pool3d(x, kernel_size, stride, padding, dilation, ceil_mode)
    grad_out = np.asarray(grad_out, dtype=np.float64)
    grad = np.zeros(x.shape[:2] + (int(np.prod(x.shape[2:])),))
    for n, c, *position in np.ndindex(*indices.shape):
        if indices[(n, c, *position)] >= 0:  # a window of padding only (dilation) sends nothing
            grad[n, c, indices[(n, c, *position)]] += grad_out[(n, c, *position)]
    return grad.reshape(x.shape)


def _avg_divisors3d(shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                    divisor_override):
    """(window taps, divisor) per output position of torch's avg_pool3d."""
    kernel, stride, padding, dilation, out = _pool3d_geometry(shape, kernel_size, stride, padding,
                                                              1, ceil_mode)
    for position, taps in _windows3d(shape, kernel, stride, padding, dilation, out):
        if divisor_override:
            divisor = divisor_override
        elif count_include_pad:  # the window clipped to the padded input
            divisor = 1
            for o, s, p, k, size in zip(position, stride, padding, kernel, shape[-3:]):
                start = o * s - p
                divisor *= min(start + k, size + p) - start
        else:
            divisor = len(taps)
        yield position, taps, divisor


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    x = np.asarray(x, dtype=np.float64)
    windows = list(_avg_divisors3d(x.shape, kernel_size, stride, padding, ceil_mode,
                                   count_include_pad, divisor_override))
    out_size = tuple(np.max([position for position, _, _ in windows], axis=0) + 1)
    flat = x.reshape(x.shape[:2] + (-1,))
    out = np.zeros(x.shape[:2] + out_size)
    for position, taps, divisor in windows:
        out[(slice(None), slice(None)) + position] = flat[:, :, taps].sum(axis=2) / divisor
    return out


def avg_pool3d_backward(grad_out, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    grad_out = np.asarray(grad_out, dtype=np.float64)
    grad = np.zeros(x.shape[:2] + (int(np.prod(x.shape[2:])),))
    for position, taps, divisor in _avg_divisors3d(x.shape, kernel_size, stride, padding,
                                                   ceil_mode, count_include_pad, divisor_override):
        for index in taps:
            grad[:, :, index] += grad_out[(slice(None), slice(None)) + position] / divisor
    return grad.reshape(x.shape)


def conv_transpose3d(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """torch.nn.functional.conv_transpose3d from its definition: every input sample scatters
    ``x * w[c, k]`` into the output at ``i * stride - padding + t * dilation`` per axis (into a
    buffer that also holds what padding removes, then cropped)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    unbatched = x.ndim == 4
    if unbatched:
        x = x[None]
    stride, padding = triple(stride), triple(padding)
    output_padding, dilation = triple(output_padding), triple(dilation)
    batch, in_channels, *in_size = x.shape
    _, out_per_group, *kernel = w.shape
    in_per_group = in_channels // groups
    out_size = [(i - 1) * s - 2 * p + d * (k - 1) + e + 1 for i, s, p, d, k, e in
                zip(in_size, stride, padding, dilation, kernel, output_padding)]
    full = np.zeros((batch, out_per_group * groups) + tuple(
        o + 2 * p + k * d + s for o, p, k, d, s in zip(out_size, padding, kernel, dilation, stride)))
    for c in range(in_channels):
        group = c // in_per_group
        for k in range(out_per_group):
            for t in range(kernel[0]):
                for r in range(kernel[1]):
                    for s in range(kernel[2]):
                        taps = (t, r, s)
                        window = tuple(
                            slice(tap * d, tap * d + st * (size - 1) + 1, st)
                            for tap, d, st, size in zip(taps, dilation, stride, in_size))
                        full[(slice(None), group * out_per_group + k) + window] += (
                            w[c, k, t, r, s] * x[:, c])
    out = full[(slice(None), slice(None)) + tuple(
        slice(p, p + o) for p, o in zip(padding, out_size))].copy()
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)[None, :, None, None, None]
    return out[0] if unbatched else out
