"""Bounded memory: workspaces respect the cap by chunking, and the peak of a large call is measured.

Numba's and NumPy's allocations bypass tracemalloc, so the peak is the process's high-water mark
(VmHWM in /proc/self/status), read in a fresh child process before and after one call.
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

def high_water():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

fastconv.set_workspace_limit({cap})
rng = np.random.default_rng(0)
x = rng.standard_normal({x_shape}, dtype=np.float32)
w = rng.standard_normal({w_shape}, dtype=np.float32)
fastconv.conv2d(x[:, :, :8, :8], w, padding=1, algorithm="im2col")  # load kernels, warm BLAS
before = high_water()
out = fastconv.conv2d(x, w, padding=1, algorithm="im2col")
after = high_water()
print(json.dumps(dict(before=before, after=after, input=x.nbytes, output=out.nbytes)))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_memory_of_a_large_im2col_call_stays_within_cap_plus_operands():
    cap = 16 * MIB
    x_shape, w_shape = (1, 256, 128, 128), (64, 256, 3, 3)
    # without chunking the column matrix alone would be 256*9*128*128*4 bytes = 144 MiB
    script = _PEAK_CHILD.format(root=str(ROOT), cap=cap, x_shape=x_shape, w_shape=w_shape)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    growth = report["after"] - report["before"]
    print(f"peak growth {growth / MIB:.1f} MiB (cap {cap / MIB:.0f} MiB, input "
          f"{report['input'] / MIB:.0f} MiB, output {report['output'] / MIB:.0f} MiB)")
    # generous margin for allocator slack and BLAS thread buffers
    assert growth <= cap + report["input"] + report["output"] + 32 * MIB


def test_result_that_cannot_fit_is_refused_before_allocation():
    x = np.broadcast_to(np.float32(1), (1, 1, 300_000, 300_000))  # one element of storage
    with pytest.raises(ValueError, match="output of shape .* physical memory"):
        fastconv.conv2d(x, np.ones((4, 1, 1, 1), np.float32))
