"""The direct backend's channel-blocked kernel on flattened (phase) planes
(fastconv.backends._direct_blocked): forward at every stride/dilation, the input gradient through
the forward kernels, the weight gradient's reductions — on the geometries where its bookkeeping can
go wrong: output channels not a multiple of the block, groups (one output channel each too),
phase planes with unused phases,
row chunks, batch slices under the workspace cap, reads that end exactly at a plane's last value."""
from dataclasses import replace

import numpy as np
import pytest

import fastconv
from fastconv import _config, _fast_paths
from fastconv.backends import _direct_blocked as blocked
from fastconv.backends import direct
from fastconv._params import make_conv_params
from fastconv.gradients import _transpose_params
from tests import naive
from tests.tolerances import assert_gradient_matches, assert_matches

CASES = [
    ((2, 3, 9, 11), (5, 3, 3, 3), {"padding": 1}),  # 5 = one block + one channel
    ((3, 1, 12, 12), (6, 1, 5, 5), {"padding": 2}),  # one input channel (LeNet's first layer)
    ((2, 6, 14, 14), (16, 6, 5, 5), {}),  # LeNet's second layer, no padding: planes read in place
    ((1, 6, 10, 9), (10, 3, 3, 2), {"groups": 2, "padding": (1, 0)}),
    ((1, 8, 7, 7), (8, 2, 3, 3), {"groups": 4, "padding": 1}),  # 2 output channels per group
    ((2, 4, 13, 12), (6, 4, 3, 3), {"stride": 2, "padding": 1}),  # ResNet-style downsampling
    ((1, 3, 23, 25), (4, 3, 11, 11), {"stride": 4, "padding": 2}),  # AlexNet-style
    ((1, 3, 15, 16), (4, 3, 7, 7), {"stride": 2, "padding": 3}),
    ((2, 4, 9, 10), (4, 4, 1, 1), {"stride": 2}),  # only phase (0, 0) is read
    ((1, 2, 14, 13), (4, 2, 3, 2), {"dilation": (3, 2), "padding": 2}),
    ((1, 2, 16, 15), (5, 2, 3, 3), {"dilation": 2, "stride": 3, "padding": 1}),  # phases repeat
    ((1, 2, 12, 11), (4, 2, 2, 3), {"dilation": (1, 2), "stride": (2, 3)}),
    ((1, 2, 5, 5), (4, 2, 5, 5), {}),  # one output: the last tap reads the plane's last value
    ((1, 2, 70, 90), (4, 2, 3, 3), {"padding": 1}),  # several row chunks per plane
    # register tiles (real values): 8 channels x 128 bytes of positions
    ((2, 3, 8, 10), (17, 3, 3, 3), {"padding": 1}),  # two channel blocks + one; a masked last tile
    ((1, 3, 8, 8), (9, 3, 1, 1), {}),  # 64 positions: whole tiles only, no masked tile
    ((3, 2, 4, 4), (8, 2, 3, 3), {}),  # a plane shorter than one tile: only the masked tile
    ((2, 16, 30, 31), (24, 16, 3, 3), {"padding": 1}),  # three blocks, row chunks
    # one output channel per group: the one-accumulator kernels
    ((2, 5, 9, 10), (5, 1, 3, 3), {"groups": 5, "padding": 1}),  # depthwise
    ((2, 4, 11, 9), (4, 1, 5, 5), {"groups": 4, "padding": 2, "stride": 2}),
    ((1, 6, 10, 10), (3, 2, 3, 3), {"groups": 3, "dilation": 2, "padding": 2}),  # 2 in, 1 out
    ((1, 1, 40, 37), (1, 1, 7, 7), {"padding": 3}),  # a single image
    ((1, 1, 40, 37), (1, 1, 7, 6), {"padding": (0, 2)}),  # rows unpadded, columns padded
    # stacks of planes; both padding paths are forced below, whatever the machine's thread count
    ((4, 16, 12, 11), (16, 1, 3, 3), {"groups": 16, "padding": (2, 1)}),  # padding past the reach
    ((1, 64, 12, 1000), (64, 1, 5, 3), {"groups": 64, "padding": 1}),  # wide: row chunks
    ((4, 32, 10, 9), (16, 2, 3, 3), {"groups": 16, "padding": (0, 1)}),  # 2 channels a group
]


def _id(case):
    shape, wshape, kwargs = case
    return f"x{shape}-w{wshape}-" + ",".join(f"{k}={v}" for k, v in kwargs.items())


def _params(x, w, kwargs):
    return make_conv_params(x, w, None, kwargs.get("stride", 1), kwargs.get("padding", 0),
                            kwargs.get("dilation", 1), kwargs.get("groups", 1), "zeros")[0]


def test_cases_take_the_blocked_kernel(rng):
    """Otherwise this file would test the general kernel."""
    for shape, wshape, kwargs in CASES:
        params = _params(np.zeros(shape), np.zeros(wshape), kwargs)
        assert blocked.applies(params) and not direct.single_channel_stride1_applies(params)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_forward_matches_naive(case, dtype, rng):
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    got = fastconv.conv2d(x, w, b, algorithm="direct", **kwargs)
    exact = naive.conv2d(x, w, b, **kwargs)
    magnitude = naive.conv2d(np.abs(x), np.abs(w), np.abs(b), **kwargs)
    assert got.shape == exact.shape and got.dtype == dtype and got.flags.c_contiguous
    assert_matches(got, exact, magnitude, dtype, "direct")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_backward_matches_naive(case, dtype, rng):
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    grad = rng.standard_normal(naive.conv2d(x, w, **kwargs).shape).astype(dtype)
    got = fastconv.conv2d_backward(grad, x, w, algorithm="direct", **kwargs)
    exact = naive.conv2d_backward(grad, x, w, **kwargs)
    magnitude = naive.conv2d_backward(np.abs(grad), np.abs(x), np.abs(w), **kwargs)
    for name, value, want, scale in zip(("input", "weight", "bias"), got, exact, magnitude):
        assert_gradient_matches(value, want, scale, dtype, "direct", what=f"grad_{name}")


# --- paths chosen from the thread count, forced on any machine --------------------------------
ONE_CHANNEL_STRIDE_1 = [case for case in CASES
                        if case[1][0] == case[2].get("groups", 1)
                        and case[2].get("stride", 1) == 1 and case[2].get("dilation", 1) == 1]


@pytest.fixture(params=["per-task padding", "shared padded copy"])
def padding_path(request, monkeypatch):
    """Force either padding strategy of the one-output-channel kernels: the real decision takes
    the geometry into account and compares the stack of planes with the thread count, which this
    replaces by 0 (always enough planes) or by a huge count (never enough)."""
    decide = blocked.pads_per_task
    threads = 0 if request.param == "per-task padding" else 1 << 30
    monkeypatch.setattr(blocked, "pads_per_task",
                        lambda batch, groups, stride, dilation, pads, _: decide(
                            batch, groups, stride, dilation, pads, threads))
    calls = []
    kernel = blocked._one_channel_padding_kernel

    def counted(*args):
        calls.append(1)
        return kernel(*args)

    monkeypatch.setattr(blocked, "_one_channel_padding_kernel", counted)
    # small problems otherwise run as one serial task that always pads its own buffer
    monkeypatch.setattr(_config, "SERIAL_MACS", 0)
    # plans memoised by earlier calls of the same shapes were made with the real decisions
    _fast_paths.forget()
    request.addfinalizer(_fast_paths.forget)
    return request.param, calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ONE_CHANNEL_STRIDE_1, ids=_id)
def test_both_padding_paths_of_the_one_channel_kernels(case, dtype, padding_path, rng):
    path, calls = padding_path
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    got = fastconv.conv2d(x, w, b, algorithm="direct", **kwargs)
    assert bool(calls) == (path == "per-task padding")
    assert_matches(got, naive.conv2d(x, w, b, **kwargs),
                   naive.conv2d(np.abs(x), np.abs(w), np.abs(b), **kwargs), dtype, "direct")


def test_padding_decision_follows_the_stack_of_planes():
    geometry = ((1, 1), (1, 1), (1, 1, 1, 1))
    assert blocked.pads_per_task(8, 16, *geometry, threads=2)  # 128 planes for 2 threads
    assert not blocked.pads_per_task(1, 1, *geometry, threads=2)  # one large image
    assert not blocked.pads_per_task(8, 16, (2, 2), (1, 1), (1, 1, 1, 1), threads=2)  # strided
    assert not blocked.pads_per_task(8, 16, (1, 1), (1, 1), (-1, 0, 0, 0), threads=2)  # cropping


@pytest.mark.parametrize("threads", [1, 64])
@pytest.mark.parametrize("case", [CASES[i] for i in (0, 5, 13, 17, 18, 21)], ids=_id)
def test_task_splits_for_other_thread_counts(case, threads, monkeypatch, rng):
    """Rows per task and the weight gradient's sample chunks are sized from the thread count: run
    them as a 1-thread and a 64-thread machine would split them (the kernels still run on this
    machine's threads)."""
    monkeypatch.setattr(blocked, "get_num_threads", lambda: threads)
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    got = fastconv.conv2d(x, w, algorithm="direct", **kwargs)
    np.testing.assert_allclose(got, naive.conv2d(x, w, **kwargs), rtol=1e-10, atol=1e-10)
    grad = rng.standard_normal(got.shape)
    for value, want in zip(fastconv.conv2d_backward(grad, x, w, algorithm="direct", **kwargs),
                           naive.conv2d_backward(grad, x, w, **kwargs)):
        np.testing.assert_allclose(value, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("stride", [1, 2])
def test_workspace_cap_slices_the_batch(stride, rng):
    x = rng.standard_normal((5, 16, 20, 20))
    w = rng.standard_normal((8, 16, 3, 3))
    grad = rng.standard_normal(naive.conv2d(x, w, padding=1, stride=stride).shape)
    previous = fastconv.get_workspace_limit()
    try:
        fastconv.set_workspace_limit(64 * 1024)  # below one sample's planes
        got = fastconv.conv2d(x, w, padding=1, stride=stride, algorithm="direct")
        _, grad_w, _ = fastconv.conv2d_backward(grad, x, w, padding=1, stride=stride,
                                                algorithm="direct")
    finally:
        fastconv.set_workspace_limit(previous)
    np.testing.assert_allclose(got, naive.conv2d(x, w, padding=1, stride=stride), rtol=1e-10,
                               atol=1e-10)
    want_w = naive.conv2d_backward(grad, x, w, padding=1, stride=stride)[1]
    np.testing.assert_allclose(grad_w, want_w, rtol=1e-10, atol=1e-10)


def test_padding_is_materialised_zeros_so_inf_weights_give_nan(rng):
    """The definition multiplies every padded zero by its weight: 0 * inf = NaN, as PyTorch."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((1, 2, 6, 6))
    w = rng.standard_normal((4, 2, 3, 3))
    w[1, 0, 0, 0] = np.inf
    got = fastconv.conv2d(x, w, padding=1, algorithm="direct")
    want = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding=1).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[0, 1, 0, :]).all() and not np.isnan(got[0, 0]).any()


def test_inputs_are_not_modified(rng):
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    grad = rng.standard_normal((2, 6, 5, 5)).astype(np.float32)
    copies = [a.copy() for a in (x, w, grad)]
    fastconv.conv2d(x, w, stride=2, padding=1, algorithm="direct")
    fastconv.conv2d_backward(grad, x, w, stride=2, padding=1, algorithm="direct")
    for original, copy in zip((x, w, grad), copies):
        np.testing.assert_array_equal(original, copy)


@pytest.mark.parametrize("kwargs", [
    {"stride": 2, "padding": 1, "output_padding": 1},
    {"stride": (3, 2), "output_padding": (2, 1), "dilation": (1, 2)},
    {"stride": 1, "dilation": (1, 2), "output_padding": (0, 1), "groups": 2},  # negative padding
])
def test_conv_transpose2d_through_the_phase_correlations(kwargs, rng):
    """conv_transpose2d is the input gradient: strided ones run one correlation per input phase,
    and output_padding adds rows and columns that no output-gradient value reaches."""
    x = rng.standard_normal((2, 4, 5, 6))
    w = rng.standard_normal((4, 6 // kwargs.get("groups", 1), 3, 3))
    params, xc, wc, _, _ = _transpose_params(
        x, w, None, kwargs["stride"], kwargs.get("padding", 0), kwargs["output_padding"],
        kwargs.get("groups", 1), kwargs.get("dilation", 1))
    assert direct.transposed_params(params) is None  # not the stride-1 route
    got = direct.backward_input(xc, wc, params)
    want = naive.conv_transpose2d(x, w, **kwargs)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_integer_problems_outside_the_signal_api_are_refused_clearly():
    """No public function produces them (conv2d works in floating point; the signal API's integers
    have one channel at stride 1), but the backend must say so rather than fail obscurely."""
    x = np.ones((1, 2, 6, 6), np.int32)
    w = np.ones((2, 2, 3, 3), np.int32)
    params = replace(make_conv_params(x, w, None, 1, 0, 1, 1, "zeros")[0], dtype=np.dtype(np.int32))
    with pytest.raises(ValueError, match="floating-point"):
        direct.forward(x, w, None, params)


@pytest.mark.parametrize("vector_bytes", [16, 32, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_shape, groups, block", [
    ((128, 40, 3, 3), 1, 64),  # 360 taps: two packing chunks, a tap tail past the last square
    ((16, 6, 5, 5), 1, 16),  # LeNet's second layer on one AVX-512 vector of float32
    ((50, 3, 7, 7), 1, 64),  # a partial block: zeros past channel 50, a channel tail of 2
    ((33, 5, 3, 3), 3, 8),  # groups, 11 channels a group: a block and a tail of 3
    ((12, 7, 1, 1), 1, 24),  # fewer taps than lanes: the edges only
])
def test_pack_weight_transposes_in_squares_on_every_vector_width(vector_bytes, dtype, weight_shape,
                                                                 groups, block):
    from fastconv import _cpu

    w = np.random.default_rng(5).standard_normal(weight_shape).astype(dtype)
    out_channels, per_group_in = weight_shape[:2]
    per_group_out = out_channels // groups
    expected = np.zeros((groups, -(-per_group_out // block), per_group_in, *weight_shape[2:], block), dtype)
    for k in range(out_channels):
        g, j = divmod(k, per_group_out)
        expected[g, j // block, ..., j % block] = w[k]
    _cpu.set_tile_shape(f"4x2x{vector_bytes}")
    try:
        assert blocked.pack_transpose_shape(block, w.dtype.itemsize).vector_bytes <= vector_bytes
        np.testing.assert_array_equal(blocked.pack_weight(w, groups, block), expected)
    finally:
        _cpu.set_tile_shape(None)


@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 2, 3, 0), (4, 4, 4, 4), (-1, 2, 0, -2), (2, -3, -1, 1)])
@pytest.mark.parametrize("kernel", ["_padded_planes_serial", "_padded_planes_kernel"])
def test_unit_stride_planes_are_the_padded_or_cropped_input(pads, kernel):
    """The stride-1 planes come from their own small kernel (both its serial and parallel form):
    zero padding, and cropping where a pad is negative (the signal API's 'valid')."""
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 9)).astype(np.float32)
    top, bottom, left, right = pads
    expected = np.pad(x, ((0, 0), (0, 0), (max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0))))
    expected = expected[:, :, max(-top, 0):expected.shape[2] - max(-bottom, 0),
                        max(-left, 0):expected.shape[3] - max(-right, 0)]
    plane_h, plane_w = expected.shape[2:]
    out = np.full((2, 3, plane_h * plane_w), np.nan, np.float32)
    getattr(blocked, kernel)(x, out, top, left, plane_h, plane_w)
    np.testing.assert_array_equal(out.reshape(expected.shape), expected)
    if min(pads) >= 0:
        np.testing.assert_array_equal(blocked.pad_flat(x, *pads).reshape(expected.shape), expected)
