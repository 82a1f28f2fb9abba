"""Optimisers that work on any layer following the protocol (``weights``/``grad_w``,
``bias``/``grad_b``), found through ``layers`` lists; PyTorch's update rules.  A gradient must have
its parameter's dtype (a TypeError otherwise: nothing is converted silently).

Usage::

    optimizer = nn.SGD(model, lr=0.1, momentum=0.9)
    loss = criterion(model.forward(x), y)
    model.backward(criterion.backward())
    optimizer.step()
"""
from __future__ import annotations

import numpy as np

from .module import check_gradient_dtype, iter_parameters


class Optimizer:
    """Base class: keeps per-parameter state keyed by (layer, parameter name)."""

    def __init__(self, model, lr):
        if not float(lr) > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.model = model
        self.lr = float(lr)
        self.state = {}

    def _parameters(self):
        # Resolved on every step, so layers appended to the model after construction are included.
        for owner, value_name, grad_name in iter_parameters(self.model):
            grad = getattr(owner, grad_name, None)
            if grad is not None:
                value = getattr(owner, value_name)
                check_gradient_dtype(grad, value, owner, grad_name, value_name)
                yield (id(owner), value_name), value, grad

    def zero_grad(self):
        for _, _, grad in self._parameters():
            grad[...] = 0

    def step(self):
        for key, value, grad in self._parameters():
            self._update(key, value, np.asarray(grad))

    def _update(self, key, value, grad):
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and L2 weight decay (as ``torch.optim.SGD``
    with dampening 0): ``g = grad + wd * p``, ``buf = momentum * buf + g``, ``p -= lr * buf``.

    Parameters
    ----------
    model : a Module, or any layer (with sub-layers in ``layers``)
    lr : float
    momentum : float >= 0
    weight_decay : float >= 0
    """

    def __init__(self, model, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(model, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"momentum and weight_decay must be >= 0, got {momentum!r}, {weight_decay!r}")
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)

    def _update(self, key, value, grad):
        if self.weight_decay:
            grad = grad + self.weight_decay * value
        if self.momentum:
            buffer = self.state.get(key)
            if buffer is None:
                buffer = self.state[key] = grad.copy()
            else:
                buffer *= self.momentum
                buffer += grad
            grad = buffer
        value -= self.lr * grad


class Adam(Optimizer):
    """Adam (``torch.optim.Adam`` semantics, L2 weight decay added to the gradient).

    Parameters
    ----------
    model : a Module or any layer
    lr : float
    betas : (float, float)
    eps : float
    weight_decay : float >= 0
    """

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(model, lr)
        beta1, beta2 = betas
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
        self.beta1, self.beta2, self.eps, self.weight_decay = float(beta1), float(beta2), float(eps), float(weight_decay)

    def _update(self, key, value, grad):
        if self.weight_decay:
            grad = grad + self.weight_decay * value
        state = self.state.get(key)
        if state is None:
            state = self.state[key] = {"step": 0, "m": np.zeros_like(value), "v": np.zeros_like(value)}
        state["step"] += 1
        m, v, t = state["m"], state["v"], state["step"]
        m *= self.beta1
        m += (1 - self.beta1) * grad
        v *= self.beta2
        v += (1 - self.beta2) * grad * grad
        step_size = self.lr / (1 - self.beta1 ** t)
        denominator = np.sqrt(v / (1 - self.beta2 ** t)) + self.eps
        value -= (step_size * m / denominator).astype(value.dtype, copy=False)
