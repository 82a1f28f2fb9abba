"""A batch of zero samples (the last split of a data set, a filter that kept nothing): every op
returns PyTorch's empty result of the right shape and dtype — and zero weight and bias gradients —
without running a kernel; what PyTorch refuses (zero channels, an empty plane, no output channels,
a kernel larger than the input) stays a ValueError."""
import numpy as np
import pytest

import fastconv
from fastconv import dispatch, nn

try:
    import torch
    F = torch.nn.functional
except ImportError:  # the reference is PyTorch; the tests that need it say so
    torch = F = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is the reference and not installed")


@pytest.fixture
def no_kernels(monkeypatch):
    """Every way into a backend or a pooling/local kernel raises: an empty batch must not get
    there."""

    def refuse(*args, **kwargs):
        raise AssertionError("a kernel was dispatched for a batch of zero samples")

    for name in ("choose_forward", "choose_backward", "choose_gradients"):
        monkeypatch.setattr(dispatch, name, refuse)
    from fastconv import local, pooling, weighted_pooling
    from fastconv.backends import separable

    monkeypatch.setattr(separable, "forward_factors", refuse)
    for module in (pooling, local, weighted_pooling):
        for name in dir(module):
            if name.endswith("_kernel"):
                monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(pooling._pool_tiles, "applies", refuse)


def _torch(array):
    return torch.from_numpy(np.ascontiguousarray(array))


def _same(ours, theirs):
    assert ours.shape == tuple(theirs.shape)
    assert ours.dtype == np.dtype(str(theirs.dtype).replace("torch.", ""))
    assert ours.flags.c_contiguous


CONV_CASES = [
    ((0, 1, 5, 5), (2, 1, 3, 3), {}),  # the example: (0, 2, 3, 3)
    ((0, 4, 7, 6), (6, 2, 3, 2), {"groups": 2, "stride": 2, "padding": 1, "dilation": (2, 1)}),
    ((0, 3, 5, 5), (2, 3, 3, 3), {"padding": "same"}),
]


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_forward_and_backward(case, dtype, no_kernels):
    x_shape, w_shape, kwargs = case
    x, w = np.zeros(x_shape, dtype), np.ones(w_shape, dtype)
    b = np.ones(w_shape[0], dtype)
    x_t = _torch(x).requires_grad_()
    w_t, b_t = _torch(w).requires_grad_(), _torch(b).requires_grad_()
    out_t = F.conv2d(x_t, w_t, b_t, **kwargs)
    out = fastconv.conv2d(x, w, b, **kwargs)
    _same(out, out_t)
    out_t.sum().backward()
    grads = fastconv.conv2d_backward(np.ones(out.shape, dtype), x, w, **kwargs)
    for ours, theirs in zip(grads, (x_t.grad, w_t.grad, b_t.grad)):
        _same(ours, theirs)
        np.testing.assert_array_equal(ours, theirs.numpy())  # zeros: sums over no samples
    only_bias = fastconv.conv2d_backward(np.ones(out.shape, dtype), x, w, needs=("bias",), **kwargs)
    assert only_bias[:2] == (None, None) and np.array_equal(only_bias[2], np.zeros(w_shape[0]))


@needs_torch
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv2d_padding_modes(mode, no_kernels):
    x, w = np.zeros((0, 1, 5, 5), np.float32), np.ones((2, 1, 3, 3), np.float32)
    padded = F.pad(_torch(x), (1, 1, 1, 1), mode=mode)
    _same(fastconv.conv2d(x, w, padding=1, padding_mode=mode), F.conv2d(padded, _torch(w)))


def test_sepconv2d(no_kernels):
    x = np.zeros((0, 3, 8, 8), np.float32)
    out = fastconv.sepconv2d(x, np.ones(3, np.float32), np.ones(5, np.float32), padding=(1, 2))
    assert out.shape == (0, 3, 8, 8) and out.dtype == np.float32


@needs_torch
def test_conv_transpose2d(no_kernels):
    x, w = np.zeros((0, 4, 3, 3), np.float32), np.ones((4, 3, 3, 3), np.float32)
    b = np.ones(6, np.float32)
    kwargs = {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}
    _same(fastconv.conv_transpose2d(x, w[:, :3], b, **kwargs),
          F.conv_transpose2d(_torch(x), _torch(w[:, :3]), _torch(b), **kwargs))


POOLS = [
    ("max_pool2d", {"kernel_size": 2}, lambda x, **kw: F.max_pool2d(x, **kw)),
    ("max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 1, "ceil_mode": True},
     lambda x, **kw: F.max_pool2d(x, **kw)),
    ("avg_pool2d", {"kernel_size": 2}, lambda x, **kw: F.avg_pool2d(x, **kw)),
    ("avg_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
     lambda x, **kw: F.avg_pool2d(x, **kw)),
]


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kwargs, reference", POOLS)
def test_pooling_forward_and_backward(name, kwargs, reference, dtype, no_kernels):
    x = np.zeros((0, 3, 7, 6), dtype)
    x_t = _torch(x).requires_grad_()
    out_t = reference(x_t, **kwargs)
    out = getattr(fastconv, name)(x, **kwargs)
    _same(out, out_t)
    out_t.sum().backward()
    _same(getattr(fastconv, name + "_backward")(np.ones(out.shape, dtype), x, **kwargs), x_t.grad)


@needs_torch
@pytest.mark.parametrize("norm_type", [2, 1.5, float("inf")])
def test_lp_pool2d(norm_type, no_kernels):
    x = np.zeros((0, 3, 6, 6), np.float32)
    x_t = _torch(x).requires_grad_()
    out_t = F.lp_pool2d(x_t, norm_type, 2)
    out = fastconv.lp_pool2d(x, norm_type, 2)
    _same(out, out_t)
    out_t.sum().backward()
    _same(fastconv.lp_pool2d_backward(np.ones(out.shape, np.float32), x, norm_type, 2), x_t.grad)


@needs_torch
def test_max_pool2d_indices(no_kernels):
    out, indices = fastconv.max_pool2d(np.zeros((0, 2, 4, 4)), 2, return_indices=True)
    out_t, indices_t = F.max_pool2d(torch.zeros(0, 2, 4, 4, dtype=torch.float64), 2,
                                    return_indices=True)
    _same(out, out_t)
    _same(indices, indices_t)


@pytest.mark.parametrize("op", ["local", "tiled"])
@pytest.mark.parametrize("bias_shape", [None, "shared", "untied"])
def test_local_and_tiled_conv2d(op, bias_shape, no_kernels):
    x = np.zeros((0, 2, 6, 6), np.float32)
    tiles = (4, 4) if op == "local" else (2, 2)
    w = np.ones(tiles + (3, 2, 3, 3), np.float32)
    bias = {None: None, "shared": np.ones(3, np.float32),
            "untied": np.ones(tiles + (3,), np.float32)}[bias_shape]
    forward = getattr(fastconv, f"{op}_conv2d")
    backward = getattr(fastconv, f"{op}_conv2d_backward")
    out = forward(x, w, bias)
    assert out.shape == (0, 3, 4, 4) and out.dtype == np.float32
    grad_x, grad_w, grad_b = backward(np.ones(out.shape, np.float32), x, w, bias)
    assert grad_x.shape == x.shape and grad_x.dtype == np.float32
    np.testing.assert_array_equal(grad_w, np.zeros_like(w))
    if bias is None:
        assert grad_b is None
    else:
        np.testing.assert_array_equal(grad_b, np.zeros_like(bias))


def test_weighted_avg_pool2d(no_kernels):
    x = np.zeros((0, 3, 7, 7), np.float32)
    out = fastconv.weighted_avg_pool2d(x, 3, 2, 1, sigma=1.0)
    assert out.shape == (0, 3, 4, 4) and out.dtype == np.float32
    grad = fastconv.weighted_avg_pool2d_backward(np.ones(out.shape, np.float32), x, 3, 2, 1)
    assert grad.shape == x.shape and grad.dtype == np.float32


def test_explain_says_nothing_runs():
    report = fastconv.explain((0, 1, 5, 5), (2, 1, 3, 3))
    assert report.choice == "none" and report.candidates == []
    assert "zero samples" in str(report)


# --- what PyTorch refuses stays refused ---------------------------------------------------------
REFUSED = [
    ("conv2d zero channels", lambda: fastconv.conv2d(np.zeros((2, 0, 5, 5)), np.ones((2, 0, 3, 3))),
     "input must not be empty"),
    ("conv2d zero output channels", lambda: fastconv.conv2d(np.zeros((0, 1, 5, 5)),
                                                            np.ones((0, 1, 3, 3))), "weight"),
    ("conv2d empty plane", lambda: fastconv.conv2d(np.zeros((2, 1, 0, 5)), np.ones((2, 1, 3, 3)),
                                                   padding=2), "input must not be empty"),
    ("conv2d unbatched zero channels", lambda: fastconv.conv2d(np.zeros((0, 5, 5)),
                                                               np.ones((2, 0, 3, 3))), "input"),
    ("conv2d kernel past the input", lambda: fastconv.conv2d(np.zeros((0, 1, 2, 2)),
                                                             np.ones((2, 1, 3, 3))), "larger than"),
    ("conv_transpose2d zero channels", lambda: fastconv.conv_transpose2d(np.zeros((1, 0, 3, 3)),
                                                                         np.ones((0, 1, 3, 3))),
     "input must not be empty"),
    ("max_pool2d zero channels", lambda: fastconv.max_pool2d(np.zeros((2, 0, 4, 4)), 2),
     "input must not be empty"),
    ("avg_pool2d empty plane", lambda: fastconv.avg_pool2d(np.zeros((2, 3, 0, 4)), 2),
     "input must not be empty"),
    ("max_pool2d output too small", lambda: fastconv.max_pool2d(np.zeros((0, 3, 1, 1)), 2),
     "too small"),
    ("local_conv2d zero channels",
     lambda: fastconv.local_conv2d(np.zeros((1, 0, 6, 6)), np.ones((4, 4, 3, 0, 3, 3))), "input"),
    ("weighted_avg_pool2d empty plane",
     lambda: fastconv.weighted_avg_pool2d(np.zeros((1, 2, 0, 6)), 2), "input"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in REFUSED],
                         ids=[case[0] for case in REFUSED])
def test_what_pytorch_refuses_stays_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@needs_torch
def test_pytorch_refuses_the_same_problems():
    """The reference behaviour the list above follows (PyTorch 2.x)."""
    z = torch.zeros
    for call in (lambda: F.conv2d(z(0, 1, 5, 5), z(0, 1, 3, 3)),
                 lambda: F.conv2d(z(2, 1, 0, 5), z(2, 1, 3, 3), padding=2),
                 lambda: F.conv2d(z(0, 1, 2, 2), z(2, 1, 3, 3)),
                 lambda: F.max_pool2d(z(2, 0, 4, 4), 2),
                 lambda: F.avg_pool2d(z(2, 3, 0, 4), 2),
                 lambda: F.max_pool2d(z(0, 3, 1, 1), 2)):
        with pytest.raises(RuntimeError):
            call()


# --- fastconv.nn ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lenet_trains_on_an_empty_batch_like_pytorch(dtype):
    """Forward, loss, backward and an optimiser step on zero samples: an empty logits array, a NaN
    loss (PyTorch's mean over nothing), zero gradients everywhere."""
    model = nn.lenet5(dtype=dtype, rng=0)
    before = {key: value.copy() for key, value in model.state_dict().items()}
    criterion = nn.SoftmaxCrossEntropy()
    logits = model.forward(np.zeros((0, 1, 28, 28), dtype))
    assert logits.shape == (0, 10) and logits.dtype == dtype
    loss = criterion.forward(logits, np.zeros(0, np.int64))
    assert np.isnan(loss)
    if torch is not None:
        assert np.isnan(F.cross_entropy(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long)).item())
    grad = criterion.backward()
    assert grad.shape == (0, 10) and grad.dtype == dtype
    model.backward(grad)
    for owner, value_name, grad_name in model.parameters():
        np.testing.assert_array_equal(getattr(owner, grad_name), 0)
    nn.SGD(model, lr=0.1).step()  # a zero gradient moves nothing
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


LAYERS = {
    "Conv2D": lambda: nn.Conv2D(2, 3, 3, padding=1, rng=0),
    "Linear": lambda: nn.Linear(2 * 6 * 6, 3, rng=0),
    "BatchNorm2D": lambda: nn.BatchNorm2D(2),
    "LocallyConnected2D": lambda: nn.LocallyConnected2D(2, 3, 3, input_size=6, padding=1, rng=0),
    "TiledConv2D": lambda: nn.TiledConv2D(2, 3, 3, tiles=2, padding=1, rng=0),
    "ReLU": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh, "Flatten": nn.Flatten,
    "MaxPool2D": lambda: nn.MaxPool2D(2), "AvgPool2D": lambda: nn.AvgPool2D(2),
    "LPPool2D": lambda: nn.LPPool2D(2, 2), "WeightedAvgPool2D": lambda: nn.WeightedAvgPool2D(2),
    "Dropout": lambda: nn.Dropout(0.5, rng=0),
}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layer_name", LAYERS)
def test_every_layer_forward_and_backward(layer_name, training):
    layer = LAYERS[layer_name]()
    if hasattr(layer, "training"):
        layer.training = training
    x = np.zeros((0, 2, 6, 6), np.float32)
    if layer_name == "Linear":
        x = x.reshape(0, 72)
    out = layer.forward(x)
    assert out.shape[0] == 0 and out.dtype == np.float32
    grad_in = layer.backward(np.ones(out.shape, np.float32))
    assert grad_in.shape == x.shape and grad_in.dtype == np.float32
    for grad_name in ("grad_w", "grad_b"):
        grad = getattr(layer, grad_name, None)
        if grad is not None:
            np.testing.assert_array_equal(grad, 0)


@needs_torch
def test_batchnorm_keeps_its_running_statistics_like_pytorch():
    ours = nn.BatchNorm2D(3, dtype=np.float64)
    ours.running_mean[...] = 1.5
    theirs = torch.nn.BatchNorm2d(3, dtype=torch.float64)
    with torch.no_grad():
        theirs.running_mean.fill_(1.5)
    ours.forward(np.zeros((0, 3, 4, 4)))
    theirs(torch.zeros(0, 3, 4, 4, dtype=torch.float64))
    np.testing.assert_array_equal(ours.running_mean, theirs.running_mean.numpy())
    np.testing.assert_array_equal(ours.running_var, theirs.running_var.numpy())
