"""``python -m fastconv bench --suite 1d|3d``: the N-d signal API against scipy.signal and NumPy.

* ``1d``: a 10**6-sample signal with 3, 16, 255 and 4095-tap kernels, float32 and float64, full
  mode, against ``scipy.signal.convolve`` (auto), ``fftconvolve``, ``oaconvolve`` and
  ``numpy.convolve``;
* ``3d``: one 128**3 volume with 3**3, 9**3 and 21**3 kernels against ``scipy.signal.convolve``
  (auto), ``fftconvolve`` and ``oaconvolve``.

scipy's transforms run with as many workers as fastconv's threads (``scipy.fft.set_workers``
around each peer call), so the frequency-domain peers use the same cores; NumPy's convolve is
single-threaded by construction.  Each result is checked against a float64 reference (scipy's
``fftconvolve`` in float64) before it is timed.
"""
from __future__ import annotations

import numpy as np

from ._config import get_num_threads

SIGNAL_LENGTH = 10 ** 6
KERNELS_1D = (3, 16, 255, 4095)
VOLUME_SIDE = 128
KERNELS_3D = (3, 9, 21)


def _with_scipy_workers(function):
    import scipy.fft

    def run(*args, **kwargs):
        with scipy.fft.set_workers(get_num_threads()):
            return function(*args, **kwargs)

    return run


def _ours(in1, in2):
    from . import signal_nd

    return {
        "auto": lambda: signal_nd.convolve(in1, in2),
        "direct": lambda: signal_nd.convolve(in1, in2, method="direct"),
        "fft": lambda: signal_nd.convolve(in1, in2, method="fft"),
    }


def _peers(in1, in2, with_numpy: bool):
    import scipy.signal

    peers = {
        "scipy.convolve": _with_scipy_workers(lambda: scipy.signal.convolve(in1, in2)),
        "scipy.fftconvolve": _with_scipy_workers(lambda: scipy.signal.fftconvolve(in1, in2)),
        "scipy.oaconvolve": _with_scipy_workers(lambda: scipy.signal.oaconvolve(in1, in2)),
    }
    if with_numpy:
        peers["numpy.convolve"] = lambda: np.convolve(in1, in2)
    return peers


def _problem(suite, name, in1, in2, with_numpy, kernel):
    import scipy.signal

    from .dispatch import nd as nd_choice
    from .benchmark import Problem

    reference = scipy.signal.fftconvolve(in1.astype(np.float64), in2.astype(np.float64))
    flops = 2.0 * in1.size * in2.size
    choice = nd_choice.choose_method(in1, in2, "full")
    return Problem(suite, name, flops, reference, _ours(in1, in2), _peers(in1, in2, with_numpy),
                   choice, kernel=kernel)


def problems(suite: str, quick: bool) -> list:
    rng = np.random.default_rng(0)
    dtypes = ("float32",) if quick else ("float32", "float64")
    built = []
    if suite == "1d":
        for dtype in dtypes:
            signal = rng.standard_normal(SIGNAL_LENGTH).astype(dtype)
            for taps in KERNELS_1D:
                kernel = rng.standard_normal(taps).astype(dtype)
                built.append(_problem("1d", f"1e6 x {taps} {dtype}", signal, kernel, True, taps))
    elif suite == "3d":
        for dtype in dtypes:
            volume = rng.standard_normal((VOLUME_SIDE,) * 3).astype(dtype)
            for side in KERNELS_3D[:2] if quick else KERNELS_3D:
                kernel = rng.standard_normal((side,) * 3).astype(dtype)
                built.append(_problem("3d", f"{VOLUME_SIDE}^3 x {side}^3 {dtype}", volume, kernel,
                                      False, side))
    else:
        raise ValueError(f"unknown N-d suite {suite!r}; choose '1d' or '3d'")
    return built


def best_peer_ratios(rows) -> str:
    """One line per case: fastconv auto's time over the fastest peer's (< 1: fastconv faster)."""
    lines = []
    for row in rows:
        times = row["times"]
        peers = {name: t for name, t in times.items() if "." in name}
        if "auto" not in times or not peers:
            continue
        best = min(peers, key=peers.get)
        lines.append(f"{row['case']}: auto ({row['auto_choice']}) {times['auto'] * 1e3:.2f} ms / "
                     f"{best} {peers[best] * 1e3:.2f} ms = {times['auto'] / peers[best]:.2f}")
    return "\n".join(lines)
