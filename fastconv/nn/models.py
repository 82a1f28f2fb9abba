"""Ready-made models."""
from __future__ import annotations

import numpy as np

from .activations import ReLU, Sigmoid, Tanh
from .init import as_rng, check_dtype, xavier_uniform
from .layers import Conv2D, Flatten, Linear
from .module import Sequential
from .pooling import AvgPool2D, MaxPool2D

ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
POOLS = {"max": MaxPool2D, "avg": AvgPool2D}
INITS = ("pytorch", "xavier")


def lenet5(activation="relu", pool="max", *, num_classes=10, dtype=np.float32, init="pytorch", rng=None,
           conv_algorithm="auto"):
    """LeNet-5 for 1x28x28 images, as in the course notes:
    conv 6@5x5 pad 2 -> pool 2 -> conv 16@5x5 -> pool 2 -> 120 -> 84 -> classes.

    Parameters
    ----------
    activation : ``"relu"``, ``"sigmoid"`` or ``"tanh"`` (the notes use sigmoid)
    pool : ``"max"`` or ``"avg"`` (the notes use avg)
    num_classes : int
    dtype : float32 or float64
    init : ``"pytorch"`` (Kaiming-uniform, PyTorch's default) or ``"xavier"`` (Glorot-uniform weights,
        biases left at PyTorch's default: what the notes' ``init_weights`` does before training the
        sigmoid network, which barely moves from chance for several epochs under the default init)
    rng : None, int seed or numpy Generator
    conv_algorithm : ``"auto"`` or a name from ``fastconv.algorithms()``, for both Conv2D layers

    Returns
    -------
    Sequential; its first Conv2D has ``input_grad = False`` since nothing consumes the gradient of
    the images.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {sorted(POOLS)}, got {pool!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    dtype, rng = check_dtype(dtype), as_rng(rng)
    act, pool_layer = ACTIVATIONS[activation], POOLS[pool]
    model = Sequential(
        Conv2D(1, 6, 5, padding=2, dtype=dtype, rng=rng, algorithm=conv_algorithm), act(), pool_layer(2, 2),
        Conv2D(6, 16, 5, dtype=dtype, rng=rng, algorithm=conv_algorithm), act(), pool_layer(2, 2),
        Flatten(),
        Linear(16 * 5 * 5, 120, dtype=dtype, rng=rng), act(),
        Linear(120, 84, dtype=dtype, rng=rng), act(),
        Linear(84, num_classes, dtype=dtype, rng=rng),
    )
    model.layers[0].input_grad = False
    if init == "xavier":
        for layer in model.layers:
            if isinstance(layer, (Conv2D, Linear)):
                # Glorot's fans: inputs and outputs of one unit times the receptive-field size.
                receptive_field = layer.weights[0, 0].size if isinstance(layer, Conv2D) else 1
                fan_in = layer.weights[0].size
                fan_out = layer.weights.shape[0] * receptive_field
                layer.weights[...] = xavier_uniform(layer.weights.shape, fan_in, fan_out, rng, dtype)
    return model
