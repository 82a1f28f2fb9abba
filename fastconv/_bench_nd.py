"""``python -m fastconv bench --suite 1d|3d``: the N-d signal API against scipy.signal and NumPy.

* ``1d``: a 10**6-sample signal with 3, 16, 255 and 4095-tap kernels, float32 and float64, full
  mode, against ``scipy.signal.convolve`` (auto), ``fftconvolve``, ``oaconvolve`` and
  ``numpy.convolve``;
* ``3d``: one 128**3 volume with 3**3, 9**3 and 21**3 kernels against ``scipy.signal.convolve``
  (auto), ``fftconvolve`` and ``oaconvolve``; and ``conv3d`` layers (N=2 32->32 on 32**3 with
  3**3, N=1 1->16 on 64**3 with 5**3, N=2 32->64 on 32**3 with 3**3 at stride 2) forward and
  backward against PyTorch's when it is installed.

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
        built += _conv3d_problems(rng, quick)
    else:
        raise ValueError(f"unknown N-d suite {suite!r}; choose '1d' or '3d'")
    return built


CONV3D_LAYERS = (  # name, input, weight, padding, stride
    ("N=2 32->32 32^3 k3", (2, 32, 32, 32, 32), (32, 32, 3, 3, 3), 1, 1),
    ("N=1 1->16 64^3 k5", (1, 1, 64, 64, 64), (16, 1, 5, 5, 5), 2, 1),
    ("N=2 32->64 32^3 k3 s2", (2, 32, 32, 32, 32), (64, 32, 3, 3, 3), 1, 2),
)


def _conv3d_problems(rng, quick: bool) -> list:
    """conv3d forward and backward (input + weight + bias) against PyTorch, float32; the reference
    is fastconv's own float64 result (the direct 3-D kernels, checked against PyTorch in tests)."""
    from .benchmark import Problem, _optional
    from .conv import conv3d
    from .gradients import conv3d_backward

    torch = _optional("torch")
    built = []
    for name, input_shape, weight_shape, padding, stride in (
            CONV3D_LAYERS[:1] if quick else CONV3D_LAYERS):
        x = rng.standard_normal(input_shape).astype(np.float32)
        w = rng.standard_normal(weight_shape).astype(np.float32)
        out = conv3d(x.astype(np.float64), w.astype(np.float64), padding=padding, stride=stride)
        grad = rng.standard_normal(out.shape).astype(np.float32)
        flops = 2.0 * out.size * np.prod(weight_shape[1:])
        forward_peers, backward_peers = {}, {}
        if torch is not None:
            tx, tw, tg = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(grad)
            forward_peers["torch"] = lambda tx=tx, tw=tw, padding=padding, stride=stride: (
                torch.nn.functional.conv3d(tx, tw, padding=padding, stride=stride).numpy())

            def torch_backward(tw=tw, tg=tg, x=x, padding=padding, stride=stride):
                px = torch.from_numpy(x).requires_grad_()
                pw = tw.detach().requires_grad_()
                pb = torch.zeros(pw.shape[0], requires_grad=True)
                torch.nn.functional.conv3d(px, pw, pb, padding=padding, stride=stride).backward(tg)
                return px.grad.numpy(), pw.grad.numpy(), pb.grad.numpy()

            backward_peers["torch"] = torch_backward
        backward_reference = conv3d_backward(grad.astype(np.float64), x.astype(np.float64),
                                             w.astype(np.float64), padding=padding, stride=stride)
        built.append(Problem("3d", f"conv3d {name} fwd", flops, out,
                             {"auto": lambda x=x, w=w, p=padding, s=stride: conv3d(
                                 x, w, padding=p, stride=s)},
                             forward_peers, "direct"))
        built.append(Problem("3d", f"conv3d {name} bwd", 2 * flops, backward_reference,
                             {"auto": lambda g=grad, x=x, w=w, p=padding, s=stride: conv3d_backward(
                                 g, x, w, padding=p, stride=s)},
                             backward_peers, "direct"))
    return built


def best_peer_ratios(rows) -> str:
    """One line per case: fastconv auto's time over the fastest peer's (< 1: fastconv faster)."""
    lines = []
    for row in rows:
        times = row["times"]
        peers = {name: t for name, t in times.items() if "." in name or name == "torch"}
        if "auto" not in times or not peers:
            continue
        best = min(peers, key=peers.get)
        lines.append(f"{row['case']}: auto ({row['auto_choice']}) {times['auto'] * 1e3:.2f} ms / "
                     f"{best} {peers[best] * 1e3:.2f} ms = {times['auto'] / peers[best]:.2f}")
    return "\n".join(lines)
