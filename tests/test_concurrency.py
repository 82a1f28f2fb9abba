"""Threads and processes: correct results, kernels that release the GIL, an intact wisdom file."""
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import fastconv
from fastconv import dispatch
from tests import naive
from tests.tolerances import assert_matches

ROOT = Path(__file__).resolve().parent.parent

SHAPES = [
    ((1, 3, 12, 12), (4, 3, 3, 3), {"padding": 1}),
    ((2, 2, 10, 9), (2, 2, 5, 5), {}),
    ((1, 4, 11, 11), (4, 2, 3, 3), {"groups": 2, "stride": 2}),
    ((1, 1, 24, 24), (1, 1, 9, 9), {"padding": 4}),
]


@pytest.fixture
def autotune(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCONV_WISDOM", str(tmp_path / "wisdom.json"))
    dispatch.forget_measurements()
    fastconv.set_autotune(True)
    yield tmp_path / "wisdom.json"
    fastconv.set_autotune(False)
    dispatch.forget_measurements()


def test_eight_threads_autotuning_get_correct_results(autotune, rng):
    problems = []
    for i in range(32):
        x_shape, w_shape, kwargs = SHAPES[i % len(SHAPES)]
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        problems.append((x, w, kwargs, naive.conv2d(x, w, **kwargs),
                         naive.conv2d(np.abs(x), np.abs(w), **kwargs)))
    barrier = threading.Barrier(8)

    def work(index):
        if index < 8:
            barrier.wait()  # the first eight calls start together, all measuring the same shapes
        x, w, kwargs, _, _ = problems[index]
        return fastconv.conv2d(x, w, **kwargs)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(len(problems))))
    for (x, w, kwargs, exact, magnitude), got in zip(problems, results):
        assert_matches(got, exact, magnitude, np.float32, "fft")
    stored = json.loads(autotune.read_text())["entries"]
    assert len(stored) == len(SHAPES)  # one measurement per shape survived the concurrent writes


def test_kernels_release_the_gil(rng):
    """A pure-Python counter keeps counting while a long compiled call runs in another thread.

    The interpreter's switch interval is raised for the test, so the GIL changes hands only when
    a thread gives it up: the counter yields it every 1000 increments (``sleep(0)``), and the
    worker only inside the compiled call.  With the GIL held for the whole call the counter could
    advance by at most one batch of 1000 while the worker is between reads.  The call is im2col's
    stride-1 path, whose GEMM driver is a serial kernel (Numba's parallel regions release the GIL
    on their own, so they would prove nothing)."""
    x = rng.standard_normal((16, 64, 64, 64)).astype(np.float32)
    w = rng.standard_normal((64, 64, 5, 5)).astype(np.float32)
    fastconv.conv2d(x[:1, :, :8, :8], w, padding=2, algorithm="im2col")  # compile/load first
    fastconv.set_num_threads(1)
    previous_interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        done = threading.Event()
        counter = [0]
        advance = []

        def count():
            while not done.is_set():
                counter[0] += 1
                if counter[0] % 1000 == 0:
                    time.sleep(0)  # let the worker take the GIL back when it needs it

        def convolve():
            before = counter[0]
            fastconv.conv2d(x, w, padding=2, algorithm="im2col")
            advance.append(counter[0] - before)
            done.set()

        counting = threading.Thread(target=count)
        counting.start()
        worker = threading.Thread(target=convolve)
        worker.start()
        worker.join()
        counting.join()
    finally:
        sys.setswitchinterval(previous_interval)
        fastconv.set_num_threads(fastconv._config.numba.config.NUMBA_NUM_THREADS)
    assert advance[0] > 20_000


def test_decision_cache_is_thread_safe(rng):
    dispatch.set_cost_coefficients(None)  # clears the plan cache
    x = rng.standard_normal((1, 2, 9, 9))
    w = rng.standard_normal((3, 2, 3, 3))
    barrier = threading.Barrier(8)

    def work(seed):
        barrier.wait()
        local = np.random.default_rng(seed)
        out = []
        for _ in range(25):
            stride = int(local.integers(1, 3))
            padding = int(local.integers(0, 3))
            out.append((stride, padding, fastconv.conv2d(x, w, stride=stride, padding=padding)))
        return out

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(8)))
    for per_thread in results:
        for stride, padding, got in per_thread:
            exact = naive.conv2d(x, w, stride=stride, padding=padding)
            magnitude = naive.conv2d(np.abs(x), np.abs(w), stride=stride, padding=padding)
            assert_matches(got, exact, magnitude, np.float64, "fft")
    assert len(dispatch.forward._plans) <= 2 * 3  # one plan per (stride, padding): no torn entries


_AUTOTUNE_CHILD = """
import sys, json
sys.path.insert(0, {root!r})
import numpy as np, fastconv
fastconv.set_autotune(True)
rng = np.random.default_rng({seed})
for size in range(8, 8 + {count}):
    x = rng.standard_normal((1, 2, size, size))
    w = rng.standard_normal((2, 2, 3, 3))
    fastconv.conv2d(x, w, padding={seed})
print("ok")
"""


def test_two_processes_autotuning_never_corrupt_the_wisdom_file(tmp_path):
    wisdom = tmp_path / "wisdom.json"
    env = dict(__import__("os").environ, FASTCONV_WISDOM=str(wisdom))
    children = [
        subprocess.Popen([sys.executable, "-c", _AUTOTUNE_CHILD.format(root=str(ROOT), seed=seed,
                                                                       count=6)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in (0, 1)
    ]
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-2000:]
        assert "RuntimeWarning" not in err  # no corrupt-file warning was ever raised
    entries = json.loads(wisdom.read_text())["entries"]
    assert len(entries) == 12  # 6 shapes x 2 paddings: no process lost the other's entries


def test_corrupt_wisdom_is_survived_and_replaced(tmp_path, monkeypatch, rng):
    """(An unwritable wisdom location is tested in test_dispatch.py.)"""
    wisdom = tmp_path / "wisdom.json"
    wisdom.write_text('{"format": 1, "entries": {"forward|x": ')  # truncated by a crash
    monkeypatch.setenv("FASTCONV_WISDOM", str(wisdom))
    dispatch.forget_measurements()
    fastconv.set_autotune(True)
    x = rng.standard_normal((1, 2, 8, 8))
    w = rng.standard_normal((2, 2, 3, 3))
    try:
        with pytest.warns(RuntimeWarning, match="corrupt"):
            got = fastconv.conv2d(x, w)
    finally:
        fastconv.set_autotune(False)
        dispatch.forget_measurements()
    np.testing.assert_allclose(got, naive.conv2d(x, w), rtol=1e-12, atol=1e-12)
    assert json.loads(wisdom.read_text())["entries"]  # replaced by a valid file


def test_the_tbb_threading_layer_loads_where_tbb_is_installed():
    """pip puts libtbb in the environment's lib/, off the loader's path: without fastconv loading it
    first Numba falls back to OpenMP without a word.  Checked in a fresh process, whose first
    parallel launch chooses the layer."""
    from importlib import metadata

    try:
        metadata.distribution("tbb")
    except metadata.PackageNotFoundError:
        pytest.skip("the tbb package is not installed: Numba uses another threading layer")
    code = ("import numpy as np, numba, fastconv; "
            "fastconv.conv2d(np.ones((4, 2, 9, 9), np.float32), np.ones((8, 2, 3, 3), np.float32), "
            "algorithm='direct'); print(numba.threading_layer())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tbb"
