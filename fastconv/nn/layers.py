"""Layers with parameters or shape changes: Conv1D, Conv2D, Conv3D, Linear, Flatten, BatchNorm2D,
Dropout.

Every layer with parameters computes in their dtype (float32 by default, or float64) and refuses an
input or output gradient of another dtype with a TypeError that names both and the fixes (PyTorch's
rule; see fastconv.nn.module): nothing is converted silently.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from .._config import single_threaded_blas
from ..conv import conv1d, conv2d, conv3d
from ..dispatch import check_algorithm
from ..gradients import conv1d_backward, conv2d_backward, conv3d_backward
from .init import as_rng, bias_uniform, check_dtype, kaiming_uniform
from .module import Layer, checked_array


def _check_input(x, ndim: int, layer: str, expected: str, dtype=None) -> np.ndarray:
    x = checked_array(x, layer, dtype)
    if x.ndim != ndim:
        raise ValueError(f"{layer} expects input of shape {expected}, got shape {x.shape}")
    return x


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class _ConvLayer(Layer):
    """What Conv1D, Conv2D and Conv3D share: PyTorch's initialisation of ``dims``-D kernels, the
    checks on the input, and the forward/backward protocol on one functional pair (``conv`` /
    ``conv_backward``, which validate every other argument on the first call)."""

    dims: int
    layout: str  # the input's axes, for the error message
    conv = None
    conv_backward = None

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                 bias, padding_mode, dtype, rng, algorithm):
        in_channels = _positive_int(in_channels, "in_channels")
        out_channels = _positive_int(out_channels, "out_channels")
        groups = _positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        sizes = (kernel_size if isinstance(kernel_size, (tuple, list))
                 else (kernel_size,) * self.dims)
        if len(sizes) != self.dims:
            raise ValueError(f"kernel_size must be an int or a {self.dims}-tuple, got {kernel_size!r}")
        kernel = tuple(_positive_int(size, "kernel_size") for size in sizes)
        dtype, rng = check_dtype(dtype), as_rng(rng)
        fan_in = in_channels // groups * math.prod(kernel)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel, stride, padding
        self.dilation, self.groups, self.padding_mode = dilation, groups, padding_mode
        self.weights = kaiming_uniform((out_channels, in_channels // groups) + kernel, fan_in, rng,
                                       dtype)
        self.bias = bias_uniform(out_channels, fan_in, rng, dtype) if bias else None
        self.grad_w = np.zeros_like(self.weights)
        self.grad_b = np.zeros_like(self.bias) if bias else None
        self.input_grad = True
        # None where the functional form has a single backend (conv3d)
        self.algorithm = None if algorithm is None else check_algorithm(algorithm)
        self._input = None

    def _options(self) -> dict:
        options = {"padding_mode": self.padding_mode}
        if self.algorithm is not None:
            options["algorithm"] = self.algorithm
        return options

    def forward(self, x):
        name = type(self).__name__
        x = _check_input(x, self.dims + 2, name, self.layout, self.weights.dtype)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} expects {self.in_channels} input channels, got input of shape {x.shape}"
            )
        self._input = x
        return self.conv(x, self.weights, self.bias, self.stride, self.padding, self.dilation,
                         self.groups, **self._options())

    def backward(self, grad_out):
        name = type(self).__name__
        if self._input is None:
            raise ValueError(f"{name}.backward called before forward")
        needs = ("input",) if self.input_grad else ()
        needs += ("weight", "bias") if self.bias is not None else ("weight",)
        grad_input, grad_weight, grad_bias = self.conv_backward(
            checked_array(grad_out, name, self.weights.dtype, what="grad_out"), self._input,
            self.weights, self.stride, self.padding, self.dilation, self.groups, needs=needs,
            **self._options(),
        )
        self.grad_w[...] = grad_weight
        if self.bias is not None:
            self.grad_b[...] = grad_bias
        return grad_input

    def __repr__(self):
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding})")


class Conv1D(_ConvLayer):
    """1-D convolution layer on fastconv's compiled kernels (``conv1d`` / ``conv1d_backward``),
    with PyTorch's ``Conv1d`` semantics and initialisation; the protocol of :class:`Conv2D`.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation : int or (int,); padding also "same"/"valid"
    groups : int dividing both channel counts
    bias : bool
    padding_mode : "zeros", "reflect", "replicate" or "circular"
    dtype : float32 (default) or float64
    rng : None, int seed or numpy Generator, for the initial weights
    algorithm : ``"auto"`` or a name from ``fastconv.algorithms()``, for both passes

    Attributes
    ----------
    weights : (out_channels, in_channels // groups, k) ; bias : (out_channels,) or None
    grad_w, grad_b : gradients of the last ``backward``
    input_grad : bool
        set False on a first layer to skip computing the (unused) gradient of the data; ``backward``
        then returns None.
    """

    dims, layout = 1, "(N, C, L)"
    conv, conv_backward = staticmethod(conv1d), staticmethod(conv1d_backward)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", dtype=np.float32,
                 rng=None, algorithm="auto"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, dtype, rng, algorithm)


class Conv2D(_ConvLayer):
    """2-D convolution layer on fastconv's compiled kernels (``conv2d`` / ``conv2d_backward``).

    A drop-in for the course notes' ``Conv2D(in_channels, out_channels, kernel_size, stride,
    padding)``, with PyTorch's ``Conv2d`` semantics and initialisation.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation : int or (int, int)
    groups : int dividing both channel counts
    bias : bool
    padding_mode : "zeros", "reflect", "replicate" or "circular"
    dtype : float32 (default) or float64
    rng : None, int seed or numpy Generator, for the initial weights
    algorithm : ``"auto"`` (fastconv's dispatcher decides) or a name from ``fastconv.algorithms()``,
        used for both the forward and the backward pass

    Attributes
    ----------
    weights : (out_channels, in_channels // groups, kh, kw) ; bias : (out_channels,) or None
    grad_w, grad_b : gradients of the last ``backward``
    input_grad : bool
        set False on a first layer to skip computing the (unused) gradient of the data; ``backward``
        then returns None.
    """

    dims, layout = 2, "(N, C, H, W)"
    conv, conv_backward = staticmethod(conv2d), staticmethod(conv2d_backward)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", dtype=np.float32, rng=None,
                 algorithm="auto"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, dtype, rng, algorithm)


class Conv3D(_ConvLayer):
    """3-D convolution layer on fastconv's compiled kernels (``conv3d`` / ``conv3d_backward``),
    with PyTorch's ``Conv3d`` semantics and initialisation; the protocol of :class:`Conv2D`.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation : int or (int, int, int); padding also "same"/"valid"
    groups : int dividing both channel counts
    bias : bool
    padding_mode : "zeros", "reflect", "replicate" or "circular"
    dtype : float32 (default) or float64
    rng : None, int seed or numpy Generator, for the initial weights
    (no ``algorithm``: conv3d has one backend)

    Attributes
    ----------
    weights : (out_channels, in_channels // groups, kt, kh, kw) ; bias : (out_channels,) or None
    grad_w, grad_b : gradients of the last ``backward``
    input_grad : bool
        set False on a first layer to skip computing the (unused) gradient of the data; ``backward``
        then returns None.
    """

    dims, layout = 3, "(N, C, D, H, W)"
    conv, conv_backward = staticmethod(conv3d), staticmethod(conv3d_backward)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", dtype=np.float32,
                 rng=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, dtype, rng, None)


SMALL_GEMM_MACS = 32 << 20
"""Below this many multiply-adds a Linear layer's GEMMs run single-threaded (see
fastconv._config.single_threaded_blas: idle BLAS workers spinning would slow the conv kernels)."""


def _blas_threads_for(macs):
    return single_threaded_blas() if macs < SMALL_GEMM_MACS else contextlib.nullcontext()


class Linear(Layer):
    """Fully connected layer ``y = x @ weights.T + bias`` (BLAS), PyTorch layout and init.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    dtype : float32 (default) or float64
    rng : None, int seed or numpy Generator
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, rng=None):
        in_features = _positive_int(in_features, "in_features")
        out_features = _positive_int(out_features, "out_features")
        dtype, rng = check_dtype(dtype), as_rng(rng)
        self.in_features, self.out_features = in_features, out_features
        self.weights = kaiming_uniform((out_features, in_features), in_features, rng, dtype)
        self.bias = bias_uniform(out_features, in_features, rng, dtype) if bias else None
        self.grad_w = np.zeros_like(self.weights)
        self.grad_b = np.zeros_like(self.bias) if bias else None
        self._input = None

    def forward(self, x):
        x = _check_input(x, 2, "Linear", "(N, in_features)", self.weights.dtype)
        if x.shape[1] != self.in_features:
            raise ValueError(f"Linear expects {self.in_features} features, got input of shape {x.shape}")
        self._input = x
        with _blas_threads_for(x.shape[0] * self.weights.size):
            out = x @ self.weights.T
        if self.bias is not None:
            out += self.bias
        return out

    def backward(self, grad_out):
        grad_out = checked_array(grad_out, "Linear", self.weights.dtype, what="grad_out")
        with _blas_threads_for(grad_out.shape[0] * self.weights.size):
            np.matmul(grad_out.T, self._input, out=self.grad_w)
            grad_input = grad_out @ self.weights
        if self.bias is not None:
            grad_out.sum(axis=0, out=self.grad_b)
        return grad_input

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features})"


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W); backward restores the shape."""

    def forward(self, x):
        x = np.asarray(x)
        self._shape = x.shape
        # the feature count spelled out: reshape cannot infer -1 for a batch of zero samples
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, grad_out):
        return np.asarray(grad_out).reshape(self._shape)


class BatchNorm2D(Layer):
    """Batch normalisation over (N, H, W) per channel, PyTorch ``BatchNorm2d`` semantics.

    In training mode it normalises with the batch's mean and biased variance and updates running
    statistics (``running_var`` with the unbiased variance, as PyTorch); in eval mode it uses them.

    Parameters
    ----------
    num_features : int, the channel count C
    eps : float added to the variance
    momentum : float, running = (1 - momentum) * running + momentum * batch
    dtype : float32 (default) or float64

    Attributes
    ----------
    weights (gamma), bias (beta) : (C,) ; running_mean, running_var : (C,) ; training : bool
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, *, dtype=np.float32):
        num_features = _positive_int(num_features, "num_features")
        dtype = check_dtype(dtype)
        self.num_features, self.eps, self.momentum = num_features, float(eps), float(momentum)
        self.weights = np.ones(num_features, dtype=dtype)
        self.bias = np.zeros(num_features, dtype=dtype)
        self.grad_w = np.zeros_like(self.weights)
        self.grad_b = np.zeros_like(self.bias)
        self.running_mean = np.zeros(num_features, dtype=dtype)
        self.running_var = np.ones(num_features, dtype=dtype)
        self.training = True

    def forward(self, x):
        x = _check_input(x, 4, "BatchNorm2D", "(N, C, H, W)", self.weights.dtype)
        if x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2D expects {self.num_features} channels, got input of shape {x.shape}")
        self._used_batch_stats = self.training
        if x.shape[0] == 0:
            # no samples (PyTorch): an empty output, running statistics left as they are
            self._normalised = x
            self._inv_std = np.zeros(self.num_features, x.dtype)
            return np.empty_like(x)
        if self.training:
            count = x.shape[0] * x.shape[2] * x.shape[3]
            if count < 2:
                raise ValueError(
                    f"BatchNorm2D in training mode needs more than one value per channel, got input {x.shape}"
                )
            mean = x.mean(axis=(0, 2, 3))
            var = x.var(axis=(0, 2, 3))
            m = self.momentum
            self.running_mean[...] = (1 - m) * self.running_mean + m * mean
            self.running_var[...] = (1 - m) * self.running_var + m * var * (count / (count - 1))
        else:
            mean, var = self.running_mean, self.running_var
        self._inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype)
        self._normalised = (x - mean[:, None, None]) * self._inv_std[:, None, None]
        return self._normalised * self.weights[:, None, None] + self.bias[:, None, None]

    def backward(self, grad_out):
        grad_out = checked_array(grad_out, "BatchNorm2D", self.weights.dtype, what="grad_out")
        normalised = self._normalised
        grad_out.sum(axis=(0, 2, 3), out=self.grad_b)
        (grad_out * normalised).sum(axis=(0, 2, 3), out=self.grad_w)
        scale = (self.weights * self._inv_std)[:, None, None]
        if not self._used_batch_stats or grad_out.shape[0] == 0:
            return grad_out * scale
        # Batch statistics depend on every input: subtract the mean gradient and its projection on
        # the normalised values (the standard closed form of the batch-norm Jacobian).
        count = grad_out.shape[0] * grad_out.shape[2] * grad_out.shape[3]
        mean_grad = (self.grad_b / count)[:, None, None]
        mean_grad_dot = (self.grad_w / count)[:, None, None]
        return scale * (grad_out - mean_grad - normalised * mean_grad_dot)

    def state_dict(self):
        return {"weights": self.weights, "bias": self.bias,
                "running_mean": self.running_mean, "running_var": self.running_var}

    def __repr__(self):
        return f"BatchNorm2D({self.num_features})"


class Dropout(Layer):
    """Inverted dropout: zero each value with probability ``p`` in training, scale the rest by 1/(1-p);
    the identity in eval mode.

    Parameters
    ----------
    p : float in [0, 1)
    rng : None, int seed or numpy Generator
    """

    def __init__(self, p=0.5, *, rng=None):
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"Dropout p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = as_rng(rng)
        self.training = True
        self._mask = None

    def forward(self, x):
        x = checked_array(x, "Dropout")
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p
        self._mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self._mask

    def backward(self, grad_out):
        if self._mask is None:
            return grad_out
        grad_out = checked_array(grad_out, "Dropout", self._mask.dtype, what="grad_out",
                                 parameters=False)
        return grad_out * self._mask

    def __repr__(self):
        return f"Dropout(p={self.p})"
