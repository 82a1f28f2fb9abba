"""Documented error bounds, stated relative to ``|x| * |w|`` (the convolution of absolute values).

For the direct-sum backends (direct, im2col, separable) the bound is per output element:
``|got - exact| <= rel * (|x| * |w|)[element]``.  An FFT's rounding error is spread evenly over the
output, so its bound is against the largest magnitude: ``|got - exact| <= rel * max(|x| * |w|)``,
plus, for the FFT and the separable backend, a term in the operands' norms (``norms``, see
:data:`FFT_NORM_RELATIVE`) that covers outputs the data never reaches.
Winograd's transforms mix a tile's inputs (and F(4x4, 3x3)'s constants reach 8 and 1/24), so its
error too is bounded against the largest magnitude.  Measured worst cases over 120 random problems
(Gaussian, uniform positive, Cauchy weights with scaled channels; C up to 512): float32 F(4x4, 3x3)
9.0e-6, float64 5.7e-14; the bounds below leave a 5x margin.
"""
import numpy as np

ELEMENTWISE = {"direct", "im2col", "separable"}

RELATIVE = {
    ("float64", "direct"): 1e-13, ("float64", "im2col"): 1e-13, ("float64", "separable"): 1e-12,
    ("float64", "fft"): 1e-12,
    ("float32", "direct"): 2e-6, ("float32", "im2col"): 2e-6, ("float32", "separable"): 5e-6,
    ("float32", "fft"): 2e-5,
    ("float64", "winograd"): 3e-13, ("float32", "winograd"): 5e-5,
}

# A transform's rounding error is not confined to outputs the data reaches: an output that sees only
# padding (stride or padding skipping every sample), exactly 0 by the definition, comes back as
# rounding noise of the size of the whole problem.  The classical bound for a correlation computed
# by FFT is ``|error| <= c * eps * log2(n) * ||x||_2 * ||w||_2`` (c small for pocketfft); the
# constants below allow c * log2(n) = 8 (float32) and 10 (float64), i.e. transforms up to ~2**20
# points.  Found by the property tests (issue 8): a 1x1 input, padding 1, stride (1, 2) gave a
# float32 grad_weight of 3.3e-9 where the exact value is 0 and max(|x| * |g|) is 0.
FFT_NORM_RELATIVE = {"float64": 10 * np.finfo(np.float64).eps, "float32": 8 * np.finfo(np.float32).eps}
# The separable backend's factors come from an SVD, accurate relative to ||w||, not tap by tap: a
# zero tap comes back as ~eps * ||w||, so an output that sees only zero taps (exactly 0 by the
# definition) is rounding noise too.  Same norm term.  Found by the thorough property run (issue 8):
# a float32 rank-1 kernel with a zero row gave 5.5e-14 where the exact value is 0.
NORM_TERM_BACKENDS = {"fft", "separable", "winograd"}  # winograd mixes a tile like an FFT mixes a plane


def _error(got, exact):
    """|got - exact| in float64 (complex results keep their imaginary part)."""
    got = np.asarray(got)
    return np.abs(got.astype(np.result_type(got.dtype, np.float64)) - exact)


def _bound(rel, magnitude, dtype, backend, norms):
    scale = magnitude if backend in ELEMENTWISE else np.max(magnitude)
    bound = rel * scale + np.finfo(dtype).tiny
    if backend in NORM_TERM_BACKENDS and norms is not None:
        bound = bound + FFT_NORM_RELATIVE[np.dtype(dtype).name] * norms
    return bound


def assert_matches(got, exact, magnitude, dtype, backend, norms=None):
    """``exact`` and ``magnitude`` are float64 results of the naive twin on (x, w) and (|x|, |w|);
    ``norms`` (optional) is ``||x||_2 * ||w||_2``, which the FFT bound also allows for."""
    rel = RELATIVE[(np.dtype(dtype).name, backend)]
    bound = _bound(rel, magnitude, dtype, backend, norms)
    error = _error(got, exact)
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


def assert_gradient_matches(got, exact, magnitude, dtype, backend, what="gradient", norms=None):
    """As :func:`assert_matches`, with :data:`GRADIENT_RELATIVE` bounds."""
    rel = GRADIENT_RELATIVE[(np.dtype(dtype).name, backend)]
    bound = _bound(rel, magnitude, dtype, backend, norms)
    error = _error(got, exact)
    worst = np.unravel_index(np.argmax(error - bound), error.shape) if error.size else None
    assert np.all(error <= bound), (
        f"{what} {backend} {np.dtype(dtype).name}: error {error[worst]:.3g} exceeds bound "
        f"{np.broadcast_to(bound, error.shape)[worst]:.3g} at {worst}"
    )
