"""fastconv.dask against the in-memory functions (scipy.signal for correlate2d / convolve2d,
fastconv's own conv2d and pooling, a fastconv.nn model) on ragged chunkings, chunks smaller than
the kernel, one chunk and a tiny last chunk; the graph's shape (one key for the kernel, tasks in
proportion to blocks); threads per task; bad inputs; and a few runs on a real two-process
LocalCluster.  Most graphs run on the synchronous scheduler, which is fastest for small arrays."""
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import fastconv  # noqa: E402
import fastconv.dask as fd  # noqa: E402
from fastconv import nn  # noqa: E402

MODES = ("full", "same", "valid")
BOUNDARIES = ("fill", "wrap", "symm")
SIGNAL_PAIRS = [(fd.correlate2d, scipy.signal.correlate2d), (fd.convolve2d, scipy.signal.convolve2d)]
SIGNAL_IDS = ["correlate2d", "convolve2d"]


@pytest.fixture(autouse=True)
def synchronous_scheduler():
    with dask.config.set(scheduler="synchronous"):
        yield


def _close(result, expected, rtol=1e-10, atol=1e-10):
    """Equal shapes and dtypes, values to rounding (blocks may sum in another order)."""
    assert result.shape == expected.shape
    assert result.dtype == expected.dtype
    np.testing.assert_allclose(result, expected, rtol=rtol, atol=atol)


# --- correlate2d / convolve2d -----------------------------------------------------------------------
CHUNKINGS = {
    "ragged": ((5, 1, 9, 2, 6), (4, 11, 3, 2)),
    "smaller_than_kernel": ((2,) * 11 + (1,), (3,) * 6 + (2,)),
    "single_chunk": ((23,), (20,)),
    "tiny_last": ((11, 11, 1), (9, 10, 1)),
}
KERNEL_SHAPES = [(3, 3), (4, 6), (1, 7), (7, 1), (5, 2)]


@pytest.mark.parametrize("chunking", CHUNKINGS.values(), ids=CHUNKINGS.keys())
@pytest.mark.parametrize("kernel_shape", KERNEL_SHAPES, ids=str)
@pytest.mark.parametrize(("function", "reference"), SIGNAL_PAIRS, ids=SIGNAL_IDS)
def test_signal_every_mode_and_boundary(chunking, kernel_shape, function, reference, rng):
    image = rng.standard_normal((23, 20))
    kernel = rng.standard_normal(kernel_shape)
    lazy_image = da.from_array(image, chunks=chunking)
    for mode in MODES:
        for boundary in BOUNDARIES:
            result = function(lazy_image, kernel, mode, boundary, fillvalue=-0.5)
            expected = reference(image, kernel, mode, boundary, fillvalue=-0.5)
            assert result.shape == expected.shape, (mode, boundary)
            _close(result.compute(), expected)


@settings(max_examples=25)
@given(
    height=st.integers(1, 16), width=st.integers(1, 16),
    kernel_h=st.integers(1, 6), kernel_w=st.integers(1, 6),
    chunk_h=st.integers(1, 7), chunk_w=st.integers(1, 7),
    mode=st.sampled_from(MODES), boundary=st.sampled_from(BOUNDARIES),
    flip=st.booleans(), seed=st.integers(0, 2**32 - 1),
)
def test_signal_property(height, width, kernel_h, kernel_w, chunk_h, chunk_w, mode, boundary, flip,
                         seed):
    """Any shapes (kernel larger than the image included), any regular chunking."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((height, width))
    kernel = rng.standard_normal((kernel_h, kernel_w))
    function, reference = SIGNAL_PAIRS[flip]
    in1_contains = height >= kernel_h and width >= kernel_w
    in2_contains = height <= kernel_h and width <= kernel_w
    if mode == "valid" and not (in1_contains or in2_contains):
        with pytest.raises(ValueError, match="at least as large"):
            function(da.from_array(image, chunks=(chunk_h, chunk_w)), kernel, mode, boundary)
        return
    result = function(da.from_array(image, chunks=(chunk_h, chunk_w)), kernel, mode, boundary, 2.0)
    _close(result.compute(), reference(image, kernel, mode, boundary, 2.0))


@pytest.mark.parametrize(("function", "reference"), SIGNAL_PAIRS, ids=SIGNAL_IDS)
def test_signal_dtypes_follow_scipy(function, reference, rng):
    """Integers wrap as scipy's do, a float32 image with a float64 kernel gives float64 (and the
    fill value is converted to the result dtype, not the image's), complex kernels are conjugated."""
    cases = [
        (rng.integers(-100, 100, (13, 11)).astype(np.int8), rng.integers(-9, 9, (3, 4)).astype(np.int8), 3),
        (rng.integers(0, 60000, (13, 11)).astype(np.uint16), rng.integers(0, 5, (4, 3)).astype(np.uint16), 7),
        (rng.standard_normal((13, 11)).astype(np.float32), rng.standard_normal((3, 3)), 1.5),
        (rng.standard_normal((13, 11)), rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3)),
         0.5 - 1j),
    ]
    for image, kernel, fill in cases:
        for mode in MODES:
            result = function(da.from_array(image, chunks=(4, 5)), kernel, mode, "fill", fill)
            expected = reference(image, kernel, mode, "fill", fill)
            assert result.dtype == expected.dtype
            computed = result.compute()
            if expected.dtype.kind in "iu":
                np.testing.assert_array_equal(computed, expected)
            else:
                _close(computed, expected, rtol=1e-5, atol=1e-4)


def test_signal_kernel_with_nan_propagates_as_in_memory(rng):
    image = rng.standard_normal((12, 12))
    kernel = np.ones((3, 3))
    kernel[1, 1] = np.nan
    result = fd.correlate2d(da.from_array(image, chunks=5), kernel, "same", "symm").compute()
    np.testing.assert_array_equal(result, fastconv.correlate2d(image, kernel, "same", "symm"))
    assert np.isnan(result).all()


def test_valid_with_the_kernel_larger_than_the_image_swaps_as_scipy(rng):
    image = rng.standard_normal((3, 4))
    kernel = rng.standard_normal((6, 9))
    for function, reference in SIGNAL_PAIRS:
        result = function(da.from_array(image, chunks=2), kernel, "valid")
        _close(result.compute(), reference(image, kernel, "valid"))


def test_blocks_run_fastconvs_kernel_in_valid_mode(monkeypatch, rng):
    """Every block is one fastconv.correlate2d call in valid mode: the work is fastconv's."""
    calls = []
    original = fastconv.signal.correlate2d

    def recording(in1, in2, mode, *args, **kwargs):
        calls.append((in1.shape, mode))
        return original(in1, in2, mode, *args, **kwargs)

    monkeypatch.setattr(fastconv.signal, "correlate2d", recording)
    image = rng.standard_normal((30, 30))
    result = fd.correlate2d(da.from_array(image, chunks=10), np.ones((5, 5)), "same", "symm")
    _close(result.compute(), scipy.signal.correlate2d(image, np.ones((5, 5)), "same", "symm"))
    assert len(calls) == 9
    assert {mode for _, mode in calls} == {"valid"}
    # each block: its own rows plus exactly kernel - 1 of halo/padding, no more
    assert sum(shape[0] * shape[1] for shape, _ in calls) == sum(
        (rows + 4) * (cols + 4) for rows in result.chunks[0] for cols in result.chunks[1])


# --- block planning --------------------------------------------------------------------------------
@settings(max_examples=200)
@given(
    chunks=st.lists(st.integers(1, 9), min_size=1, max_size=8),
    pad_before=st.integers(0, 6), pad_after=st.integers(0, 6),
    span=st.integers(1, 9), stride=st.integers(1, 4),
)
def test_plan_axis_tiles_the_output(chunks, pad_before, pad_after, span, stride):
    """Blocks cover the padded axis; each block's halo comes from its adjacent blocks only; block
    outputs are non-empty, tile the output, and start where a valid window of the whole axis would."""
    padded = pad_before + sum(chunks) + pad_after
    if padded < span:
        return
    plan = fd._plan_axis(padded, tuple(chunks), pad_before, span, stride)
    assert sum(plan.block_sizes) == padded
    assert plan.above + plan.below == max(span - stride, 0)
    assert all(size >= max(plan.above, plan.below) for size in plan.block_sizes)
    assert all(rows >= 1 for rows in plan.output_sizes)
    assert sum(plan.output_sizes) == (padded - span) // stride + 1
    start, first_output = 0, 0
    for block, (size, rows) in enumerate(zip(plan.block_sizes, plan.output_sizes)):
        read_from = start - (plan.above if block else 0)
        read_to = start + size + (plan.below if block < len(plan.block_sizes) - 1 else 0)
        assert read_from == first_output * stride  # the block's first window starts its read
        assert (first_output + rows - 1) * stride + span <= read_to  # its last window fits
        start, first_output = start + size, first_output + rows


@settings(max_examples=12)
@given(
    height=st.integers(4, 14), width=st.integers(4, 14),
    chunk_h=st.integers(1, 6), chunk_w=st.integers(1, 6),
    kernel=st.integers(1, 4), stride=st.integers(1, 3), dilation=st.integers(1, 2),
    padding=st.integers(0, 2), mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_conv2d_property(height, width, chunk_h, chunk_w, kernel, stride, dilation, padding, mode,
                         seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2, height, width))
    weight = rng.standard_normal((3, 2, kernel, kernel))
    span = dilation * (kernel - 1) + 1
    if span > min(height, width) + 2 * padding or (mode == "reflect" and padding >= min(height, width)):
        return
    lazy = da.from_array(x, chunks=(1, 1, chunk_h, chunk_w))
    result = fd.conv2d(lazy, weight, None, stride, padding, dilation, padding_mode=mode)
    expected = fastconv.conv2d(x, weight, None, stride, padding, dilation, padding_mode=mode)
    _close(result.compute(), expected)


# --- the graph ------------------------------------------------------------------------------------
def test_kernel_is_one_key_and_tasks_grow_with_blocks(rng):
    kernel = rng.standard_normal((32, 32))  # 8 KiB: easy to spot in a pickled graph
    sizes = {}
    for blocks_per_axis in (4, 8):
        image = da.zeros((512, 512), chunks=512 // blocks_per_axis)
        graph = dict(fd.correlate2d(image, kernel, "same", "symm").__dask_graph__())
        payload = pickle.dumps(graph)
        assert payload.count(kernel.tobytes()) == 1
        sizes[blocks_per_axis] = len(graph)
    # per block: up to 8 halo pieces, one fastconv call, the image's own and a few pass-through
    # tasks of the edge padding; per row of blocks a few for the edge strips; nothing faster
    assert (sizes[8] - sizes[4]) / (64 - 16) <= 14, sizes
    assert sizes[8] <= 14 * 64, sizes


def test_chunks_and_dtype_are_known_without_computing(rng):
    image = da.from_array(rng.standard_normal((40, 30)).astype(np.float32), chunks=(13, 7))
    result = fd.convolve2d(image, np.ones((5, 3), np.float32), "same", "wrap")
    assert result.dtype == np.float32 and result._meta.dtype == np.float32
    assert sum(result.chunks[0]) == 40 and sum(result.chunks[1]) == 30
    assert not any(np.isnan(c) for axis in result.chunks for c in axis)


def test_a_chunk_smaller_than_the_halo_is_merged_minimally():
    image = da.zeros((40, 40), chunks=((10, 2, 10, 18), (40,)))
    result = fd.correlate2d(image, np.ones((5, 1)), "valid")
    # the 2-row chunk cannot supply a 4-row halo: merged into its neighbour, the rest kept
    assert result.chunks[0] == (10, 12, 14)


def test_same_mode_keeps_the_chunks_of_in1():
    """The halo is split as the padding is (above and below), so block boundaries stay put."""
    image = da.zeros((50, 40), chunks=((12, 20, 18), (7, 30, 3)))
    for function in (fd.correlate2d, fd.convolve2d):
        for kernel_shape in ((5, 4), (2, 7)):
            result = function(image, np.ones(kernel_shape), "same", "symm")
            assert result.chunks == image.chunks
    # a 2-column chunk cannot supply the 4 columns the blocks beside it need: merged, the rest kept
    image = da.zeros((50, 40), chunks=((12, 20, 18), (7, 2, 31)))
    assert fd.correlate2d(image, np.ones((1, 9)), "same").chunks == ((12, 20, 18), (7, 33))


def test_input_arrays_are_not_modified(rng):
    image = rng.standard_normal((15, 15))
    kernel = rng.standard_normal((3, 3))
    image_copy, kernel_copy = image.copy(), kernel.copy()
    result = fd.correlate2d(da.from_array(image, chunks=4), kernel, "full", "symm")
    kernel[...] = 0  # the graph holds its own copy of the kernel
    _close(result.compute(), scipy.signal.correlate2d(image_copy, kernel_copy, "full", "symm"))
    np.testing.assert_array_equal(image, image_copy)


# --- threads per task -------------------------------------------------------------------------------
def test_threads_per_task(monkeypatch, rng):
    """One thread per task when tasks run side by side (the threaded scheduler), the requested
    count when given; Numba's count on the calling thread is left as it was."""
    import numba

    seen = []
    original = fastconv.signal.correlate2d

    def recording(*args, **kwargs):
        seen.append(numba.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(fastconv.signal, "correlate2d", recording)
    before = numba.get_num_threads()
    image = da.from_array(rng.standard_normal((20, 20)), chunks=10)
    fd.correlate2d(image, np.ones((3, 3)), "same").compute(scheduler="threads")
    assert seen and set(seen) == {1}
    seen.clear()
    fd.correlate2d(image, np.ones((3, 3)), "same", threads_per_task=2).compute(scheduler="threads")
    assert set(seen) == {min(2, numba.config.NUMBA_NUM_THREADS)}
    seen.clear()
    # more than this process has (a worker on a smaller machine): all it has
    fd.correlate2d(image, np.ones((3, 3)), "same", threads_per_task=10_000).compute(
        scheduler="threads")
    assert set(seen) == {numba.config.NUMBA_NUM_THREADS}
    seen.clear()
    fd.correlate2d(image, np.ones((3, 3)), "same").compute(scheduler="synchronous")
    assert set(seen) == {before}
    assert numba.get_num_threads() == before


# --- conv2d ------------------------------------------------------------------------------------
CONV_CHUNKINGS = {
    "ragged": ((2, 1), (3,), (5, 1, 9, 8), (4, 11, 7)),
    "small": ((3,), (3,), (2,) * 11 + (1,), (3,) * 7 + (1,)),
    "single": ((3,), (3,), (23,), (22,)),
}


@pytest.mark.parametrize("chunking", CONV_CHUNKINGS.values(), ids=CONV_CHUNKINGS.keys())
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv2d_matches_in_memory(chunking, padding_mode, rng):
    x = rng.standard_normal((3, 3, 23, 22)).astype(np.float32)
    lazy = da.from_array(x, chunks=chunking)
    cases = [  # (weight shape, stride, padding, dilation, groups)
        ((4, 3, 3, 3), 1, 1, 1, 1),
        ((6, 1, 4, 2), 2, (2, 1), 1, 3),
        ((3, 3, 3, 5), 3, (1, 2), 2, 1),
        ((2, 3, 1, 1), (2, 3), 0, 1, 1),
        ((4, 3, 2, 4), 1, "same", 2, 1),
    ]
    for weight_shape, stride, padding, dilation, groups in cases:
        weight = rng.standard_normal(weight_shape).astype(np.float32)
        bias = rng.standard_normal(weight_shape[0]).astype(np.float32)
        args = (weight, bias, stride, padding, dilation, groups)
        result = fd.conv2d(lazy, *args, padding_mode=padding_mode)
        expected = fastconv.conv2d(x, *args, padding_mode=padding_mode)
        _close(result.compute(), expected, rtol=1e-4, atol=1e-4)


def test_conv2d_unbatched_and_float64_and_integer_input(rng):
    x = rng.integers(0, 255, (2, 17, 15)).astype(np.uint8)
    weight = rng.standard_normal((3, 2, 3, 3))
    result = fd.conv2d(da.from_array(x, chunks=(1, 5, 4)), weight, None, 2, 1)
    _close(result.compute(), fastconv.conv2d(x, weight, None, 2, 1))


# --- pooling ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunking", CONV_CHUNKINGS.values(), ids=CONV_CHUNKINGS.keys())
def test_pooling_matches_in_memory(chunking, rng):
    x = rng.standard_normal((3, 3, 23, 22))
    x[0, 0, 5, 5] = np.nan
    lazy = da.from_array(x, chunks=chunking)
    for kernel, stride, padding, dilation in [(2, None, 0, 1), (3, 2, 1, 1), (3, 1, 1, 2),
                                              ((2, 4), (3, 2), (1, 2), 1), (5, 3, 2, 1)]:
        for ceil_mode in (False, True):
            result = fd.max_pool2d(lazy, kernel, stride, padding, dilation, ceil_mode)
            expected = fastconv.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
            np.testing.assert_array_equal(result.compute(), expected)
            if dilation != 1:
                continue
            for count_include_pad in (True, False):
                for divisor in (None, 3):
                    args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor)
                    result = fd.avg_pool2d(lazy, *args)
                    _close(result.compute(), fastconv.avg_pool2d(x, *args), rtol=1e-12, atol=1e-12)


# --- predict ------------------------------------------------------------------------------------
def test_predict_matches_the_model_and_sends_it_once(rng):
    model = nn.models.lenet5(rng=0)
    images = rng.standard_normal((37, 1, 28, 28)).astype(np.float32)
    lazy = fd.predict(model, da.from_array(images, chunks=(5, 1, 28, 28)), batch_size=16)
    assert lazy.shape == (37, 10) and lazy.dtype == np.float32 and lazy.chunks[0] == (16, 16, 5)
    graph = dict(lazy.__dask_graph__())
    conv_weights = model.layers[0].weights.tobytes()
    assert pickle.dumps(graph).count(conv_weights) == 1
    _close(lazy.compute(), model.forward(images), rtol=1e-5, atol=1e-5)


# --- bad inputs -----------------------------------------------------------------------------------
def test_bad_inputs_are_refused_before_any_graph(rng):
    image = da.zeros((10, 10), chunks=5)
    with pytest.raises(TypeError, match=r"in1 must be a dask.array.Array.*fastconv.correlate2d"):
        fd.correlate2d(np.zeros((10, 10)), np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"in1 must be 2-D, got shape \(2, 10, 10\)"):
        fd.correlate2d(da.zeros((2, 10, 10)), np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"in2 must be a 2-D array, got shape \(3,\)"):
        fd.convolve2d(image, np.ones(3))
    with pytest.raises(TypeError, match="in2 must be an in-memory array"):
        fd.correlate2d(image, da.ones((3, 3)))
    with pytest.raises(ValueError, match="Acceptable mode flags"):
        fd.correlate2d(image, np.ones((3, 3)), mode="middle")
    with pytest.raises(ValueError, match="Acceptable boundary flags"):
        fd.correlate2d(image, np.ones((3, 3)), boundary="reflect")
    with pytest.raises(ValueError, match="not available for this type"):
        fd.correlate2d(image.astype(bool), np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="fillvalue"):
        fd.correlate2d(image, np.ones((3, 3)), fillvalue=[1, 2])
    with pytest.raises(ValueError, match="algorithm"):
        fd.correlate2d(image, np.ones((3, 3)), algorithm="magic")
    with pytest.raises(ValueError, match="threads_per_task"):
        fd.correlate2d(image, np.ones((3, 3)), threads_per_task=0)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        fd.correlate2d(image[image[:, 0] > 0], np.ones((3, 3)))
    batch = da.zeros((2, 3, 10, 10), chunks=(1, 3, 5, 5))
    with pytest.raises(TypeError, match=r"input must be a dask.array.Array.*fastconv.conv2d"):
        fd.conv2d(np.zeros((2, 3, 10, 10)), np.ones((1, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"expects 2 input channels.*has 3"):
        fd.conv2d(batch, np.ones((1, 2, 3, 3)))
    with pytest.raises(TypeError, match="complex"):
        fd.conv2d(batch.astype(complex), np.ones((1, 3, 3, 3)))
    with pytest.raises(ValueError, match="padding_mode"):
        fd.conv2d(batch, np.ones((1, 3, 3, 3)), padding=1, padding_mode="mirror")
    with pytest.raises(ValueError, match="at most half of kernel_size"):
        fd.max_pool2d(batch, 2, padding=2)
    with pytest.raises(ValueError, match="too small"):
        fd.avg_pool2d(batch, 11)
    with pytest.raises(TypeError, match="images must be a dask.array.Array"):
        fd.predict(nn.models.lenet5(rng=0), np.zeros((2, 1, 28, 28)))
    with pytest.raises(ValueError, match="batch_size"):
        fd.predict(nn.models.lenet5(rng=0), da.zeros((2, 1, 28, 28)), batch_size=0)


def test_importing_fastconv_does_not_import_dask():
    code = "import sys, fastconv; print(any(m == 'dask' or m.startswith('dask.') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=str(__import__("pathlib").Path(fastconv.__file__).parent.parent))
    assert result.stdout.strip() == "False"


# --- end to end on a real cluster ------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, memory_limit="1GiB")
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def test_distributed_signal_and_conv(client, rng):
    image = rng.standard_normal((200, 170)).astype(np.float32)
    kernel = rng.standard_normal((7, 6)).astype(np.float32)
    lazy = da.from_array(image, chunks=(45, 60))
    result = client.compute(fd.convolve2d(lazy, kernel, "same", "symm")).result()
    _close(result, scipy.signal.convolve2d(image, kernel, "same", "symm"), rtol=1e-4, atol=1e-4)
    x = rng.standard_normal((4, 3, 40, 36)).astype(np.float32)
    weight = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    result = client.compute(fd.conv2d(da.from_array(x, chunks=(2, 3, 15, 20)), weight, None, 2, 1,
                                      padding_mode="reflect")).result()
    _close(result, fastconv.conv2d(x, weight, None, 2, 1, padding_mode="reflect"), rtol=1e-4,
           atol=1e-4)


def test_distributed_predict_one_thread_per_task(client, rng):
    model = nn.models.lenet5(rng=0)
    images = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    result = client.compute(fd.predict(model, da.from_array(images, chunks=16))).result()
    _close(result, model.forward(images), rtol=1e-5, atol=1e-5)
    # a task on a worker runs in the worker's thread pool, alongside others: one Numba thread
    assert client.submit(fd._threads_for_this_task, None, pure=False).result() == 1
