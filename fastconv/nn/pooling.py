"""Pooling layers (1-D, 2-D and 3-D) on fastconv's compiled pooling kernels (forward and backward).

Each computes in its input's dtype, float32 or float64 (others are a TypeError: fastconv.nn never
converts silently).  ``backward`` hands the kernels the input saved by ``forward``; the kernels
recompute which window element won (max) or how it was weighted (avg, lp), so no index array is
kept between passes.
"""
from __future__ import annotations

import numpy as np

from .. import pooling, pooling3d
from .module import Layer, checked_array


def _check_layout(x, layer: str, layout: str) -> np.ndarray:
    """``x`` as a C-contiguous array with one axis per letter of ``layout`` ("NCHW", "NCDHW")."""
    x = checked_array(x, layer)
    if x.ndim != len(layout):
        raise ValueError(
            f"{layer} expects input of shape ({', '.join(layout)}), got shape {x.shape}"
        )
    return np.ascontiguousarray(x)


class _Pool(Layer):
    _forward = _backward = None  # the fastconv.pooling functions, set by each subclass
    _layout = "NCHW"  # the input's axes; "NCL" for the 1-D layers, "NCDHW" for the 3-D ones

    def _options(self) -> dict:
        raise NotImplementedError

    def _leading(self) -> tuple:
        return ()

    def forward(self, x):
        self._input = _check_layout(x, type(self).__name__, self._layout)
        return self._forward(self._input, *self._leading(), **self._options())

    def backward(self, grad_out):
        grad_out = checked_array(grad_out, type(self).__name__, self._input.dtype, what="grad_out",
                                 parameters=False)
        return self._backward(grad_out, self._input, *self._leading(), **self._options())

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({options})"


class MaxPool2D(_Pool):
    """Max pooling, ``torch.nn.MaxPool2d`` semantics (``stride`` defaults to ``kernel_size``)."""

    _forward, _backward = staticmethod(pooling.max_pool2d), staticmethod(pooling.max_pool2d_backward)

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def _options(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    dilation=self.dilation, ceil_mode=self.ceil_mode)


class MaxPooling(MaxPool2D):
    """The course notes' name and signature: ``MaxPooling(ksize=2, stride=2)``."""

    def __init__(self, ksize=2, stride=2):
        super().__init__(ksize, stride)


class AvgPool2D(_Pool):
    """Average pooling, ``torch.nn.AvgPool2d`` semantics."""

    _forward, _backward = staticmethod(pooling.avg_pool2d), staticmethod(pooling.avg_pool2d_backward)

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def _options(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad,
                    divisor_override=self.divisor_override)


class MaxPool3D(MaxPool2D):
    """3-D max pooling on (N, C, D, H, W), ``torch.nn.MaxPool3d`` semantics."""

    _forward = staticmethod(pooling3d.max_pool3d)
    _backward = staticmethod(pooling3d.max_pool3d_backward)
    _layout = "NCDHW"


class AvgPool3D(AvgPool2D):
    """3-D average pooling on (N, C, D, H, W), ``torch.nn.AvgPool3d`` semantics."""

    _forward = staticmethod(pooling3d.avg_pool3d)
    _backward = staticmethod(pooling3d.avg_pool3d_backward)
    _layout = "NCDHW"


class MaxPool1D(MaxPool2D):
    """1-D max pooling on (N, C, L), ``torch.nn.MaxPool1d`` semantics (``stride`` defaults to
    ``kernel_size``)."""

    _forward, _backward = staticmethod(pooling.max_pool1d), staticmethod(pooling.max_pool1d_backward)
    _layout = "NCL"


class AvgPool1D(_Pool):
    """1-D average pooling on (N, C, L), ``torch.nn.AvgPool1d`` semantics (no divisor_override,
    as PyTorch's)."""

    _forward, _backward = staticmethod(pooling.avg_pool1d), staticmethod(pooling.avg_pool1d_backward)
    _layout = "NCL"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode
        self.count_include_pad = count_include_pad

    def _options(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad)


class LPPool2D(_Pool):
    """Power-average pooling ``(sum x**p)**(1/p)`` over each window, ``torch.nn.LPPool2d`` semantics."""

    _forward, _backward = staticmethod(pooling.lp_pool2d), staticmethod(pooling.lp_pool2d_backward)

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode=False):
        self.norm_type, self.kernel_size, self.stride, self.ceil_mode = norm_type, kernel_size, stride, ceil_mode

    def _leading(self):
        return (self.norm_type,)

    def _options(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, ceil_mode=self.ceil_mode)
