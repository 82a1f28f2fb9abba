"""Parameter initialisation, matching PyTorch's defaults so models start where PyTorch's would.

PyTorch initialises ``Conv2d`` and ``Linear`` weights with ``kaiming_uniform_(a=sqrt(5))``, which
works out to U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases with the same bound.
"""
from __future__ import annotations

import math

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def as_rng(rng) -> np.random.Generator:
    """``None`` -> a fresh generator, an int -> a seeded one, a Generator -> itself."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def kaiming_uniform(shape, fan_in: int, rng, dtype) -> np.ndarray:
    """PyTorch's default weight init: U(-b, b) with b = sqrt(6 / ((1 + 5) * fan_in)) = 1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def xavier_uniform(shape, fan_in: int, fan_out: int, rng, dtype) -> np.ndarray:
    """Glorot/Xavier uniform, U(-b, b) with b = sqrt(6 / (fan_in + fan_out)) (what the course's
    LeNet training code applies to its sigmoid network)."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def bias_uniform(size: int, fan_in: int, rng, dtype) -> np.ndarray:
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=size).astype(dtype)
