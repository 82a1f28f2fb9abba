"""Convolution backends.  Each module exposes ``NAME``, ``supports(params)`` (None, or the reason it
cannot run that problem), ``forward(x, w, bias, params)``, and ``COST_FEATURES`` with
``cost_features(params, threads)``: what the path it actually takes on ``params`` costs, in units
the dispatcher's model prices.  None of them decides whether it is a good idea — that is
``fastconv.dispatch``'s job."""
from . import direct, fft, im2col, separable, winograd

BACKENDS = {module.NAME: module for module in (direct, im2col, fft, winograd, separable)}

__all__ = ["BACKENDS", "direct", "fft", "im2col", "separable", "winograd"]
