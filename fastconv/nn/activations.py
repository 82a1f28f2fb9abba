"""Element-wise activations, NumPy-vectorised; each keeps the dtype of its input."""
from __future__ import annotations

import numpy as np

from .module import Layer


class ReLU(Layer):
    """``max(x, 0)``; NaN propagates and the gradient at 0 is 0, as in PyTorch."""

    def forward(self, x):
        x = np.asarray(x)
        self._positive = x > 0
        return np.maximum(x, 0)  # the Python 0 is weakly typed: float32 stays float32

    def backward(self, grad_out):
        return grad_out * self._positive


class Sigmoid(Layer):
    """``1 / (1 + exp(-x))``, computed without overflow for large ``|x|``."""

    def forward(self, x):
        x = np.asarray(x)
        # exp(-|x|) never overflows; the two branches are the same function rearranged.
        decay = np.exp(-np.abs(x))
        self._out = np.where(x >= 0, 1 / (1 + decay), decay / (1 + decay)).astype(x.dtype, copy=False)
        return self._out

    def backward(self, grad_out):
        return grad_out * self._out * (1 - self._out)


class Tanh(Layer):
    """Hyperbolic tangent."""

    def forward(self, x):
        self._out = np.tanh(np.asarray(x))
        return self._out

    def backward(self, grad_out):
        return grad_out * (1 - self._out * self._out)
