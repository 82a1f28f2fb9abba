"""Documented error bounds, stated relative to ``|x| * |w|`` (the convolution of absolute values).

For the direct-sum backends (direct, im2col, separable) the bound is per output element:
``|got - exact| <= rel * (|x| * |w|)[element]``.  An FFT's rounding error is spread evenly over the
output, so its bound is against the largest magnitude: ``|got - exact| <= rel * max(|x| * |w|)``.
"""
import numpy as np

ELEMENTWISE = {"direct", "im2col", "separable"}

RELATIVE = {
    ("float64", "direct"): 1e-13, ("float64", "im2col"): 1e-13, ("float64", "separable"): 1e-12,
    ("float64", "fft"): 1e-12,
    ("float32", "direct"): 2e-6, ("float32", "im2col"): 2e-6, ("float32", "separable"): 5e-6,
    ("float32", "fft"): 2e-5,
}


def assert_matches(got, exact, magnitude, dtype, backend):
    """``exact`` and ``magnitude`` are float64 results of the naive twin on (x, w) and (|x|, |w|)."""
    rel = RELATIVE[(np.dtype(dtype).name, backend)]
    scale = magnitude if backend in ELEMENTWISE else np.max(magnitude)
    bound = rel * scale + np.finfo(dtype).tiny
    error = np.abs(np.asarray(got, dtype=np.float64) - exact)
    worst = np.unravel_index(np.argmax(error - bound), error.shape) if error.size else None
    assert np.all(error <= bound), (
        f"{backend} {np.dtype(dtype).name}: error {error[worst]:.3g} exceeds bound "
        f"{np.broadcast_to(bound, error.shape)[worst]:.3g} at {worst}"
    )


# Gradients reduce over longer sums than the forward (grad_weight over N * H' * W' positions), so
# their float32 bounds are looser; the reference magnitude is the same gradient of |g|, |x|, |w|.
GRADIENT_RELATIVE = {
    ("float64", "direct"): 1e-13, ("float64", "im2col"): 1e-13, ("float64", "fft"): 1e-12,
    ("float32", "direct"): 1e-5, ("float32", "im2col"): 1e-5, ("float32", "fft"): 5e-5,
}


def assert_gradient_matches(got, exact, magnitude, dtype, backend, what="gradient"):
    """As :func:`assert_matches`, with :data:`GRADIENT_RELATIVE` bounds."""
    rel = GRADIENT_RELATIVE[(np.dtype(dtype).name, backend)]
    scale = magnitude if backend in ELEMENTWISE else np.max(magnitude)
    bound = rel * scale + np.finfo(dtype).tiny
    error = np.abs(np.asarray(got, dtype=np.float64) - exact)
    worst = np.unravel_index(np.argmax(error - bound), error.shape) if error.size else None
    assert np.all(error <= bound), (
        f"{what} {backend} {np.dtype(dtype).name}: error {error[worst]:.3g} exceeds bound "
        f"{np.broadcast_to(bound, error.shape)[worst]:.3g} at {worst}"
    )
