"""Finite-difference gradients (central differences) for every gradient test: the functional ops and
the layers that follow the fastconv.nn protocol."""
from __future__ import annotations

import numpy as np


def numerical_gradient(function, array, eps=1e-6):
    """Central differences of scalar ``function()`` with respect to ``array`` (perturbed in place)."""
    grad = np.zeros_like(array, dtype=np.float64)
    flat, grad_flat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = function()
        flat[i] = saved - eps
        minus = function()
        flat[i] = saved
        grad_flat[i] = (plus - minus) / (2 * eps)
    return grad


def check_layer_gradients(layer, x, rng, *, before_forward=None, rtol=1e-6, atol=1e-8):
    """Compare ``layer.backward`` with central differences of ``sum(forward(x) * upstream)`` for the
    input and every parameter (float64 throughout).  Returns the names checked."""
    x = np.array(x, dtype=np.float64)

    def objective():
        if before_forward is not None:
            before_forward()
        return float(np.sum(layer.forward(x) * upstream))

    if before_forward is not None:
        before_forward()
    out = layer.forward(x)
    upstream = rng.standard_normal(out.shape)
    layer.zero_grad()
    grad_input = layer.backward(upstream)
    analytic = {"input": np.array(grad_input, dtype=np.float64)}
    analytic.update({name: np.array(getattr(layer, grad), dtype=np.float64)
                     for name, grad in (("weights", "grad_w"), ("bias", "grad_b"))
                     if getattr(layer, name, None) is not None})
    targets = {"input": x}
    targets.update({name: getattr(layer, name) for name in analytic if name != "input"})
    for name, target in targets.items():
        numeric = numerical_gradient(objective, target)
        np.testing.assert_allclose(analytic[name], numeric, rtol=rtol, atol=atol,
                                   err_msg=f"{type(layer).__name__} gradient of {name}")
    return sorted(targets)
