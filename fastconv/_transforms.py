"""Fourier transforms for the FFT backends, compiled: rocket-fft lets ``scipy.fft`` run inside
``@njit`` (the same pocketfft, multithreaded with ``workers``, without the Python-level argument
handling and temporaries of each ``scipy.fft`` call).

They replace the direct ``scipy.fft`` calls because they measured faster on every size tried
(docs/measurements.md).
"""
from __future__ import annotations

import scipy.fft

from ._config import njit_kernel


@njit_kernel
def rfft_last(planes, n, workers):
    """Real FFT along the last axis, zero-padded/cropped to ``n``."""
    return scipy.fft.rfft(planes, n=n, axis=-1, workers=workers)


@njit_kernel
def fft_last(planes, n, workers):
    """Complex FFT along the last axis, zero-padded/cropped to ``n``."""
    return scipy.fft.fft(planes, n=n, axis=-1, workers=workers)


@njit_kernel
def irfft_last(spectra, n, workers):
    """Inverse of :func:`rfft_last` to real lines of ``n`` points."""
    return scipy.fft.irfft(spectra, n=n, axis=-1, workers=workers)


@njit_kernel
def ifft_last(spectra, n, workers):
    """Inverse complex FFT along the last axis at ``n`` points."""
    return scipy.fft.ifft(spectra, n=n, axis=-1, workers=workers)


@njit_kernel
def fft_second_last(rows, n, workers):
    """Complex FFT along the second-last axis, zero-padded/cropped to ``n`` (may overwrite)."""
    return scipy.fft.fft(rows, n=n, axis=-2, workers=workers, overwrite_x=True)


@njit_kernel
def rfft2_last(planes, shape, workers):
    """2-D real FFT over the last two axes at ``shape``."""
    return scipy.fft.rfft2(planes, s=shape, axes=(-2, -1), workers=workers)


@njit_kernel
def irfft2_last(spectra, shape, workers):
    """Inverse of :func:`rfft2_last` to real planes of ``shape`` (may overwrite ``spectra``)."""
    return scipy.fft.irfft2(spectra, s=shape, axes=(-2, -1), workers=workers, overwrite_x=True)


@njit_kernel
def ifft2_last(spectra, shape, workers):
    """2-D inverse complex FFT over the last two axes at ``shape`` (may overwrite ``spectra``)."""
    return scipy.fft.ifft2(spectra, s=shape, axes=(-2, -1), workers=workers, overwrite_x=True)


@njit_kernel
def fft2_last(planes, shape, workers):
    """2-D complex FFT over the last two axes at ``shape``."""
    return scipy.fft.fft2(planes, s=shape, axes=(-2, -1), workers=workers)
