"""Explicit padding for the boundary modes that are not implicit zeros.

Kernels handle zero padding implicitly (by clipping their loops), so only ``reflect``, ``replicate``,
``circular`` (PyTorch's padding modes) and ``symmetric`` / constant fill (scipy.signal's ``symm`` and
``fill`` boundaries) materialise a padded copy.  The index maps are periodic, so they are correct for
any pad width, including pads wider than the input (which scipy's ``symm``/``wrap`` allow).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._config import njit_kernel, njit_parallel

CONSTANT, REFLECT, REPLICATE, CIRCULAR, SYMMETRIC = range(5)
MODE_CODES = {
    "zeros": CONSTANT, "constant": CONSTANT, "fill": CONSTANT,
    "reflect": REFLECT, "replicate": REPLICATE,
    "circular": CIRCULAR, "wrap": CIRCULAR,
    "symmetric": SYMMETRIC, "symm": SYMMETRIC,
}


@njit_kernel
def source_index(i, size, mode):
    """Index into an axis of length ``size`` that padded position ``i`` (may be < 0 or >= size) reads;
    -1 means 'the constant'."""
    if 0 <= i < size:
        return i
    if mode == CONSTANT:
        return -1
    if mode == REPLICATE:
        return 0 if i < 0 else size - 1
    if mode == CIRCULAR:
        return i % size
    if mode == SYMMETRIC:  # edge sample repeated: ... b a | a b c | c b ...
        m = i % (2 * size)
        return m if m < size else 2 * size - 1 - m
    # REFLECT, edge sample not repeated: ... c b | a b c | b a ...
    if size == 1:
        return 0
    period = 2 * size - 2
    m = i % period
    return m if m < size else period - m


@njit_parallel
def pad_planes(planes, pad_top, pad_bottom, pad_left, pad_right, mode, fill_value):
    """Pad the last two axes of a (P, H, W) stack of planes; one plane per parallel task."""
    count, height, width = planes.shape
    out_h = height + pad_top + pad_bottom
    out_w = width + pad_left + pad_right
    out = np.empty((count, out_h, out_w), dtype=planes.dtype)
    column_source = np.empty(out_w, dtype=np.int64)
    for j in range(out_w):
        column_source[j] = source_index(j - pad_left, width, mode)
    for p in prange(count):
        for i in range(out_h):
            row = source_index(i - pad_top, height, mode)
            if row < 0:
                out[p, i, :] = fill_value
                continue
            for j in range(out_w):
                col = column_source[j]
                out[p, i, j] = planes[p, row, col] if col >= 0 else fill_value
    return out


def pad_nchw(x: np.ndarray, pads, mode: str, fill_value=0) -> np.ndarray:
    """Pad the spatial axes of a C-contiguous (..., H, W) array; ``pads`` is (top, bottom, left, right)."""
    planes = x.reshape((-1,) + x.shape[-2:])
    padded = pad_planes(planes, *pads, MODE_CODES[mode], x.dtype.type(fill_value))
    return padded.reshape(x.shape[:-2] + padded.shape[-2:])


# --- adjoint of padding (for gradients) -------------------------------------------------------
@njit_parallel
def fold_padded_planes(grad_padded, height, width, pad_top, pad_left, mode):
    """Adjoint of ``pad_planes``: every padded sample's gradient is added to the input sample it
    was copied from (samples that were the constant are dropped).  One plane per parallel task, so
    the many-to-one accumulation (a replicated edge receives a whole border) is race-free."""
    count, padded_h, padded_w = grad_padded.shape
    out = np.zeros((count, height, width), dtype=grad_padded.dtype)
    column_source = np.empty(padded_w, dtype=np.int64)
    for j in range(padded_w):
        column_source[j] = source_index(j - pad_left, width, mode)
    for p in prange(count):
        for i in range(padded_h):
            row = source_index(i - pad_top, height, mode)
            if row < 0:
                continue
            dest = out[p, row]
            source = grad_padded[p, i]
            for j in range(padded_w):
                col = column_source[j]
                if col >= 0:
                    dest[col] += source[j]
    return out


def unpad_gradient_nchw(grad_padded: np.ndarray, in_hw, pads, mode: str) -> np.ndarray:
    """Gradient w.r.t. the unpadded (..., H, W) input from the gradient w.r.t. ``pad_nchw``'s output."""
    planes = np.ascontiguousarray(grad_padded).reshape((-1,) + grad_padded.shape[-2:])
    folded = fold_padded_planes(planes, in_hw[0], in_hw[1], pads[0], pads[2], MODE_CODES[mode])
    return folded.reshape(grad_padded.shape[:-2] + tuple(in_hw))


# --- volumes (conv3d) ---------------------------------------------------------------------------
@njit_parallel
def pad_volumes(volumes, pad_front, pad_back, pad_top, pad_bottom, pad_left, pad_right, mode):
    """Pad the last three axes of a (P, D, H, W) stack of volumes (the constant is zero); one
    (volume, output plane) pair per parallel task, so a few large volumes still split."""
    count, depth, height, width = volumes.shape
    out_d = depth + pad_front + pad_back
    out_h = height + pad_top + pad_bottom
    out_w = width + pad_left + pad_right
    out = np.empty((count, out_d, out_h, out_w), dtype=volumes.dtype)
    row_source = np.empty(out_h, dtype=np.int64)
    for i in range(out_h):
        row_source[i] = source_index(i - pad_top, height, mode)
    column_source = np.empty(out_w, dtype=np.int64)
    for j in range(out_w):
        column_source[j] = source_index(j - pad_left, width, mode)
    for task in prange(count * out_d):
        p, plane_index = task // out_d, task % out_d
        plane = source_index(plane_index - pad_front, depth, mode)
        for i in range(out_h):
            row = row_source[i]
            if plane < 0 or row < 0:
                out[p, plane_index, i, :] = 0
                continue
            for j in range(out_w):
                col = column_source[j]
                if col >= 0:
                    out[p, plane_index, i, j] = volumes[p, plane, row, col]
                else:
                    out[p, plane_index, i, j] = 0
    return out


@njit_parallel
def fold_padded_volumes(grad_padded, depth, height, width, pad_front, pad_top, pad_left, mode):
    """Adjoint of ``pad_volumes``: every padded sample's gradient is added to the input sample it
    copied (zeros dropped).  One volume per parallel task: a replicated edge receives gradient
    from many planes, so splitting a volume across tasks would race."""
    count, padded_d, padded_h, padded_w = grad_padded.shape
    out = np.zeros((count, depth, height, width), dtype=grad_padded.dtype)
    row_source = np.empty(padded_h, dtype=np.int64)
    for i in range(padded_h):
        row_source[i] = source_index(i - pad_top, height, mode)
    column_source = np.empty(padded_w, dtype=np.int64)
    for j in range(padded_w):
        column_source[j] = source_index(j - pad_left, width, mode)
    for p in prange(count):
        for plane_index in range(padded_d):
            plane = source_index(plane_index - pad_front, depth, mode)
            if plane < 0:
                continue
            for i in range(padded_h):
                row = row_source[i]
                if row < 0:
                    continue
                dest = out[p, plane, row]
                source = grad_padded[p, plane_index, i]
                for j in range(padded_w):
                    col = column_source[j]
                    if col >= 0:
                        dest[col] += source[j]
    return out


def pad_ncdhw(x: np.ndarray, pads, mode: str) -> np.ndarray:
    """Pad the three spatial axes of a C-contiguous (..., D, H, W) array; ``pads`` is
    (front, back, top, bottom, left, right); ``mode`` a PyTorch padding mode (zeros included)."""
    volumes = x.reshape((-1,) + x.shape[-3:])
    padded = pad_volumes(volumes, *pads, MODE_CODES[mode])
    return padded.reshape(x.shape[:-3] + padded.shape[-3:])


def unpad_gradient_ncdhw(grad_padded: np.ndarray, in_dhw, pads, mode: str) -> np.ndarray:
    """Gradient w.r.t. the unpadded (..., D, H, W) input from the gradient w.r.t. ``pad_ncdhw``'s
    output."""
    volumes = np.ascontiguousarray(grad_padded).reshape((-1,) + grad_padded.shape[-3:])
    folded = fold_padded_volumes(volumes, in_dhw[0], in_dhw[1], in_dhw[2], pads[0], pads[2],
                                 pads[4], MODE_CODES[mode])
    return folded.reshape(grad_padded.shape[:-3] + tuple(in_dhw))
