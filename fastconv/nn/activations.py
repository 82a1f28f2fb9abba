"""Element-wise activations; each computes in its input's dtype, float32 or float64 (other dtypes
are a TypeError: fastconv.nn never converts silently).

ReLU and sigmoid run compiled, multi-threaded passes (ReLU forward: one read, one write; backward:
the saved output and the incoming gradient in, the gradient out; the sigmoid's exponential is
NumPy's SIMD one).  NumPy's versions took two or three passes and one thread, a noticeable share
of a LeNet training step (docs/measurements.md).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from .._config import njit_parallel
from .module import Layer, checked_array

# Element-wise work is split into this many values per task: enough to amortise a task, small
# enough that every thread gets several.  Each task slices its chunk first so that the loop indexes
# from 0: an index Numba cannot prove non-negative gets a wrap-around select that stops LLVM from
# vectorising (an order of magnitude slower: docs/measurements.md).
_CHUNK = 1 << 14


@njit_parallel
def _relu_forward(x, out):
    zero = x.dtype.type(0)
    for chunk in prange((x.size + _CHUNK - 1) // _CHUNK):
        src, dst = x[chunk * _CHUNK:(chunk + 1) * _CHUNK], out[chunk * _CHUNK:(chunk + 1) * _CHUNK]
        for i in range(src.size):
            value = src[i]
            # NaN fails the comparison and passes through, as torch.relu
            dst[i] = zero if value <= zero else value


@njit_parallel
def _relu_backward(grad_out, out, grad_in):
    zero = grad_in.dtype.type(0)
    for chunk in prange((out.size + _CHUNK - 1) // _CHUNK):
        part = slice(chunk * _CHUNK, (chunk + 1) * _CHUNK)
        grad, saved, dst = grad_out[part], out[part], grad_in[part]
        for i in range(dst.size):
            # PyTorch's threshold rule: 0 where the output is <= 0 (so at x = 0), the gradient
            # passed through elsewhere (NaN included)
            dst[i] = zero if saved[i] <= zero else grad[i]


@njit_parallel
def _sigmoid_from_decay(x, decay, out):
    """out = 1 / (1 + exp(-x)) from decay = exp(-|x|) (which never overflows): the two branches
    are the same function rearranged.  The exponential itself is NumPy's: its SIMD exp is several
    times faster than the scalar one a compiled loop gets without Intel's SVML."""
    one = x.dtype.type(1)
    for chunk in prange((x.size + _CHUNK - 1) // _CHUNK):
        part = slice(chunk * _CHUNK, (chunk + 1) * _CHUNK)
        src, decays, dst = x[part], decay[part], out[part]
        for i in range(dst.size):
            d = decays[i]
            dst[i] = one / (one + d) if src[i] >= 0 else d / (one + d)


@njit_parallel
def _sigmoid_backward(grad_out, out, grad_in):
    one = out.dtype.type(1)
    for chunk in prange((out.size + _CHUNK - 1) // _CHUNK):
        part = slice(chunk * _CHUNK, (chunk + 1) * _CHUNK)
        grad, saved, dst = grad_out[part], out[part], grad_in[part]
        for i in range(dst.size):
            value = saved[i]
            dst[i] = grad[i] * value * (one - value)


def _flat_input(x, layer):
    return np.ascontiguousarray(checked_array(x, layer))


def _flat_gradient(grad_out, like, layer):
    grad_out = np.ascontiguousarray(
        checked_array(grad_out, layer, like.dtype, what="grad_out", parameters=False)
    )
    if grad_out.shape != like.shape:
        raise ValueError(f"grad_out has shape {grad_out.shape}, the forward output {like.shape}")
    return grad_out


class _SavedOutputActivation(Layer):
    """An activation whose gradient is a function of its output: the backward kernel maps
    (grad_out, saved output) to grad_in."""

    _backward_kernel = None  # set by each subclass (a staticmethod-wrapped compiled kernel)

    def backward(self, grad_out):
        grad_out = _flat_gradient(grad_out, self._out, type(self).__name__)
        grad_in = np.empty_like(grad_out)
        self._backward_kernel(grad_out.reshape(-1), self._out.reshape(-1), grad_in.reshape(-1))
        return grad_in


class ReLU(_SavedOutputActivation):
    """``max(x, 0)``; NaN propagates, the gradient at 0 is 0 and at NaN passes through, as in
    PyTorch."""

    _backward_kernel = staticmethod(_relu_backward)

    def forward(self, x):
        x = _flat_input(x, "ReLU")
        self._out = np.empty_like(x)
        _relu_forward(x.reshape(-1), self._out.reshape(-1))
        return self._out


class Sigmoid(_SavedOutputActivation):
    """``1 / (1 + exp(-x))``, computed without overflow for large ``|x|``."""

    _backward_kernel = staticmethod(_sigmoid_backward)

    def forward(self, x):
        x = _flat_input(x, "Sigmoid")
        decay = np.abs(x)
        np.negative(decay, out=decay)
        np.exp(decay, out=decay)
        self._out = np.empty_like(x)
        _sigmoid_from_decay(x.reshape(-1), decay.reshape(-1), self._out.reshape(-1))
        return self._out


class Tanh(Layer):
    """Hyperbolic tangent."""

    def forward(self, x):
        self._out = np.tanh(checked_array(x, "Tanh"))
        return self._out

    def backward(self, grad_out):
        grad_out = checked_array(grad_out, "Tanh", self._out.dtype, what="grad_out",
                                 parameters=False)
        return grad_out * (1 - self._out * self._out)
