"""fastconv._simd: the explicit vector values behind the direct backend's register tiles."""
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from numba.core.errors import TypingError

from fastconv import _simd

VECTOR_BYTES = 128  # what the tiles use: 32 float32 / 16 float64 lanes


@numba.njit
def _copy(src, dst, start):
    _simd.store(dst, start, _simd.load(src, start, VECTOR_BYTES))


@numba.njit
def _copy_first(src, dst, start, count):
    _simd.store(dst, 0, _simd.load_first(src, start, VECTOR_BYTES, count))


@numba.njit
def _store_first(src, dst, start, count):
    _simd.store_first(dst, start, _simd.load(src, 0, VECTOR_BYTES), count)


@numba.njit
def _swap(src, dst):
    _simd.store(dst, 0, _simd.swap_pairs(_simd.load(src, 0, VECTOR_BYTES)))


@numba.njit
def _fma(a, b, c, out):
    _simd.store(out, 0, _simd.fma(_simd.load(a, 0, VECTOR_BYTES), _simd.load(b, 0, VECTOR_BYTES),
                                  _simd.load(c, 0, VECTOR_BYTES)))


@numba.njit
def _axpy_from_zero(scalar, x, out):
    acc = _simd.zeros(out.dtype, VECTOR_BYTES)
    acc = _simd.fma(_simd.broadcast(scalar, VECTOR_BYTES), _simd.load(x, 0, VECTOR_BYTES), acc)
    _simd.store(out, 0, acc)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_load_and_store_are_unaligned_lane_copies(dtype):
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    src = np.arange(3 * lanes, dtype=dtype)
    for start in (0, 1, 7, lanes + 3):  # every alignment, not just whole vectors
        dst = np.full_like(src, -1)
        _copy(src, dst, start)
        expected = np.full_like(src, -1)
        expected[start:start + lanes] = src[start:start + lanes]
        np.testing.assert_array_equal(dst, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count", [0, 1, 5, "all"])
def test_load_first_fills_the_other_lanes_with_zeros(dtype, count):
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    count = lanes if count == "all" else count
    src = np.arange(1, 2 * lanes + 1, dtype=dtype)
    dst = np.full(lanes, -1, dtype=dtype)
    _copy_first(src, dst, 3, count)
    expected = np.zeros(lanes, dtype=dtype)
    expected[:count] = src[3:3 + count]
    np.testing.assert_array_equal(dst, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count", [0, 1, 5, "all"])
def test_store_first_writes_only_count_lanes(dtype, count):
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    count = lanes if count == "all" else count
    src = np.arange(1, lanes + 1, dtype=dtype)
    dst = np.full(2 * lanes, -1, dtype=dtype)
    _store_first(src, dst, 3, count)
    expected = np.full(2 * lanes, -1, dtype=dtype)
    expected[3:3 + count] = src[:count]
    np.testing.assert_array_equal(dst, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_swap_pairs_exchanges_real_and_imaginary_parts(dtype):
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    src = np.arange(lanes, dtype=dtype)
    dst = np.empty_like(src)
    _swap(src, dst)
    np.testing.assert_array_equal(dst, src.reshape(-1, 2)[:, ::-1].ravel())


def test_load_first_never_touches_memory_past_count():
    """The last value of the array sits right before a page that cannot be read: a masked load
    (or store) ending there must not fault (a plain load of the whole vector would).  Run in a child process
    so that a fault fails this test instead of killing the test run."""
    script = textwrap.dedent("""
        import ctypes, mmap
        import numba, numpy as np
        from fastconv import _simd

        @numba.njit
        def first(src, start, count, dst):
            _simd.store(dst, 0, _simd.load_first(src, start, 128, count))

        @numba.njit
        def store_last(src, dst, start, count):
            _simd.store_first(dst, start, _simd.load(src, 0, 128), count)

        page = mmap.PAGESIZE
        buffer = mmap.mmap(-1, 2 * page)
        libc = ctypes.CDLL(None)
        address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
        assert libc.mprotect(ctypes.c_void_p(address + page), page, 0) == 0  # PROT_NONE
        values = np.frombuffer(buffer, dtype=np.float32, count=page // 4)
        values[:] = np.arange(page // 4)
        dst = np.zeros(32, np.float32)
        first(values, page // 4 - 5, 5, dst)  # the last five values of the readable page
        assert list(dst[:5]) == list(values[-5:]) and not dst[5:].any()
        store_last(np.arange(32, dtype=np.float32), values, page // 4 - 5, 5)  # likewise, writing
        assert list(values[-5:]) == [0, 1, 2, 3, 4]
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fma_rounds_once(dtype):
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(lanes).astype(dtype) for _ in range(3))
    out = np.empty(lanes, dtype=dtype)
    _fma(a, b, c, out)
    if dtype == np.float32:  # the exact product fits a float64: one rounding of the exact sum
        exact = (a.astype(np.float64) * b + c).astype(np.float32)
        np.testing.assert_array_equal(out, exact)
    else:
        np.testing.assert_allclose(out, a * b + c, rtol=1e-15, atol=1e-15)


def test_broadcast_and_zeros():
    x = np.arange(32, dtype=np.float32)
    out = np.empty(32, np.float32)
    _axpy_from_zero(np.float32(2.5), x, out)
    np.testing.assert_array_equal(out, 2.5 * x)


def test_inputs_are_not_modified():
    src = np.arange(64, dtype=np.float32)
    before = src.copy()
    _copy(src, np.empty(64, np.float32), 0)
    np.testing.assert_array_equal(src, before)


def test_byte_count_must_be_a_power_of_two_constant():
    @numba.njit
    def odd_width(x):
        return _simd.load(x, 0, 192)

    @numba.njit
    def runtime_width(x, nbytes):
        return _simd.load(x, 0, nbytes)

    x = np.zeros(64, np.float32)
    with pytest.raises(TypingError, match="power of two"):
        odd_width(x)
    with pytest.raises(TypingError, match="compile-time constant"):
        runtime_width(x, 128)


def test_integer_and_strided_arrays_are_refused():
    @numba.njit
    def load_any(x):
        return _simd.load(x, 0, VECTOR_BYTES)

    with pytest.raises(TypingError, match="float32 or float64"):
        load_any(np.zeros(64, np.int32))
    with pytest.raises(TypingError, match="C-contiguous"):
        load_any(np.zeros(128, np.float32)[::2])


# --- arithmetic, strided loads, interleaved and masked stores, conversion (Winograd's transforms) ---
@numba.njit
def _formula(a, b, out):
    x = _simd.load(a, 0, VECTOR_BYTES)
    y = _simd.load(b, 0, VECTOR_BYTES)
    _simd.store(out, 0, 4 * x - y * 2.5 + (-x) * y - 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_operators_apply_lane_by_lane_and_keep_the_dtype(dtype):
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal(lanes).astype(dtype) for _ in range(2))
    out = np.empty(lanes, dtype)
    _formula(a, b, out)
    # a float64 constant in float32 arithmetic would round differently; contraction may fuse
    # a multiply into an add (one rounding fewer), hence a few ulps
    expected = dtype(4) * a - b * dtype(2.5) + (-a) * b - dtype(1)
    np.testing.assert_allclose(out, expected, rtol=8 * np.finfo(dtype).eps, atol=8 * np.finfo(dtype).eps)


@numba.njit
def _split(src, start, out):
    first, second, third = _simd.load_strided(src, start, 3, VECTOR_BYTES)
    lanes = out.shape[0] // 3
    _simd.store(out, 0, first)
    _simd.store(out, lanes, second)
    _simd.store(out, 2 * lanes, third)


@numba.njit
def _join(src, out, start):
    lanes = src.shape[0] // 4
    _simd.store_interleaved(out, start, (_simd.load(src, 0, VECTOR_BYTES),
                                         _simd.load(src, lanes, VECTOR_BYTES),
                                         _simd.load(src, 2 * lanes, VECTOR_BYTES),
                                         _simd.load(src, 3 * lanes, VECTOR_BYTES)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_load_strided_splits_phases_and_store_interleaved_merges_them(dtype):
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    src = np.arange(3 * lanes + 5, dtype=dtype)
    out = np.empty(3 * lanes, dtype)
    _split(src, 2, out)  # an odd phase count, an unaligned start
    np.testing.assert_array_equal(out.reshape(3, lanes), src[2:2 + 3 * lanes].reshape(lanes, 3).T)
    phases = np.arange(4 * lanes, dtype=dtype)
    merged = np.full(4 * lanes + 2, -1, dtype)
    _join(phases, merged, 1)
    np.testing.assert_array_equal(merged[1:-1], phases.reshape(4, lanes).T.ravel())
    assert merged[0] == -1 and merged[-1] == -1


@numba.njit
def _store_first(src, dst, start, count):
    _simd.store_first(dst, start, _simd.load(src, 0, VECTOR_BYTES), count)


@pytest.mark.parametrize("count", [0, 1, 5, "all"])
def test_store_first_writes_only_count_values(count):
    lanes = VECTOR_BYTES // 4
    count = lanes if count == "all" else count
    src = np.arange(1, lanes + 1, dtype=np.float32)
    dst = np.full(lanes + 4, -1, np.float32)
    _store_first(src, dst, 2, count)
    expected = np.full(lanes + 4, -1, np.float32)
    expected[2:2 + count] = src[:count]
    np.testing.assert_array_equal(dst, expected)


@numba.njit
def _round_trip(src, wide, narrow):
    value = _simd.convert(_simd.load(src, 0, VECTOR_BYTES), np.float64)
    _simd.store(wide, 0, value)
    _simd.store(narrow, 0, _simd.convert(value * (1 / 3), narrow.dtype))


def test_convert_widens_exactly_and_rounds_once():
    lanes = VECTOR_BYTES // 4
    src = np.random.default_rng(2).standard_normal(lanes).astype(np.float32)
    wide, narrow = np.empty(lanes, np.float64), np.empty(lanes, np.float32)
    _round_trip(src, wide, narrow)
    np.testing.assert_array_equal(wide, src.astype(np.float64))
    np.testing.assert_array_equal(narrow, (src.astype(np.float64) * (1 / 3)).astype(np.float32))


@numba.njit
def _transpose(src, src_start, src_stride, dst, dst_start, dst_stride, shape):
    _simd.transpose_square(src, src_start, src_stride, dst, dst_start, dst_stride, shape.vector_bytes)


@pytest.mark.parametrize("vector_bytes", [8, 16, 32, 64, 128])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transpose_square_moves_a_block_through_registers(vector_bytes, dtype):
    from fastconv._cpu import TileShape

    lanes = vector_bytes // np.dtype(dtype).itemsize
    src_stride, dst_stride = lanes + 3, lanes + 5  # rows longer than a vector, unaligned
    src = np.arange(3 + src_stride * lanes, dtype=dtype)
    dst = np.full(2 + dst_stride * lanes, -1, dtype)
    before = src.copy()
    _transpose(src, 3, src_stride, dst, 2, dst_stride, TileShape(1, 1, vector_bytes))
    block = src[3:3 + src_stride * lanes].reshape(lanes, src_stride)[:, :lanes]
    written = dst[2:2 + dst_stride * lanes].reshape(lanes, dst_stride)
    np.testing.assert_array_equal(written[:, :lanes], block.T)
    assert (written[:, lanes:] == -1).all() and dst[:2].tolist() == [-1, -1]  # nothing else
    np.testing.assert_array_equal(src, before)


def test_transpose_square_refuses_mixed_dtypes():
    from fastconv._cpu import TileShape

    with pytest.raises(TypingError, match="one dtype"):
        _transpose(np.zeros(64, np.float32), 0, 8, np.zeros(64, np.float64), 0, 8, TileShape(1, 1, 32))
