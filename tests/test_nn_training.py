"""fastconv.nn as a training framework: overfitting, user layers, optimisers, dtypes, checkpoints."""
import numpy as np
import pytest

from fastconv import nn


class Square:  # deliberately not derived from nn.Layer: only the protocol
    """A user's layer written only to the protocol: y = x * x * scale, with a learnable scale."""

    def __init__(self, size):
        self.weights = np.full(size, 0.5)
        self.grad_w = np.zeros(size)
        self.bias = None

    def forward(self, x):
        self.x = x
        return x * x * self.weights

    def backward(self, grad_out):
        self.grad_w[...] = (grad_out * self.x * self.x).sum(axis=0)
        return grad_out * 2 * self.x * self.weights

    def zero_grad(self):
        self.grad_w[...] = 0

    def update(self, lr):
        self.weights -= lr * self.grad_w


def train_steps(model, optimizer, x, y, steps):
    criterion = nn.SoftmaxCrossEntropy()
    losses = []
    for _ in range(steps):
        losses.append(criterion.forward(model.forward(x), y))
        model.backward(criterion.backward())
        if optimizer is None:
            model.step(0.5)
        else:
            optimizer.step()
    return losses, model.forward(x).argmax(axis=1)


def test_user_layer_trains_inside_module(rng):
    x = rng.standard_normal((32, 6))
    y = rng.integers(0, 3, 32)
    user_layer = Square(8)
    model = nn.Module([nn.Linear(6, 8, dtype=np.float64, rng=1), user_layer, nn.Tanh(),
                       nn.Linear(8, 3, dtype=np.float64, rng=2)])
    before = user_layer.weights.copy()
    losses, predicted = train_steps(model, None, x, y, 150)
    assert losses[-1] < 0.5 * losses[0]
    assert not np.allclose(user_layer.weights, before)  # Module.step reached the user's layer
    before = user_layer.weights.copy()
    nn.SGD(model, lr=0.1).step()  # and so do the optimisers, through the protocol names
    assert not np.array_equal(user_layer.weights, before)


def test_mlp_overfits_tiny_batch_with_adam(rng):
    x = rng.standard_normal((16, 20)).astype(np.float32)
    y = np.arange(16) % 4
    model = nn.Sequential(nn.Linear(20, 32, rng=0), nn.ReLU(), nn.Dropout(0.1, rng=0), nn.Linear(32, 4, rng=1))
    losses, _ = train_steps(model, nn.Adam(model, lr=0.01), x, y, 200)
    model.eval()
    assert losses[-1] < 0.05
    assert np.array_equal(model.forward(x).argmax(axis=1), y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_cnn_overfits_tiny_batch(dtype, rng):
    x = rng.standard_normal((8, 1, 12, 12)).astype(dtype)
    y = np.arange(8) % 4
    model = nn.Sequential(
        nn.Conv2D(1, 4, 3, padding=1, dtype=dtype, rng=0), nn.BatchNorm2D(4, dtype=dtype), nn.ReLU(),
        nn.MaxPooling(2, 2), nn.Conv2D(4, 8, 3, dtype=dtype, rng=1), nn.Sigmoid(), nn.AvgPool2D(2),
        nn.Flatten(), nn.Linear(32, 4, dtype=dtype, rng=2),
    )
    losses, predicted = train_steps(model, nn.SGD(model, lr=0.1, momentum=0.9), x, y, 60)
    assert losses[-1] < 0.05 * losses[0]
    assert np.array_equal(predicted, y)
    for owner, value_name, grad_name in model.parameters():
        assert getattr(owner, value_name).dtype == dtype and getattr(owner, grad_name).dtype == dtype
    assert model.forward(x).dtype == dtype


def test_lenet5_shapes_and_first_layer_skips_input_grad(rng):
    model = nn.lenet5("sigmoid", "avg", rng=0)
    x = rng.random((3, 1, 28, 28), dtype=np.float32)
    logits = model.forward(x)
    assert logits.shape == (3, 10) and logits.dtype == np.float32
    assert model.backward(np.ones_like(logits)) is None
    assert np.any(model.layers[0].grad_w != 0)


def test_lenet5_parameter_count_and_init_bounds():
    model = nn.lenet5(rng=0)
    count = sum(getattr(owner, name).size for owner, name, _ in model.parameters())
    assert count == 61706  # torch's LeNet-5 with padding 2 in conv1: 156+2416+48120+10164+850
    first = model.layers[0]
    assert np.abs(first.weights).max() <= 1 / 5 and np.abs(first.weights).max() > 0.15  # 1/sqrt(25)


def torch_parameters(torch, arrays):
    return [torch.nn.Parameter(torch.tensor(a.copy())) for a in arrays]


@pytest.mark.parametrize("name, ours, theirs", [
    ("sgd", lambda m: nn.SGD(m, lr=0.1, momentum=0.9, weight_decay=0.01),
     lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("adam", lambda m: nn.Adam(m, lr=0.01, weight_decay=0.01),
     lambda t, p: t.optim.Adam(p, lr=0.01, weight_decay=0.01)),
])
def test_optimisers_match_torch(name, ours, theirs, rng):
    torch = pytest.importorskip("torch")
    layer = nn.Linear(4, 3, dtype=np.float64, rng=0)
    params = torch_parameters(torch, [layer.weights, layer.bias])
    optimizer, reference = ours(layer), theirs(torch, params)
    for _ in range(4):
        grads = [rng.standard_normal(layer.weights.shape), rng.standard_normal(layer.bias.shape)]
        layer.grad_w[...], layer.grad_b[...] = grads
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        optimizer.step()
        reference.step()
    np.testing.assert_allclose(layer.weights, params[0].detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.bias, params[1].detach().numpy(), rtol=1e-12, atol=1e-14)


def test_batchnorm_matches_torch_in_train_and_eval(rng):
    torch = pytest.importorskip("torch")
    ours = nn.BatchNorm2D(3, dtype=np.float64)
    theirs = torch.nn.BatchNorm2d(3).double()
    for _ in range(3):
        x = rng.standard_normal((4, 3, 5, 5)) * 2 + 1
        np.testing.assert_allclose(ours.forward(x), theirs(torch.tensor(x)).detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)
    ours.training = False
    theirs.eval()
    x = rng.standard_normal((2, 3, 5, 5))
    np.testing.assert_allclose(ours.forward(x), theirs(torch.tensor(x)).detach().numpy(), atol=1e-12)


def test_layers_keep_their_dtype_and_never_modify_inputs(rng):
    """(A float64 input into this float32 model is a TypeError: tests/test_nn_dtypes.py.)"""
    model = nn.Sequential(nn.Linear(5, 4, rng=0), nn.Sigmoid(), nn.Linear(4, 2, rng=1))
    x = rng.standard_normal((3, 5)).astype(np.float32)
    x_before = x.copy()
    out = model.forward(x)
    assert out.dtype == np.float32
    model.backward(np.ones_like(out))
    np.testing.assert_array_equal(x, x_before)
    assert model.layers[0].grad_w.dtype == np.float32


def test_state_dict_round_trip_includes_running_statistics(rng):
    model = nn.Sequential(nn.BatchNorm2D(2), nn.Flatten(), nn.Linear(8, 2, rng=0))
    model.forward(rng.standard_normal((3, 2, 2, 2)).astype(np.float32))
    clone = nn.Sequential(nn.BatchNorm2D(2), nn.Flatten(), nn.Linear(8, 2, rng=5))
    clone.load_state_dict(model.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(clone.state_dict()[key], value)
    with pytest.raises(ValueError, match="shape"):
        clone.load_state_dict({**model.state_dict(), "2.weights": np.zeros((3, 3))})


def test_eval_switches_dropout_and_batchnorm():
    model = nn.Sequential(nn.Dropout(0.5), nn.Sequential(nn.BatchNorm2D(1)))
    model.eval()
    assert model.layers[0].training is False and model.layers[1].layers[0].training is False
    x = np.ones((2, 1, 2, 2), dtype=np.float32)
    np.testing.assert_allclose(model.forward(x), x / np.sqrt(1 + 1e-5), rtol=1e-6)


@pytest.mark.parametrize("make, x, message", [
    (lambda: nn.Linear(4, 2), np.zeros((3, 5), np.float32), r"4 features.*\(3, 5\)"),
    (lambda: nn.Linear(4, 2), np.zeros(4, np.float32), r"\(N, in_features\)"),
    (lambda: nn.Conv2D(3, 2, 3), np.zeros((1, 2, 5, 5), np.float32),
     r"3 input channels.*\(1, 2, 5, 5\)"),
    (lambda: nn.BatchNorm2D(2), np.zeros((1, 3, 2, 2), np.float32), r"2 channels"),
])
def test_bad_input_shapes_name_the_shapes(make, x, message):
    with pytest.raises(ValueError, match=message):
        make().forward(x)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2D(3, 4, 3, groups=2)
    with pytest.raises(TypeError, match="float32 or float64"):
        nn.Linear(2, 2, dtype=np.int32)
    with pytest.raises(ValueError, match="Dropout p"):
        nn.Dropout(1.0)
    with pytest.raises(ValueError, match="lr"):
        nn.SGD(nn.Linear(2, 2), lr=0)
    with pytest.raises(ValueError, match="labels must lie"):
        nn.SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.array([0, 3]))


def test_lenet5_xavier_init_bounds():
    model = nn.lenet5("sigmoid", "avg", init="xavier", rng=0)
    conv2, fc1 = model.layers[3], model.layers[7]
    assert np.abs(conv2.weights).max() <= np.sqrt(6 / (6 * 25 + 16 * 25))
    assert np.abs(fc1.weights).max() <= np.sqrt(6 / (400 + 120)) and np.abs(fc1.weights).max() > 0.1
    assert np.abs(fc1.bias).max() <= 1 / np.sqrt(400) and np.any(fc1.bias != 0)  # default bias init kept


def test_conv2d_algorithm_choice_gives_the_same_gradients(rng):
    x = rng.standard_normal((2, 3, 7, 7))
    results = []
    for algorithm in ("direct", "im2col"):
        layer = nn.Conv2D(3, 4, 3, padding=1, dtype=np.float64, rng=0, algorithm=algorithm)
        out = layer.forward(x)
        grad_input = layer.backward(np.ones_like(out))
        results.append((out, grad_input, layer.grad_w.copy()))
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="algorithm"):
        nn.Conv2D(3, 4, 3, algorithm="winograd-ish")
