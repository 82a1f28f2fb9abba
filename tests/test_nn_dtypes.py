"""fastconv.nn's dtype rule (PyTorch's): nothing is converted silently.

* a layer with parameters computes in their dtype and refuses an input or output gradient of any
  other dtype with a TypeError naming both dtypes and the fixes;
* a layer without parameters computes in its input's dtype (float32 or float64) and refuses other
  input dtypes, and output gradients of another dtype than its forward pass;
* the loss computes in the logits' dtype; an optimiser (and ``update``) refuses a gradient whose
  dtype is not its parameter's.

Every layer, the loss and both optimisers are covered here.
"""
import numpy as np
import pytest

from fastconv import nn
from nn_gradcheck import numerical_gradient

FLOATS = [np.float32, np.float64]

# name -> factory(dtype), and an input shape; each layer's forward accepts (2, 2, 6, 6) or (2, 4)
PARAMETER_LAYERS = {
    "Conv2D": (lambda dtype: nn.Conv2D(2, 3, 3, padding=1, dtype=dtype, rng=0), (2, 2, 6, 6)),
    "Linear": (lambda dtype: nn.Linear(4, 3, dtype=dtype, rng=0), (2, 4)),
    "BatchNorm2D": (lambda dtype: nn.BatchNorm2D(2, dtype=dtype), (2, 2, 6, 6)),
    "LocallyConnected2D": (lambda dtype: nn.LocallyConnected2D(2, 3, 3, input_size=6, padding=1,
                                                               dtype=dtype, rng=0), (2, 2, 6, 6)),
    "TiledConv2D": (lambda dtype: nn.TiledConv2D(2, 3, 3, tiles=2, padding=1, dtype=dtype, rng=0),
                    (2, 2, 6, 6)),
}
FREE_LAYERS = {
    "ReLU": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh,
    "MaxPool2D": lambda: nn.MaxPool2D(2), "MaxPooling": nn.MaxPooling,
    "AvgPool2D": lambda: nn.AvgPool2D(2), "LPPool2D": lambda: nn.LPPool2D(2, 2),
    "WeightedAvgPool2D": lambda: nn.WeightedAvgPool2D(2), "Dropout": lambda: nn.Dropout(0.5, rng=0),
}


def _other(dtype):
    return np.float64 if np.dtype(dtype) == np.float32 else np.float32


def _name(dtype):
    return np.dtype(dtype).name


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("layer_name", PARAMETER_LAYERS)
def test_parameter_layers_compute_in_their_dtype(layer_name, dtype, rng):
    make, shape = PARAMETER_LAYERS[layer_name]
    layer = make(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    x_before = x.copy()
    out = layer.forward(x)
    assert out.dtype == dtype
    grad_in = layer.backward(np.ones_like(out))
    assert grad_in.dtype == dtype
    assert layer.grad_w.dtype == dtype and layer.grad_b.dtype == dtype
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("layer_name", PARAMETER_LAYERS)
def test_parameter_layers_refuse_another_float_dtype_naming_both_and_the_fixes(layer_name, dtype,
                                                                             rng):
    make, shape = PARAMETER_LAYERS[layer_name]
    layer = make(dtype)
    other = _other(dtype)
    expected = (rf"{layer_name} has {_name(dtype)} parameters but its input is {_name(other)}.*"
                rf"dtype=np\.{_name(other)}.*x\.astype\(np\.{_name(dtype)}\)")
    with pytest.raises(TypeError, match=expected):
        layer.forward(rng.standard_normal(shape).astype(other))
    out = layer.forward(rng.standard_normal(shape).astype(dtype))
    with pytest.raises(TypeError, match=rf"grad_out is {_name(other)}"):
        layer.backward(np.ones(out.shape, other))


@pytest.mark.parametrize("layer_name", PARAMETER_LAYERS)
def test_parameter_layers_refuse_integer_input(layer_name):
    make, shape = PARAMETER_LAYERS[layer_name]
    with pytest.raises(TypeError, match=r"input is uint8.*x\.astype\(np\.float32\)"):
        make(np.float32).forward(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("layer_name", FREE_LAYERS)
def test_layers_without_parameters_keep_the_input_dtype(layer_name, dtype, rng):
    layer = FREE_LAYERS[layer_name]()
    x = rng.standard_normal((2, 2, 6, 6)).astype(dtype)
    out = layer.forward(x)
    assert out.dtype == dtype
    assert layer.backward(np.ones_like(out)).dtype == dtype
    with pytest.raises(TypeError, match=rf"{layer_name} computed its forward pass in "
                                        rf"{_name(dtype)} but its grad_out is {_name(_other(dtype))}"):
        layer.backward(np.ones(out.shape, _other(dtype)))


@pytest.mark.parametrize("bad", [np.uint8, np.int64, np.float16, np.bool_])
@pytest.mark.parametrize("layer_name", FREE_LAYERS)
def test_layers_without_parameters_refuse_non_float32_64_input(layer_name, bad):
    with pytest.raises(TypeError, match=rf"{layer_name} computes in float32 or float64.*"
                                        rf"{np.dtype(bad).name}.*astype"):
        FREE_LAYERS[layer_name]().forward(np.ones((2, 2, 6, 6), bad))


def test_flatten_only_reshapes_so_it_keeps_any_dtype():
    """Flatten computes nothing: it converts nothing either (the next layer checks the dtype)."""
    x = np.arange(2 * 3 * 2 * 2, dtype=np.uint8).reshape(2, 3, 2, 2)
    out = nn.Flatten().forward(x)
    assert out.dtype == np.uint8 and out.shape == (2, 12)


@pytest.mark.parametrize("dtype", FLOATS)
def test_loss_computes_in_the_logits_dtype(dtype, rng):
    loss = nn.SoftmaxCrossEntropy()
    value = loss.forward(rng.standard_normal((4, 5)).astype(dtype), np.array([0, 1, 2, 4]))
    assert np.isfinite(value)
    assert loss.backward().dtype == dtype


def test_loss_refuses_integer_logits():
    with pytest.raises(TypeError, match=r"SoftmaxCrossEntropy computes in float32 or float64.*"
                                        r"int64.*logits\.astype"):
        nn.SoftmaxCrossEntropy().forward(np.zeros((2, 3), np.int64), np.array([0, 1]))


OPTIMISERS = {
    "SGD": lambda model: nn.SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-3),
    "Adam": lambda model: nn.Adam(model, lr=1e-2, weight_decay=1e-3),
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("optimiser", OPTIMISERS)
def test_optimisers_keep_every_parameter_in_its_dtype(optimiser, dtype, rng):
    model = nn.Sequential(nn.Conv2D(1, 2, 3, dtype=dtype, rng=0), nn.BatchNorm2D(2, dtype=dtype),
                          nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3, dtype=dtype, rng=1))
    step = OPTIMISERS[optimiser](model)
    loss = nn.SoftmaxCrossEntropy()
    x = rng.standard_normal((4, 1, 6, 6)).astype(dtype)
    for _ in range(3):
        loss.forward(model.forward(x), np.array([0, 1, 2, 0]))
        model.backward(loss.backward())
        step.step()
    for owner, value_name, grad_name in model.parameters():
        assert getattr(owner, value_name).dtype == dtype
        assert getattr(owner, grad_name).dtype == dtype


class _UserLayerWithWideGradients(nn.Layer):
    """A user's layer that stores float64 gradients for float32 weights."""

    def __init__(self):
        self.weights = np.ones(3, np.float32)
        self.grad_w = np.full(3, 1e-9, np.float64)


@pytest.mark.parametrize("optimiser", OPTIMISERS)
def test_optimisers_refuse_a_gradient_of_another_dtype(optimiser):
    layer = _UserLayerWithWideGradients()
    with pytest.raises(TypeError, match=r"_UserLayerWithWideGradients\.grad_w is float64 but "
                                        r"_UserLayerWithWideGradients\.weights is float32"):
        OPTIMISERS[optimiser](nn.Module([layer])).step()
    np.testing.assert_array_equal(layer.weights, 1)


@pytest.mark.parametrize("make", [
    _UserLayerWithWideGradients,
    lambda: _with_wide_gradients(nn.TiledConv2D(1, 1, 2, dtype=np.float32, rng=0)),
])
def test_plain_update_refuses_a_gradient_of_another_dtype(make):
    layer = make()
    with pytest.raises(TypeError, match="grad_w is float64 but .*weights is float32"):
        layer.update(0.1)


def _with_wide_gradients(layer):
    layer.grad_w = layer.grad_w.astype(np.float64)
    return layer


def test_the_course_notes_float64_pipeline(rng):
    """A float64 NumPy pipeline on a default (float32) Conv2D used to run in float32 without a word,
    and a finite-difference check with step 1e-6 then reported a wrong input gradient.  Now the
    layer says what to do, and with dtype=np.float64 the check passes."""
    x = rng.standard_normal((1, 1, 5, 5))
    with pytest.raises(TypeError, match=r"Conv2D has float32 parameters but its input is float64.*"
                                        r"dtype=np\.float64.*x\.astype\(np\.float32\)"):
        nn.Conv2D(1, 2, 3, rng=0).forward(x)
    layer = nn.Conv2D(1, 2, 3, dtype=np.float64, rng=0)
    upstream = rng.standard_normal((1, 2, 3, 3))
    layer.forward(x)
    analytic = layer.backward(upstream)
    numeric = numerical_gradient(lambda: float(np.sum(layer.forward(x) * upstream)), x, eps=1e-6)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
