"""Convolution backends.  Each module exposes ``NAME``, ``supports(params)`` (None, or the reason it
cannot run that problem) and ``forward(x, w, bias, params)``; none of them decides whether it is a
good idea — that is ``fastconv.dispatch``'s job."""
from . import direct, fft, im2col, separable, winograd

BACKENDS = {module.NAME: module for module in (direct, im2col, fft, winograd, separable)}

__all__ = ["BACKENDS", "direct", "fft", "im2col", "separable", "winograd"]
