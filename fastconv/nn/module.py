"""The layer protocol and the containers that chain layers.

A *layer* is any object with

* ``forward(x)`` -> output, remembering what ``backward`` will need;
* ``backward(grad_out)`` -> gradient with respect to ``x``, storing parameter gradients;
* ``zero_grad()`` and ``update(lr)``;
* optionally parameters ``weights`` / ``bias`` with gradients ``grad_w`` / ``grad_b`` (``None`` when
  the layer has no such parameter) — optimisers find them by these names;
* optionally a boolean ``training`` attribute, switched by :meth:`Module.train` / :meth:`Module.eval`.

Nothing has to inherit from :class:`Layer`; it only supplies the defaults.
"""
from __future__ import annotations

import numpy as np

PARAMETER_SLOTS = (("weights", "grad_w"), ("bias", "grad_b"))


class Layer:
    """Defaults for the protocol: no parameters, ``zero_grad`` and ``update`` do nothing."""

    weights = None
    bias = None
    grad_w = None
    grad_b = None

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def zero_grad(self):
        """Zero the gradients of the parameters this layer has."""
        for value_name, grad_name in PARAMETER_SLOTS:
            grad = getattr(self, grad_name, None)
            if grad is not None:
                grad[...] = 0

    def update(self, lr):
        """One plain gradient-descent step, ``p -= lr * grad``, in place."""
        for value_name, grad_name in PARAMETER_SLOTS:
            value, grad = getattr(self, value_name, None), getattr(self, grad_name, None)
            if value is not None and grad is not None:
                value -= lr * grad

    def __repr__(self):
        return f"{type(self).__name__}()"


def iter_parameters(layer):
    """Yield ``(owner, value_name, grad_name)`` for every parameter in ``layer`` and below it.

    Containers are entered through their ``layers`` list, so a ``Sequential`` inside a ``Module``
    (or a user's layer that keeps sub-layers in ``layers``) is covered.
    """
    for child in getattr(layer, "layers", ()) or ():
        yield from iter_parameters(child)
    for value_name, grad_name in PARAMETER_SLOTS:
        if getattr(layer, value_name, None) is not None:
            yield layer, value_name, grad_name


class Module(Layer):
    """A chain of layers: forward in order, backward in reverse.

    Parameters
    ----------
    layers : list of layers (anything following the protocol, ours or the user's)

    Examples
    --------
    >>> from fastconv import nn
    >>> model = nn.Module([nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)])
    """

    def __init__(self, layers=None):
        self.layers = list(layers or [])

    def add(self, layer):
        """Append ``layer``; returns it, so ``x = model.add(nn.ReLU())`` reads naturally."""
        self.layers.append(layer)
        return layer

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out):
        """Backpropagate ``grad_out``; each layer's gradients are zeroed just before its backward,
        so gradients never accumulate across steps."""
        for layer in reversed(self.layers):
            layer.zero_grad()
            grad_out = layer.backward(grad_out)
        return grad_out

    def zero_grad(self):
        for layer in self.layers:
            layer.zero_grad()

    def update(self, lr):
        for layer in self.layers:
            layer.update(lr)

    def step(self, lr):
        """Plain SGD step on every layer (the notes' API); see :mod:`fastconv.nn.optim` for more."""
        self.update(lr)

    def train(self, mode: bool = True):
        """Put every layer that has a ``training`` flag (BatchNorm2D, Dropout) in training mode."""
        _set_training(self, mode)
        return self

    def eval(self):
        """Evaluation mode: BatchNorm2D uses running statistics, Dropout is the identity."""
        return self.train(False)

    def parameters(self):
        """``(owner, value_name, grad_name)`` for every parameter (see :func:`iter_parameters`)."""
        return list(iter_parameters(self))

    def state_dict(self) -> dict:
        """Every parameter and buffer (running statistics) as ``{"<index>.<name>": array}``."""
        state = {}
        for index, layer in enumerate(self.layers):
            if hasattr(layer, "state_dict"):
                for name, value in layer.state_dict().items():
                    state[f"{index}.{name}"] = value
            else:
                for value_name, _ in PARAMETER_SLOTS:
                    value = getattr(layer, value_name, None)
                    if value is not None:
                        state[f"{index}.{value_name}"] = value
        return state

    def load_state_dict(self, state: dict) -> None:
        """Copy arrays from :meth:`state_dict` output into this model's arrays, checking shapes."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"state does not match the model: missing {missing}, unexpected {unexpected}")
        for key, target in own.items():
            source = np.asarray(state[key])
            if source.shape != target.shape:
                raise ValueError(f"state[{key!r}] has shape {source.shape}, the model expects {target.shape}")
            target[...] = source

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"{type(self).__name__}({inner}\n)"


class Sequential(Module):
    """``Module`` built from positional layers: ``Sequential(Conv2D(...), ReLU(), ...)``."""

    def __init__(self, *layers):
        super().__init__(layers)


def _set_training(layer, mode: bool) -> None:
    if hasattr(layer, "training") and not isinstance(layer, Module):
        layer.training = mode
    for child in getattr(layer, "layers", ()) or ():
        _set_training(child, mode)
