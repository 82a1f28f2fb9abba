"""Bounded memory: workspaces respect the cap by chunking, and the peak of a large call is measured.

Numba's and NumPy's allocations bypass tracemalloc, so the peak is the process's high-water mark
(VmHWM in /proc/self/status) in a fresh child process, reset just before one call.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastconv
from fastconv.backends import fft, im2col
from fastconv._params import make_conv_params
from tests import naive
from tests.tolerances import assert_matches

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


@pytest.fixture
def workspace_limit():
    previous = fastconv.get_workspace_limit()
    yield fastconv.set_workspace_limit
    fastconv.set_workspace_limit(previous)


@pytest.mark.parametrize("backend", ["im2col", "fft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_in_workspace_chunks_is_correct(backend, dtype, workspace_limit, rng):
    x = rng.standard_normal((3, 8, 30, 30)).astype(dtype)
    w = rng.standard_normal((16, 4, 5, 5)).astype(dtype)
    kwargs = {"padding": 2, "groups": 2}
    params = make_conv_params(x, w, None, 1, 2, 1, 2)[0]
    module = im2col if backend == "im2col" else fft
    workspace_limit(1 << 30)
    unchunked = module.workspace_bytes(params)
    # The FFT's smallest chunk (one sample's C input spectra, one output channel) is its floor:
    # 76 KB here in float32, so its cap is set above that; im2col's floor is one output row.
    cap = 96 * 1024 * (params.dtype.itemsize // 4) if backend == "fft" else 64 * 1024
    workspace_limit(cap)
    assert module.workspace_bytes(params) <= cap < unchunked
    got = fastconv.conv2d(x, w, algorithm=backend, **kwargs)
    assert_matches(got, naive.conv2d(x, w, **kwargs), naive.conv2d(np.abs(x), np.abs(w), **kwargs),
                   dtype, backend)


_PEAK_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
import numpy as np, fastconv

def status(field):
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

def reset_high_water():
    # Linux >= 4.0: "5" resets VmHWM to the current resident size, so that the peak of imports and
    # the warm-up call does not hide the call's own; where it cannot, the earlier peak stands
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False

kwargs = {kwargs!r}
fastconv.set_workspace_limit({cap})
rng = np.random.default_rng(0)
x = rng.standard_normal({x_shape}, dtype=np.float32)
w = rng.standard_normal({w_shape}, dtype=np.float32)
fastconv.conv2d(x[:1, :, :32, :32], w, **kwargs)  # load the same kernels, warm BLAS / pocketfft
reset = reset_high_water()
before = status("VmRSS") if reset else status("VmHWM")
out = fastconv.conv2d(x, w, **kwargs)
after = status("VmHWM")
print(json.dumps(dict(before=before, after=after, output=out.nbytes, reset=reset)))
"""

# Each case's unchunked workspace is several times the allowance below, so a regression in the
# chunking (or a problem that stopped taking the chunked path) fails the test.
PEAK_CASES = {
    # stride 2: the unfold path (the stride-1 shifted-tap GEMMs build no column matrix at all);
    # its column matrix would be 64*5*5 x 128*128 float32 = 100 MiB
    "im2col unfold": ((1, 64, 256, 256), (32, 64, 5, 5), {"stride": 2, "padding": 2}),
    # 192 x 64 weight spectra, even at the overlap-save tiles' size, are several times the allowance
    "fft": ((2, 64, 96, 96), (192, 64, 15, 15), {"padding": 7}),
}
PEAK_CAP = 8 * MIB
PEAK_SLACK = 16 * MIB  # allocator slack, the thread pools' buffers, small per-call arrays


def _unchunked_and_chunked_workspace(backend, params):
    module = im2col if backend == "im2col" else fft
    previous = fastconv.get_workspace_limit()
    try:
        fastconv.set_workspace_limit(1 << 40)
        unchunked = module.workspace_bytes(params)
        fastconv.set_workspace_limit(PEAK_CAP)
        chunked = module.workspace_bytes(params)
    finally:
        fastconv.set_workspace_limit(previous)
    return unchunked, chunked


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("case", PEAK_CASES)
def test_peak_memory_of_a_large_call_stays_within_cap_plus_output(case):
    x_shape, w_shape, kwargs = PEAK_CASES[case]
    backend = case.split()[0]
    kwargs = dict(kwargs, algorithm=backend)
    params = make_conv_params(np.empty(x_shape, np.float32), np.empty(w_shape, np.float32), None,
                              kwargs.get("stride", 1), kwargs["padding"])[0]
    if backend == "im2col":  # the path the case is about
        assert not im2col.uses_shifted_taps(params) and not im2col.is_pointwise(params)
        assert im2col.rows_per_chunk(params, PEAK_CAP) < params.out_h
    else:
        assert fft.chunk_sizes(params, PEAK_CAP) != (params.batch, params.out_channels)
    unchunked, chunked = _unchunked_and_chunked_workspace(backend, params)
    output_bytes = int(np.prod(params.output_shape)) * 4
    allowance = PEAK_CAP + output_bytes + PEAK_SLACK
    assert chunked <= PEAK_CAP and unchunked > 3 * allowance

    script = _PEAK_CHILD.format(root=str(ROOT), cap=PEAK_CAP, x_shape=x_shape, w_shape=w_shape,
                                kwargs=kwargs)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    growth = report["after"] - report["before"]
    print(f"{case}: peak growth {growth / MIB:.1f} MiB (cap {PEAK_CAP / MIB:.0f} MiB, output "
          f"{report['output'] / MIB:.1f} MiB, unchunked workspace {unchunked / MIB:.0f} MiB, "
          f"high-water mark reset: {report['reset']})")
    assert growth <= allowance


def test_result_that_cannot_fit_is_refused_before_allocation():
    x = np.broadcast_to(np.float32(1), (1, 1, 300_000, 300_000))  # one element of storage
    with pytest.raises(ValueError, match="output of shape .* physical memory"):
        fastconv.conv2d(x, np.ones((4, 1, 1, 1), np.float32))
