"""conv1d: torch.nn.functional.conv1d's semantics (values, shapes, dtypes, errors) on every backend.

PyTorch is the reference here (in float64): conv1d is a thin layer over conv2d, whose backends are
checked against the naive twins in test_conv2d.py.  Non-zero padding modes are compared with
``torch.nn.functional.pad`` followed by an unpadded conv1d, which is what ``nn.Conv1d`` does.
"""
import numpy as np
import pytest

import fastconv

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH_PAD_MODES = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}

# (input shape, weight shape, kwargs): awkward cases on purpose
CASES = [
    ((2, 3, 17), (4, 3, 3), {}),
    ((1, 1, 9), (1, 1, 1), {}),
    ((3, 2, 20), (5, 2, 4), {"stride": 3}),
    ((1, 2, 19), (2, 2, 2), {"stride": 5}),  # stride > kernel
    ((1, 2, 30), (3, 2, 3), {"dilation": 4, "padding": 2}),
    ((2, 4, 16), (6, 2, 3), {"groups": 2, "padding": 1}),
    ((1, 6, 25), (6, 1, 5), {"groups": 6, "padding": "same"}),  # depthwise
    ((1, 4, 25), (8, 1, 3), {"groups": 4, "stride": 2, "padding": (1,)}),
    ((1, 1, 40), (2, 1, 31), {}),  # long kernel
    ((1, 1, 12), (1, 1, 12), {}),  # kernel == input
    ((1, 2, 10), (2, 2, 4), {"padding": "same", "dilation": 3}),
    ((1, 2, 10), (2, 2, 4), {"padding": "valid"}),
    ((3, 2, 15), (2, 2, 3), {"padding": 2, "padding_mode": "reflect"}),
    ((1, 2, 11), (2, 2, 5), {"padding": 4, "padding_mode": "replicate", "stride": 2}),
    ((1, 2, 9), (2, 2, 3), {"padding": 3, "padding_mode": "circular"}),
]


def _torch_conv1d(x, w, b, kwargs):
    kwargs = dict(kwargs)
    mode = kwargs.pop("padding_mode", "zeros")
    xt, wt = torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64))
    bt = None if b is None else torch.from_numpy(b.astype(np.float64))
    if mode != "zeros":
        pad = kwargs.pop("padding")
        xt = F.pad(xt, (pad, pad), mode=TORCH_PAD_MODES[mode])
    return F.conv1d(xt, wt, bt, **kwargs).numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm", ["auto", "direct", "im2col", "fft"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case[0]}-{case[1]}-{case[2]}")
def test_matches_torch(case, algorithm, dtype):
    shape, wshape, kwargs = case
    rng = np.random.default_rng(len(shape) + sum(shape) + sum(wshape))
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    got = fastconv.conv1d(x, w, b, algorithm=algorithm, **kwargs)
    expected = _torch_conv1d(x, w, b, kwargs)
    assert got.shape == expected.shape and got.dtype == dtype and got.flags.c_contiguous
    scale = np.abs(x).max() * np.abs(w).sum(axis=(1, 2)).max() + np.abs(b).max()
    tol = (5e-6 if dtype == np.float32 else 1e-13) * scale * (20 if algorithm == "fft" else 1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol)


def test_unbatched_input_and_no_bias():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((3, 21)), rng.standard_normal((5, 3, 4))
    got = fastconv.conv1d(x, w, stride=2)
    expected = F.conv1d(torch.from_numpy(x), torch.from_numpy(w), stride=2).numpy()
    assert got.shape == expected.shape == (5, 9)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 16)), rng.standard_normal((4, 3, 3))
    copies = x.copy(), w.copy()
    fastconv.conv1d(x, w, padding=1, padding_mode="reflect")
    np.testing.assert_array_equal(x, copies[0])
    np.testing.assert_array_equal(w, copies[1])


@pytest.mark.parametrize("input_shape, weight_shape, kwargs, error, message", [
    ((2, 3, 4, 16), (4, 3, 3), {}, ValueError, r"input must be 3-D \(N, C, L\).*\(2, 3, 4, 16\)"),
    ((16,), (4, 1, 3), {}, ValueError, r"input must be 3-D.*\(16,\)"),
    ((2, 3, 16), (4, 3), {}, ValueError, r"weight must be 3-D \(K, C/groups, R\).*\(4, 3\)"),
    ((2, 3, 16), (4, 3, 3), {"stride": (1, 2)}, ValueError, r"stride must be an int or a 1-tuple"),
    ((2, 3, 16), (4, 3, 3), {"padding": (1, 1)}, ValueError, r"padding must be an int or a 1-tuple"),
    ((2, 3, 16), (4, 2, 3), {}, ValueError, r"channel"),
    ((2, 3, 4), (4, 3, 9), {}, ValueError, r"kernel|larger|size"),
    ((2, 3, 16), (4, 3, 3), {"stride": 0}, ValueError, r"stride"),
])
def test_bad_input_is_a_clear_error(input_shape, weight_shape, kwargs, error, message):
    with pytest.raises(error, match=message):
        fastconv.conv1d(np.ones(input_shape), np.ones(weight_shape), **kwargs)


def test_complex_input_is_refused():
    with pytest.raises(TypeError, match="complex"):
        fastconv.conv1d(np.ones((1, 1, 5), complex), np.ones((1, 1, 2)))
