"""Finite-difference gradient checks for every fastconv.nn layer and the loss (float64)."""
import numpy as np
import pytest

from fastconv import nn
from nn_gradcheck import check_layer_gradients, numerical_gradient

def distinct_values(shape, rng):
    """Values at least 0.05 apart, so no max-pool tie or ReLU kink sits within a finite-difference step."""
    values = (rng.permutation(int(np.prod(shape))) - np.prod(shape) / 2 + 0.5) * 0.05
    return values.reshape(shape)


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=2, out_channels=3, kernel_size=3),
    dict(in_channels=2, out_channels=4, kernel_size=3, stride=2, padding=1),
    dict(in_channels=4, out_channels=2, kernel_size=(2, 3), padding=1, dilation=2, groups=2, bias=False),
])
def test_conv2d_gradients(kwargs, rng):
    layer = nn.Conv2D(**kwargs, dtype=np.float64, rng=rng)
    checked = check_layer_gradients(layer, rng.standard_normal((2, kwargs["in_channels"], 6, 7)), rng)
    assert "weights" in checked and ("bias" in checked) == kwargs.get("bias", True)


def test_conv2d_without_input_grad_returns_none(rng):
    layer = nn.Conv2D(1, 2, 3, dtype=np.float64, rng=rng)
    layer.input_grad = False
    out = layer.forward(rng.standard_normal((2, 1, 5, 5)))
    assert layer.backward(np.ones_like(out)) is None
    assert np.all(layer.grad_b == out.shape[0] * out.shape[2] * out.shape[3])


def test_linear_gradients(rng):
    layer = nn.Linear(5, 3, dtype=np.float64, rng=rng)
    assert check_layer_gradients(layer, rng.standard_normal((4, 5)), rng) == ["bias", "input", "weights"]


@pytest.mark.parametrize("layer_type", [nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Flatten])
def test_activation_gradients(layer_type, rng):
    x = distinct_values((2, 3, 2, 2), rng)
    assert check_layer_gradients(layer_type(), x, rng) == ["input"]


def test_sigmoid_is_stable_and_keeps_float32():
    out = nn.Sigmoid().forward(np.array([-1000.0, 0.0, 1000.0], dtype=np.float32))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_and_sigmoid_match_torch_on_special_values(dtype):
    """The compiled element-wise kernels: NaN passes through ReLU, ReLU's gradient is 0 at 0 and
    passes through at NaN (PyTorch's threshold rule), infinities saturate the sigmoid; large arrays
    (many parallel chunks) agree too."""
    torch = pytest.importorskip("torch")
    special = np.array([np.nan, -np.inf, -1e3, -1.0, -0.0, 0.0, 1e-30, 2.5, 1e3, np.inf], dtype)
    x = np.concatenate([special, np.random.default_rng(0).standard_normal(100_003).astype(dtype)])
    grad = np.linspace(-2, 2, x.size).astype(dtype)
    for layer, function in ((nn.ReLU(), torch.relu), (nn.Sigmoid(), torch.sigmoid)):
        x_t = torch.tensor(x, requires_grad=True)
        out_t = function(x_t)
        out_t.backward(torch.tensor(grad))
        out = layer.forward(x)
        assert out.dtype == dtype
        np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=4 * np.finfo(dtype).eps, atol=0)
        # sigmoid's 1 - out cancels: a rounding of out near 1 is amplified in the gradient
        np.testing.assert_allclose(layer.backward(grad), x_t.grad.numpy(),
                                   rtol=64 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients(training, rng):
    layer = nn.BatchNorm2D(3, dtype=np.float64)
    layer.weights[...] = rng.uniform(0.5, 1.5, 3)
    layer.bias[...] = rng.standard_normal(3)
    layer.running_mean[...] = rng.standard_normal(3)
    layer.running_var[...] = rng.uniform(0.5, 2, 3)
    layer.training = training
    checked = check_layer_gradients(layer, rng.standard_normal((3, 3, 2, 3)), rng, rtol=1e-5)
    assert checked == ["bias", "input", "weights"]


def test_dropout_gradients_with_fixed_mask(rng):
    layer = nn.Dropout(0.4)

    def same_mask():
        layer.rng = np.random.default_rng(7)

    check_layer_gradients(layer, rng.standard_normal((3, 10)), rng, before_forward=same_mask)
    assert 0 < np.count_nonzero(layer._mask == 0) < layer._mask.size


@pytest.mark.parametrize("layer_factory", [
    lambda: nn.MaxPooling(2, 2),
    lambda: nn.MaxPool2D(3, stride=2, padding=1, dilation=1, ceil_mode=True),
    lambda: nn.AvgPool2D(2),
    lambda: nn.AvgPool2D(3, stride=2, padding=1, count_include_pad=False),
    lambda: nn.LPPool2D(2, 2),
], ids=["maxpooling", "maxpool-pad-ceil", "avgpool", "avgpool-pad-exclude", "lppool"])
def test_pooling_gradients(layer_factory, rng):
    x = distinct_values((2, 2, 6, 6), rng)
    if isinstance(layer_factory(), nn.LPPool2D):
        x = np.abs(x) + 0.1  # the p-norm's gradient is smooth away from an all-zero window
    assert check_layer_gradients(layer_factory(), x, rng) == ["input"]


def test_softmax_cross_entropy_gradient(rng):
    logits = rng.standard_normal((5, 4)) * 3
    labels = rng.integers(0, 4, 5)
    loss = nn.SoftmaxCrossEntropy()
    loss.forward(logits, labels)
    analytic = loss.backward()
    numeric = numerical_gradient(lambda: loss.forward(logits, labels), logits)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_softmax_cross_entropy_matches_torch(rng):
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((6, 10)).astype(np.float32) * 20  # large: exercises the max shift
    labels = rng.integers(0, 10, 6)
    loss = nn.SoftmaxCrossEntropy()
    value = loss.forward(logits, labels)
    reference = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(reference, torch.tensor(labels))
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-5)
    np.testing.assert_allclose(loss.backward(), reference.grad.numpy(), rtol=1e-5, atol=1e-7)
