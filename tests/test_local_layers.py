"""Card-1 layers LocallyConnected2D, TiledConv2D, WeightedAvgPool2D: gradchecks, protocol, training."""
import numpy as np
import pytest

from fastconv.nn.local_layers import LocallyConnected2D, TiledConv2D, WeightedAvgPool2D
from tests import naive
from tests.nn_gradcheck import numerical_gradient


def _layers(rng):
    return {
        "local": LocallyConnected2D(2, 3, 3, input_size=(6, 5), stride=(1, 2), padding=1,
                                    dtype=np.float64, rng=rng),
        "tiled": TiledConv2D(2, 3, (2, 3), tiles=(2, 2), padding=(1, 0), dtype=np.float64, rng=rng),
        "pool": WeightedAvgPool2D(3, stride=2, padding=1, sigma=0.8, count_include_pad=False),
    }


@pytest.mark.parametrize("kind", ["local", "tiled", "pool"])
def test_finite_difference_gradients(kind, rng):
    layer = _layers(rng)[kind]
    x = rng.standard_normal((2, 2, 6, 5))
    probe = rng.standard_normal(layer.forward(x).shape)

    def loss():
        return float(np.sum(layer.forward(x) * probe))

    layer.forward(x)
    grad_x = layer.backward(probe)
    np.testing.assert_allclose(grad_x, numerical_gradient(loss, x), rtol=1e-6, atol=1e-8)
    if layer.weights is not None:
        np.testing.assert_allclose(layer.grad_w, numerical_gradient(loss, layer.weights), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(layer.grad_b, numerical_gradient(loss, layer.bias), rtol=1e-6, atol=1e-8)


def test_forward_is_the_functional_op(rng):
    layer = TiledConv2D(3, 4, 3, tiles=(2, 3), stride=2, dtype=np.float64, rng=rng)
    x = rng.standard_normal((2, 3, 11, 11))
    np.testing.assert_allclose(layer.forward(x), naive.tiled_conv2d(x, layer.weights, layer.bias, stride=2),
                               rtol=1e-12, atol=1e-12)
    assert layer.weights.shape == (2, 3, 4, 3, 3, 3) and layer.bias.shape == (2, 3, 4)


def test_protocol_accumulate_zero_grad_update(rng):
    layer = LocallyConnected2D(1, 2, 2, input_size=4, dtype=np.float64, rng=rng)
    x = rng.standard_normal((1, 1, 4, 4))
    grad_out = rng.standard_normal(layer.forward(x).shape)
    layer.backward(grad_out)
    once_w, once_b = layer.grad_w.copy(), layer.grad_b.copy()
    layer.forward(x)
    layer.backward(grad_out)
    np.testing.assert_allclose(layer.grad_w, 2 * once_w)  # gradients accumulate
    np.testing.assert_allclose(layer.grad_b, 2 * once_b)
    weights, bias = layer.weights.copy(), layer.bias.copy()
    layer.update(0.1)
    np.testing.assert_allclose(layer.weights, weights - 0.1 * layer.grad_w)
    np.testing.assert_allclose(layer.bias, bias - 0.1 * layer.grad_b)
    layer.zero_grad()
    assert not layer.grad_w.any() and not layer.grad_b.any()


def test_pool_layer_has_no_parameters(rng):
    pool = WeightedAvgPool2D(2)
    assert pool.weights is None and pool.bias is None and pool.grad_w is None and pool.grad_b is None
    x = rng.standard_normal((1, 2, 4, 4))
    out = pool.forward(x)
    pool.zero_grad()
    pool.update(1.0)
    np.testing.assert_array_equal(pool.forward(x), out)


def test_kaiming_uniform_init_like_pytorch():
    layer = TiledConv2D(16, 8, 3, tiles=2, rng=0)
    bound = 1 / np.sqrt(16 * 9)
    assert layer.weights.dtype == np.float32 and layer.bias.dtype == np.float32
    assert np.abs(layer.weights).max() <= bound and np.abs(layer.bias).max() <= bound
    assert np.abs(layer.weights).max() > 0.9 * bound  # uses the whole range, not a narrower one
    no_bias = LocallyConnected2D(2, 2, 3, input_size=5, bias=False, rng=0)
    assert no_bias.bias is None and no_bias.grad_b is None and no_bias.weights.shape == (3, 3, 2, 2, 3, 3)


def test_backward_before_forward_raises():
    with pytest.raises(RuntimeError, match="before forward"):
        TiledConv2D(1, 1, 1).backward(np.zeros((1, 1, 1, 1)))


def test_tiny_model_learns(rng):
    """local -> weighted pool -> tiled (1x1 tiles == conv): SGD fits a teacher of the same shape."""
    def model(seed):
        return [LocallyConnected2D(1, 3, 3, input_size=8, padding=1, dtype=np.float64, rng=seed),
                WeightedAvgPool2D(2, sigma=1.0),
                TiledConv2D(3, 1, 2, tiles=1, dtype=np.float64, rng=seed + 1)]

    def run(layers, x):
        for layer in layers:
            x = layer.forward(x)
        return x

    teacher, student = model(100), model(7)
    x = rng.standard_normal((16, 1, 8, 8))
    target = run(teacher, x)
    losses = []
    for _ in range(100):
        out = run(student, x)
        losses.append(float(np.mean((out - target) ** 2)))
        grad = 2 * (out - target) / out.size
        for layer in reversed(student):
            grad = layer.backward(grad)
        for layer in student:
            layer.update(0.8)
            layer.zero_grad()
    assert losses[-1] < 0.3 * losses[0], losses[::10]
    assert all(later <= earlier * 1.001 for earlier, later in zip(losses, losses[1:])), losses[::10]
