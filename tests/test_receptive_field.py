"""receptive_field: the notes' worked examples and an independent interval-propagation check."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastconv
from fastconv.receptive_field import format_receptive_field


def test_classic_two_conv_example():
    """5x5 input, two 3x3 convs with stride 2 and padding 1: 3x3 then 2x2 features whose fields are
    3 and 7 pixels wide, jumps 2 and 4, first centre on the first pixel's centre (0.5)."""
    records = fastconv.receptive_field([{"kernel_size": 3, "stride": 2, "padding": 1},
                                        {"kernel_size": 3, "stride": 2, "padding": 1}], input_size=5)
    assert [(r.out_size, r.jump, r.size, r.start) for r in records] == [(3, 2, 3, 0.5), (2, 4, 7, 0.5)]


def test_vgg_like_stack_by_hand():
    # conv3 p1, conv3 p1, pool2 s2, conv3 p1, conv3 p1, pool2 s2 on 32x32.
    layers = [(3, 1, 1), (3, 1, 1), (2, 2), (3, 1, 1), (3, 1, 1), (2, 2)]
    records = fastconv.receptive_field(layers, input_size=32)
    assert [r.size for r in records] == [3, 5, 6, 10, 14, 16]
    assert [r.jump for r in records] == [1, 1, 2, 2, 2, 4]
    assert [r.out_size for r in records] == [32, 32, 16, 16, 16, 8]
    # a 2x2 pool's first window covers pixels 0 and 1: centre 1.0; the last pool's covers 0..15.
    assert [r.start for r in records] == [0.5, 0.5, 1.0, 1.0, 1.0, 2.0]


def test_dilation_valid_padding_and_pixel_index_convention():
    records = fastconv.receptive_field([dict(k=3, d=2), dict(k=3, d=4, name="atrous")], input_start=0)
    # k_eff = 5 then 9: fields 5 and 13, centres at pixel 2 then 2 + 4 = 6.
    assert [(r.name, r.size, r.jump, r.start) for r in records] == [("layer1", 5, 1, 2.0),
                                                                    ("atrous", 13, 1, 6.0)]
    assert records[0].out_size is None


def test_pairs_give_per_axis_records():
    records = fastconv.receptive_field([((3, 1), (2, 1), (1, 0)), (3, 2)], input_size=(8, 5))
    assert records[-1].size == (7, 3) and records[-1].jump == (4, 2) and records[-1].out_size == (1, 2)
    assert "layer2" in format_receptive_field(records)


def _brute_force_field(layers, input_start):
    """Walk output 0 of the last layer back to the input: [lo, hi] at layer l becomes
    [lo s - p, hi s - p + k_eff - 1] one layer down."""
    lo = hi = 0
    for kernel, stride, pad, dilation in reversed(layers):
        lo, hi = lo * stride - pad, hi * stride - pad + dilation * (kernel - 1)
    return hi - lo + 1, (lo + hi) / 2 + input_start


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 7), st.integers(1, 3), st.integers(0, 3), st.integers(1, 3)),
                min_size=1, max_size=6))
def test_formulas_agree_with_interval_propagation(layers):
    records = fastconv.receptive_field(layers, input_start=0)
    for depth in range(1, len(layers) + 1):
        size, start = _brute_force_field(layers[:depth], 0)
        assert records[depth - 1].size == size
        assert records[depth - 1].start == pytest.approx(start)
        assert records[depth - 1].jump == int(np.prod([layer[1] for layer in layers[:depth]]))


@pytest.mark.parametrize("layers,error,match", [
    ([], ValueError, "at least one"),
    ([{"stride": 2}], ValueError, "kernel_size"),
    ([{"kernel_size": 3, "strides": 2}], ValueError, "unknown key"),
    ([(3, 1, 0, 1, 5)], ValueError, "tuple"),
    ([3], TypeError, "dict or a tuple"),
    ([(0,)], ValueError, "kernel_size"),
    ([(3, 1, -1)], ValueError, "padding"),
])
def test_bad_layers(layers, error, match):
    with pytest.raises(error, match=match):
        fastconv.receptive_field(layers)


def test_kernel_that_does_not_fit_the_input_size():
    with pytest.raises(ValueError, match="does not fit"):
        fastconv.receptive_field([(3, 2), (3, 2)], input_size=5)


def test_formulas_cover_tiled_and_local():
    weight_local = (28, 28, 16, 16, 3, 3)
    assert fastconv.conv_flops((32, 16, 28, 28), weight_local, padding=1) == \
        fastconv.conv_flops((32, 16, 28, 28), (16, 16, 3, 3), padding=1) == 2 * 32 * 16 * 784 * 144
    assert fastconv.conv_params(16, 16, 3, tiles=(28, 28), tiled_bias=True) == 784 * (16 * 144 + 16)
    assert fastconv.conv_params(16, 16, 3, tiles=(2, 2)) == 4 * 16 * 144 + 16
    assert fastconv.conv_params(16, 16, 3, tiles=(1, 1)) == fastconv.conv_params(16, 16, 3)
    with pytest.raises(ValueError, match="groups"):
        fastconv.conv_flops((1, 4, 8, 8), (2, 2, 4, 2, 3, 3), groups=2)
