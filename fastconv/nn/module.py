"""The layer protocol and the containers that chain layers.

A *layer* is any object with

* ``forward(x)`` -> output, remembering what ``backward`` will need;
* ``backward(grad_out)`` -> gradient with respect to ``x``, storing parameter gradients;
* ``zero_grad()`` and ``update(lr)``;
* optionally parameters ``weights`` / ``bias`` with gradients ``grad_w`` / ``grad_b`` (``None`` when
  the layer has no such parameter) — optimisers find them by these names;
* optionally a boolean ``training`` attribute, switched by :meth:`Module.train` / :meth:`Module.eval`.

Nothing has to inherit from :class:`Layer`; it only supplies the defaults.

The dtype rule (PyTorch's): nothing is converted silently.  A layer with parameters computes in its
parameters' dtype (float32 by default, float64 with ``dtype=np.float64``) and refuses an input or an
output gradient of any other dtype with a TypeError naming both dtypes and the fixes; a layer
without parameters computes in its input's dtype, float32 or float64; the loss computes in the
logits' dtype; an optimiser refuses a gradient whose dtype is not its parameter's.
"""
from __future__ import annotations

import numpy as np

from .init import FLOAT_DTYPES

PARAMETER_SLOTS = (("weights", "grad_w"), ("bias", "grad_b"))


def checked_array(value, layer: str, dtype=None, *, what: str = "input",
                  parameters: bool = True) -> np.ndarray:
    """``value`` as an array, refusing (TypeError) any dtype but ``dtype``: the dtype of the layer's
    parameters, or (``parameters=False``) of what its forward pass computed in.  With
    ``dtype=None`` (a layer without parameters, in its forward pass) float32 and float64 are
    accepted.  The array itself is returned unconverted."""
    array = np.asarray(value)
    name = "x" if what == "input" else what  # how the fix reads in the caller's code
    if dtype is not None:
        dtype = np.dtype(dtype)
        if array.dtype == dtype:
            return array
        if parameters and array.dtype in FLOAT_DTYPES:
            fix = (f"build the layer with dtype=np.{array.dtype.name}, or pass "
                   f"{name}.astype(np.{dtype.name})")
        else:
            fix = f"pass {name}.astype(np.{dtype.name})"
        computes_in = f"has {dtype.name} parameters" if parameters else (
            f"computed its forward pass in {dtype.name}")
        raise TypeError(
            f"{layer} {computes_in} but its {what} is {array.dtype.name}; fastconv.nn never "
            f"converts silently: {fix}"
        )
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{layer} computes in float32 or float64, got {what} of dtype {array.dtype.name}; "
            f"fastconv.nn never converts silently: pass {name}.astype(np.float32) (or float64)"
        )
    return array


def check_gradient_dtype(grad, value, owner, grad_name: str, value_name: str) -> None:
    """An update may only combine a parameter with a gradient of its own dtype."""
    if np.asarray(grad).dtype != value.dtype:
        raise TypeError(
            f"{type(owner).__name__}.{grad_name} is {np.asarray(grad).dtype} but "
            f"{type(owner).__name__}.{value_name} is {value.dtype}; fastconv.nn never converts "
            "silently: a layer must store gradients in its parameters' dtype"
        )


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
                check_gradient_dtype(grad, value, self, grad_name, value_name)
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
        self.layers = [_checked_layer(layer, index) for index, layer in enumerate(layers or [])]

    def add(self, layer):
        """Append ``layer``; returns it, so ``x = model.add(nn.ReLU())`` reads naturally."""
        self.layers.append(_checked_layer(layer, len(self.layers)))
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


def _checked_layer(layer, index: int):
    """``layer`` if it follows the layer protocol (``forward`` and ``backward``), else TypeError —
    e.g. a list passed to ``Sequential``, which takes its layers as separate arguments."""
    if not (callable(getattr(layer, "forward", None)) and callable(getattr(layer, "backward", None))):
        hint = (" (Sequential takes layers as separate arguments: Sequential(*layers), or "
                "Module(layers) for a list)" if isinstance(layer, (list, tuple)) else "")
        raise TypeError(f"layer {index} must have forward() and backward(), got "
                        f"{type(layer).__name__}{hint}")
    return layer


class Sequential(Module):
    """``Module`` built from positional layers: ``Sequential(Conv2D(...), ReLU(), ...)``."""

    def __init__(self, *layers):
        super().__init__(layers)


def _set_training(layer, mode: bool) -> None:
    if hasattr(layer, "training") and not isinstance(layer, Module):
        layer.training = mode
    for child in getattr(layer, "layers", ()) or ():
        _set_training(child, mode)
