"""Card-1 protocol layers for the operators without weight sharing (or with partial sharing).

Every layer has ``forward(x)``, ``backward(grad_out)`` (accumulates the parameter gradients and
returns the gradient for the layer below), ``zero_grad()``, ``update(lr)`` (a plain SGD step) and the
attributes ``weights``, ``bias``, ``grad_w``, ``grad_b`` (None for the parameter-free pooling layer,
whose ``update`` and ``zero_grad`` do nothing).

Initialisation follows PyTorch's conv layers (Kaiming-uniform with ``a = sqrt(5)``): weights and
biases are drawn from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in = C R S``, one kernel
bank (and one bias vector) per tile / output position.
"""
from __future__ import annotations

import math

import numpy as np

from ..formulas import conv_output_shape
from ..local import local_conv2d, local_conv2d_backward, tiled_conv2d, tiled_conv2d_backward
from .._params import as_pair
from ..weighted_pooling import weighted_avg_pool2d, weighted_avg_pool2d_backward
from .init import check_dtype
from .module import check_gradient_dtype, checked_array


def _generator(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _positive_int(value, name) -> int:
    if isinstance(value, (bool, np.bool_)) or not hasattr(value, "__index__") or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class _KernelBankLayer:
    """Shared machinery of TiledConv2D and LocallyConnected2D: parameters, caching, SGD."""

    _forward_op = staticmethod(tiled_conv2d)
    _backward_op = staticmethod(tiled_conv2d_backward)

    def __init__(self, in_channels, out_channels, kernel_size, tiles, stride, padding, bias, dtype, rng):
        in_channels = _positive_int(in_channels, "in_channels")
        out_channels = _positive_int(out_channels, "out_channels")
        kernel_h, kernel_w = as_pair(kernel_size, "kernel_size", minimum=1)
        tile_h, tile_w = as_pair(tiles, "tiles", minimum=1)
        self.stride = as_pair(stride, "stride", minimum=1)
        self.padding = padding
        dtype = check_dtype(dtype)
        generator = _generator(rng)
        bound = 1.0 / math.sqrt(in_channels * kernel_h * kernel_w)
        self.weights = generator.uniform(
            -bound, bound, (tile_h, tile_w, out_channels, in_channels, kernel_h, kernel_w)
        ).astype(dtype)
        self.bias = (generator.uniform(-bound, bound, (tile_h, tile_w, out_channels)).astype(dtype)
                     if bias else None)
        self.grad_w = np.zeros_like(self.weights)
        self.grad_b = None if self.bias is None else np.zeros_like(self.bias)
        self._input = None

    def forward(self, x):
        x = checked_array(x, type(self).__name__, self.weights.dtype)
        out = self._forward_op(x, self.weights, self.bias, self.stride, self.padding)
        self._input = x
        return out

    def backward(self, grad_out):
        if self._input is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        grad_out = checked_array(grad_out, type(self).__name__, self.weights.dtype, what="grad_out")
        grad_input, grad_weight, grad_bias = self._backward_op(
            grad_out, self._input, self.weights, self.bias, self.stride, self.padding
        )
        self.grad_w += grad_weight
        if self.grad_b is not None:
            self.grad_b += grad_bias
        return grad_input

    def zero_grad(self):
        self.grad_w[...] = 0
        if self.grad_b is not None:
            self.grad_b[...] = 0

    def update(self, lr):
        check_gradient_dtype(self.grad_w, self.weights, self, "grad_w", "weights")
        self.weights -= lr * self.grad_w
        if self.bias is not None:
            check_gradient_dtype(self.grad_b, self.bias, self, "grad_b", "bias")
            self.bias -= lr * self.grad_b


class TiledConv2D(_KernelBankLayer):
    """Tiled convolution layer: ``tiles = (tH, tW)`` kernel banks cycling over the output.

    weights (tH, tW, K, C, R, S), bias (tH, tW, K) — one bias vector per tile.  ``tiles=1`` is an
    ordinary Conv2D.  See :func:`fastconv.tiled_conv2d`.
    """

    def __init__(self, in_channels, out_channels, kernel_size, tiles=1, stride=1, padding=0,
                 bias=True, *, dtype=np.float32, rng=None):
        super().__init__(in_channels, out_channels, kernel_size, tiles, stride, padding, bias, dtype, rng)


class LocallyConnected2D(_KernelBankLayer):
    """Locally connected (unshared) layer: a different kernel bank at every output position.

    The output size, hence the weight shape (out_h, out_w, K, C, R, S) and the untied bias
    (out_h, out_w, K), is fixed by ``input_size`` (H, W).  See :func:`fastconv.local_conv2d`.
    """

    _forward_op = staticmethod(local_conv2d)
    _backward_op = staticmethod(local_conv2d_backward)

    def __init__(self, in_channels, out_channels, kernel_size, input_size, stride=1, padding=0,
                 bias=True, *, dtype=np.float32, rng=None):
        if isinstance(padding, str):
            raise ValueError("LocallyConnected2D takes an int or (int, int) padding")
        output_size = conv_output_shape(input_size, kernel_size, stride, padding)
        super().__init__(in_channels, out_channels, kernel_size, output_size, stride, padding, bias,
                         dtype, rng)


class WeightedAvgPool2D:
    """Gaussian distance-weighted average pooling layer (no parameters).

    See :func:`fastconv.weighted_avg_pool2d`; ``sigma=inf`` is AvgPool2D.
    """

    def __init__(self, kernel_size, stride=None, padding=0, sigma=1.0, *, count_include_pad=True):
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.sigma = sigma
        self.count_include_pad = count_include_pad
        self.weights = self.bias = self.grad_w = self.grad_b = None
        self._input = None

    def forward(self, x):
        x = checked_array(x, "WeightedAvgPool2D")
        out = weighted_avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.sigma,
                                  count_include_pad=self.count_include_pad)
        self._input = x
        return out

    def backward(self, grad_out):
        if self._input is None:
            raise RuntimeError("WeightedAvgPool2D.backward called before forward")
        grad_out = checked_array(grad_out, "WeightedAvgPool2D", self._input.dtype, what="grad_out",
                                 parameters=False)
        return weighted_avg_pool2d_backward(grad_out, self._input, self.kernel_size, self.stride,
                                            self.padding, self.sigma,
                                            count_include_pad=self.count_include_pad)

    def zero_grad(self):
        """No parameters: nothing to reset."""

    def update(self, lr):
        """No parameters: nothing to update."""
