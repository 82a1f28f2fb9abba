"""Hostile inputs: every public function x malformed arguments.

Each entry of :func:`catalogue` must raise ValueError or TypeError whose message names the argument,
before any kernel runs.  Kernels are compiled without bounds checks, so a gap in validation can be a
segfault: the whole catalogue runs in one child process that reports JSON back, and a child killed
by a signal fails the test naming the last entry it started.  The child also checks that no call,
failing or succeeding, modifies its array arguments.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastconv

ROOT = Path(__file__).resolve().parent.parent


def _huge(shape, dtype=np.float32):
    """A read-only array of ``shape`` that occupies one element (zero strides)."""
    return np.broadcast_to(np.ones((), dtype=dtype), shape)


def catalogue():
    """``(id, function, args, kwargs, exception type, regex the message must match)``."""
    x = np.ones((1, 2, 6, 6))
    w = np.ones((3, 2, 3, 3))
    g = np.ones((1, 3, 4, 4))  # conv2d(x, w)'s output shape
    v = np.ones((6, 6))
    F = fastconv
    E = []

    def add(ident, fn, args, kwargs, exc, pattern):
        E.append((ident, fn, args, kwargs, exc, pattern))

    # --- conv2d ----------------------------------------------------------------------------
    conv = F.conv2d
    add("conv2d/input 2-D", conv, (v, w), {}, ValueError, "input")
    add("conv2d/input 5-D", conv, (x[None], w), {}, ValueError, "input")
    add("conv2d/weight 3-D", conv, (x, w[0]), {}, ValueError, "weight")
    add("conv2d/channels mismatch", conv, (x, np.ones((3, 3, 3, 3))), {}, ValueError, "channels")
    add("conv2d/groups not dividing C", conv, (x, w), {"groups": 3}, ValueError, "groups")
    add("conv2d/groups not dividing K", conv, (np.ones((1, 4, 6, 6)), np.ones((3, 2, 3, 3))),
        {"groups": 2}, ValueError, "groups")
    add("conv2d/groups 0", conv, (x, w), {"groups": 0}, ValueError, "groups")
    add("conv2d/groups float", conv, (x, w), {"groups": 1.0}, TypeError, "groups")
    add("conv2d/groups bool", conv, (x, w), {"groups": True}, TypeError, "groups")
    for name in ("stride", "dilation"):
        add(f"conv2d/{name} 0", conv, (x, w), {name: 0}, ValueError, name)
        add(f"conv2d/{name} negative", conv, (x, w), {name: -1}, ValueError, name)
        add(f"conv2d/{name} float", conv, (x, w), {name: 1.5}, TypeError, name)
        add(f"conv2d/{name} bool", conv, (x, w), {name: True}, TypeError, name)
        add(f"conv2d/{name} triple", conv, (x, w), {name: (1, 1, 1)}, ValueError, name)
        add(f"conv2d/{name} string", conv, (x, w), {name: "2"}, TypeError, name)
        add(f"conv2d/{name} None", conv, (x, w), {name: None}, TypeError, name)
    add("conv2d/padding negative", conv, (x, w), {"padding": -1}, ValueError, "padding")
    add("conv2d/padding float", conv, (x, w), {"padding": 0.5}, TypeError, "padding")
    add("conv2d/padding unknown string", conv, (x, w), {"padding": "full"}, ValueError, "padding")
    add("conv2d/padding same strided", conv, (x, w), {"padding": "same", "stride": 2},
        ValueError, "padding")
    add("conv2d/reflect padding too large", conv, (x, w), {"padding": 6, "padding_mode": "reflect"},
        ValueError, "padding")
    add("conv2d/circular padding too large", conv, (x, w),
        {"padding": 7, "padding_mode": "circular"}, ValueError, "padding")
    add("conv2d/padding_mode unknown", conv, (x, w), {"padding_mode": "mirror"}, ValueError,
        "padding_mode")
    add("conv2d/algorithm unknown", conv, (x, w), {"algorithm": "winograd9"}, ValueError,
        "algorithm")
    add("conv2d/algorithm None", conv, (x, w), {"algorithm": None}, ValueError, "algorithm")
    add("conv2d/kernel larger than input", conv, (x, np.ones((3, 2, 7, 7))), {}, ValueError,
        "kernel")
    add("conv2d/dilated kernel larger than input", conv, (x, w), {"dilation": 3}, ValueError,
        "dilation")
    add("conv2d/bias wrong length", conv, (x, w, np.ones(2)), {}, ValueError, "bias")
    add("conv2d/bias 2-D", conv, (x, w, np.ones((3, 1))), {}, ValueError, "bias")
    add("conv2d/bias complex", conv, (x, w, np.ones(3, complex)), {}, TypeError, "bias")
    add("conv2d/input object", conv, (x.astype(object), w), {}, TypeError, "input")
    add("conv2d/input string", conv, (np.full((1, 2, 6, 6), "a"), w), {}, TypeError, "input")
    add("conv2d/input complex", conv, (x.astype(complex), w), {}, TypeError, "input")
    add("conv2d/weight complex", conv, (x, w.astype(np.complex64)), {}, TypeError, "weight")
    add("conv2d/input longdouble", conv, (x.astype(np.longdouble), w), {}, TypeError,
        "longdouble|float128|not supported")
    add("conv2d/input ragged list", conv, ([[[1, 2], [3]]], w), {}, (TypeError, ValueError),
        "input|inhomogeneous")
    # a batch of zero samples is legal (tests/test_empty_batches.py); zero channels are not
    add("conv2d/input zero channels", conv, (np.ones((2, 0, 6, 6)), w), {}, ValueError, "input")
    add("conv2d/unbatched input zero channels", conv, (np.ones((0, 6, 6)), w), {}, ValueError,
        "input")
    add("conv2d/input zero width", conv, (np.ones((1, 2, 6, 0)), w), {}, ValueError, "input")
    add("conv2d/weight zero K", conv, (x, np.ones((0, 2, 3, 3))), {}, ValueError, "weight")
    add("conv2d/absurd output", conv, (_huge((1, 1, 400_000, 400_000)), np.ones((1, 1, 1, 1))),
        {}, ValueError, "output|input")
    add("conv2d/absurd padding", conv, (x, w), {"padding": 10**7}, ValueError, "output")
    add("conv2d/absurd channels", conv, (_huge((1, 1, 8, 8)), _huge((10**12, 1, 1, 1))), {},
        ValueError, "output")

    # --- sepconv2d -------------------------------------------------------------------------
    col, row = np.ones(3), np.ones(3)
    add("sepconv2d/col 2-D", F.sepconv2d, (x, np.ones((3, 3)), row), {}, ValueError, "col")
    add("sepconv2d/row empty", F.sepconv2d, (x, col, np.ones(0)), {}, ValueError, "row")
    add("sepconv2d/col vs row ndim", F.sepconv2d, (x, col, np.ones((3, 2, 3))), {}, ValueError,
        "col and row")
    add("sepconv2d/groups with 1-D factors", F.sepconv2d, (x, col, row), {"groups": 2}, ValueError,
        "groups")
    add("sepconv2d/input 2-D", F.sepconv2d, (v, col, row), {}, ValueError, "input")
    add("sepconv2d/stride 0", F.sepconv2d, (x, col, row), {"stride": 0}, ValueError, "stride")
    add("sepconv2d/col complex", F.sepconv2d, (x, col.astype(complex), row), {}, TypeError, "col")

    # --- conv2d_backward -------------------------------------------------------------------
    back = F.conv2d_backward
    add("conv2d_backward/grad shape", back, (np.ones((1, 3, 5, 5)), x, w), {}, ValueError,
        "grad_output")
    add("conv2d_backward/grad 3-D for batched", back, (g[0], x, w), {}, ValueError, "grad_output")
    add("conv2d_backward/grad complex", back, (g.astype(complex), x, w), {}, TypeError,
        "grad_output")
    add("conv2d_backward/grad object", back, (g.astype(object), x, w), {}, TypeError, "grad_output")
    add("conv2d_backward/needs unknown", back, (g, x, w), {"needs": ("input", "bias2")}, ValueError,
        "needs")
    add("conv2d_backward/needs int", back, (g, x, w), {"needs": 3}, TypeError, "needs")
    add("conv2d_backward/groups", back, (g, x, w), {"groups": 2}, ValueError, "groups")
    add("conv2d_backward/algorithm", back, (g, x, w), {"algorithm": "gemm"}, ValueError,
        "algorithm")
    add("conv2d_backward/dilation 0", back, (g, x, w), {"dilation": 0}, ValueError, "dilation")

    # --- conv_transpose2d ------------------------------------------------------------------
    tw = np.ones((2, 3, 3, 3))  # (C, K/groups, R, S)
    tr = F.conv_transpose2d
    add("conv_transpose2d/input 2-D", tr, (v, tw), {}, ValueError, "input")
    add("conv_transpose2d/weight 3-D", tr, (x, tw[0]), {}, ValueError, "weight")
    add("conv_transpose2d/channels", tr, (x, np.ones((3, 3, 3, 3))), {}, ValueError, "channels")
    add("conv_transpose2d/groups", tr, (x, tw), {"groups": 3}, ValueError, "groups")
    add("conv_transpose2d/stride 0", tr, (x, tw), {"stride": 0}, ValueError, "stride")
    add("conv_transpose2d/output_padding too big", tr, (x, tw), {"output_padding": 1}, ValueError,
        "output_padding")
    add("conv_transpose2d/negative output", tr, (x, tw), {"padding": 9}, ValueError, "output")
    add("conv_transpose2d/bias", tr, (x, tw, np.ones(2)), {}, ValueError, "bias")
    add("conv_transpose2d/input complex", tr, (x.astype(complex), tw), {}, TypeError, "input")
    add("conv_transpose2d/empty", tr, (np.ones((1, 2, 0, 6)), tw), {}, ValueError, "input")
    add("conv_transpose2d/absurd output", tr, (x, tw), {"stride": 10**6}, ValueError, "output")

    # --- the 1-D and 3-D API: conv1d_backward, conv_transpose1d / 3d, 1-D pooling ---------------
    x1, w1, g1 = np.ones((1, 2, 8)), np.ones((3, 2, 3)), np.ones((1, 3, 6))
    tw1 = np.ones((2, 3, 3))  # (C, K/groups, R)
    x3, tw3 = np.ones((1, 2, 4, 4, 4)), np.ones((2, 3, 2, 2, 2))
    back1, tr1, tr3 = F.conv1d_backward, F.conv_transpose1d, F.conv_transpose3d
    add("conv1d_backward/input 4-D", back1, (g1, x, w1), {}, ValueError, "input")
    add("conv1d_backward/weight 4-D", back1, (g1, x1, w), {}, ValueError, "weight")
    add("conv1d_backward/grad shape", back1, (np.ones((1, 3, 5)), x1, w1), {}, ValueError,
        "grad_output")
    add("conv1d_backward/grad 0-d", back1, (np.float64(1.0), x1, w1), {}, ValueError,
        "grad_output")
    add("conv1d_backward/grad complex", back1, (g1.astype(complex), x1, w1), {}, TypeError,
        "grad_output")
    add("conv1d_backward/channels", back1, (g1, np.ones((1, 3, 8)), w1), {}, ValueError,
        "channels")
    add("conv1d_backward/stride pair", back1, (g1, x1, w1), {"stride": (1, 1)}, ValueError,
        "stride")
    add("conv1d_backward/padding float", back1, (g1, x1, w1), {"padding": 0.5}, TypeError,
        "padding")
    add("conv1d_backward/needs", back1, (g1, x1, w1), {"needs": ("grad",)}, ValueError, "needs")
    add("conv1d_backward/algorithm", back1, (g1, x1, w1), {"algorithm": "gemm"}, ValueError,
        "algorithm")
    add("conv_transpose1d/input 4-D", tr1, (x, tw1), {}, ValueError, "input")
    add("conv_transpose1d/weight 4-D", tr1, (x1, tw), {}, ValueError, "weight")
    add("conv_transpose1d/channels", tr1, (x1, np.ones((3, 3, 3))), {}, ValueError, "channels")
    add("conv_transpose1d/groups", tr1, (x1, tw1), {"groups": 3}, ValueError, "groups")
    add("conv_transpose1d/output_padding too big", tr1, (x1, tw1),
        {"stride": 2, "output_padding": 2}, ValueError, "output_padding")
    add("conv_transpose1d/output_padding pair", tr1, (x1, tw1), {"output_padding": (0, 0)},
        ValueError, "output_padding")
    add("conv_transpose1d/negative output", tr1, (x1, tw1), {"padding": 9}, ValueError, "output")
    add("conv_transpose1d/bias", tr1, (x1, tw1, np.ones(2)), {}, ValueError, "bias")
    add("conv_transpose1d/empty", tr1, (np.ones((1, 2, 0)), tw1), {}, ValueError, "input")
    add("conv_transpose1d/absurd output", tr1, (x1, tw1), {"stride": 10**12}, ValueError,
        "output")
    add("conv_transpose3d/input 3-D", tr3, (np.ones((4, 4, 4)), tw3), {}, ValueError, "input")
    add("conv_transpose3d/weight 4-D", tr3, (x3, tw3[0]), {}, ValueError, "weight")
    add("conv_transpose3d/channels", tr3, (np.ones((1, 3, 4, 4, 4)), tw3), {}, ValueError,
        "channels")
    add("conv_transpose3d/groups", tr3, (x3, tw3), {"groups": 4}, ValueError, "groups")
    add("conv_transpose3d/output_padding too big", tr3, (x3, tw3),
        {"stride": 2, "output_padding": (0, 2, 0)}, ValueError, "output_padding")
    add("conv_transpose3d/stride pair", tr3, (x3, tw3), {"stride": (1, 2)}, ValueError, "stride")
    add("conv_transpose3d/negative output", tr3, (x3, tw3), {"padding": 9}, ValueError, "output")
    add("conv_transpose3d/bias", tr3, (x3, tw3, np.ones(2)), {}, ValueError, "bias")
    add("conv_transpose3d/input complex", tr3, (x3.astype(complex), tw3), {}, TypeError, "input")
    add("conv_transpose3d/empty", tr3, (np.ones((1, 2, 0, 4, 4)), tw3), {}, ValueError, "input")
    add("conv_transpose3d/absurd output", tr3, (x3, tw3), {"stride": 10**5}, ValueError,
        "output")
    pg1 = np.ones((1, 2, 4))  # 2-wide pooling output of x1
    for name, fn, front in (("max_pool1d", F.max_pool1d, ()),
                            ("max_pool1d_backward", F.max_pool1d_backward, (pg1,)),
                            ("avg_pool1d", F.avg_pool1d, ()),
                            ("avg_pool1d_backward", F.avg_pool1d_backward, (pg1,))):
        add(f"{name}/input 4-D", fn, front + (x, 2), {}, ValueError, "input")
        add(f"{name}/input 1-D", fn, front + (np.ones(8), 2), {}, ValueError, "input")
        add(f"{name}/input empty", fn, front + (np.ones((1, 2, 0)), 2), {}, ValueError, "input")
        add(f"{name}/input complex", fn, front + (x1.astype(complex), 2), {}, TypeError, "input")
        add(f"{name}/kernel pair", fn, front + (x1, (2, 2)), {}, ValueError, "kernel_size")
        add(f"{name}/kernel 0", fn, front + (x1, 0), {}, ValueError, "kernel_size")
        add(f"{name}/kernel too big", fn, front + (x1, 9), {}, ValueError, "kernel_size|input")
        add(f"{name}/stride 0", fn, front + (x1, 2), {"stride": 0}, ValueError, "stride")
        add(f"{name}/padding over half", fn, front + (x1, 2), {"padding": 2}, ValueError,
            "padding")
        add(f"{name}/ceil_mode string", fn, front + (x1, 2), {"ceil_mode": "yes"}, TypeError,
            "ceil_mode")
        if front:
            add(f"{name}/grad shape", fn, (np.ones((1, 2, 3)), x1, 2), {}, ValueError,
                "grad_output")
            add(f"{name}/grad plane", fn, (np.ones((1, 2, 1, 4)), x1, 2), {}, ValueError,
                "grad_output")
        if name.startswith("max"):
            add(f"{name}/dilation 0", fn, front + (x1, 2), {"dilation": 0}, ValueError,
                "dilation")

    # --- pooling ---------------------------------------------------------------------------
    p = np.ones((1, 2, 6, 6))
    pg = np.ones((1, 2, 3, 3))  # 2x2 pooling output
    pools = [
        ("max_pool2d", F.max_pool2d, (p,), {}),
        ("max_pool2d_backward", F.max_pool2d_backward, (pg, p), {}),
        ("avg_pool2d", F.avg_pool2d, (p,), {}),
        ("avg_pool2d_backward", F.avg_pool2d_backward, (pg, p), {}),
        ("lp_pool2d", F.lp_pool2d, (p, 2), {}),
        ("lp_pool2d_backward", F.lp_pool2d_backward, (pg, p, 2), {}),
        ("weighted_avg_pool2d", F.weighted_avg_pool2d, (p,), {}),
        ("weighted_avg_pool2d_backward", F.weighted_avg_pool2d_backward, (pg, p), {}),
    ]
    for name, fn, args, kw in pools:
        backward = name.endswith("backward")
        data = args[:-1] if not backward else args[:1]
        rest = args[1:] if not backward else args[2:]

        def call(input, *, kernel=2, data=data, rest=rest, backward=backward):
            front = (data[0], input) if backward else (input,)
            return front + rest + (kernel,)

        add(f"{name}/input 2-D", fn, call(v), kw, ValueError, "input")
        add(f"{name}/input empty", fn, call(np.ones((1, 2, 0, 6))), kw, ValueError, "input")
        add(f"{name}/input complex", fn, call(p.astype(complex)), kw, TypeError, "input")
        add(f"{name}/input object", fn, call(p.astype(object)), kw, TypeError, "input")
        add(f"{name}/kernel 0", fn, call(p, kernel=0), kw, ValueError, "kernel_size")
        add(f"{name}/kernel float", fn, call(p, kernel=2.0), kw, TypeError, "kernel_size")
        add(f"{name}/kernel too big", fn, call(p, kernel=9), kw, ValueError, "kernel_size|input")
        add(f"{name}/stride 0", fn, call(p), dict(kw, stride=0), ValueError, "stride")
        add(f"{name}/stride negative", fn, call(p), dict(kw, stride=-2), ValueError, "stride")
        if backward:
            add(f"{name}/grad shape", fn, (np.ones((1, 2, 2, 3)), p) + rest + (2,), kw, ValueError,
                "grad_output")
            add(f"{name}/grad complex", fn, (pg.astype(complex), p) + rest + (2,), kw, TypeError,
                "grad_output")
        if not name.startswith("lp"):
            add(f"{name}/padding over half", fn, call(p), dict(kw, padding=2), ValueError,
                "padding")
            add(f"{name}/padding negative", fn, call(p), dict(kw, padding=-1), ValueError,
                "padding")
        if name.startswith("max"):
            add(f"{name}/dilation 0", fn, call(p), dict(kw, dilation=0), ValueError, "dilation")
            add(f"{name}/ceil_mode string", fn, call(p), dict(kw, ceil_mode="yes"), TypeError,
                "ceil_mode")
        if name.startswith("avg"):
            add(f"{name}/divisor 0", fn, call(p), dict(kw, divisor_override=0), ValueError,
                "divisor_override")
            add(f"{name}/divisor float", fn, call(p), dict(kw, divisor_override=1.5), TypeError,
                "divisor_override")
        if name.startswith("weighted"):
            add(f"{name}/sigma negative", fn, call(p), dict(kw, sigma=-1.0), ValueError, "sigma")
            add(f"{name}/sigma string", fn, call(p), dict(kw, sigma="1"), (TypeError, ValueError),
                "sigma")
    add("lp_pool2d/norm_type 0", F.lp_pool2d, (p, 0, 2), {}, ValueError, "norm_type")
    add("lp_pool2d/norm_type nan", F.lp_pool2d, (p, np.nan, 2), {}, ValueError, "norm_type")
    add("lp_pool2d/norm_type string", F.lp_pool2d, (p, "2", 2), {}, TypeError, "norm_type")
    add("lp_pool2d_backward/norm_type 0", F.lp_pool2d_backward, (pg, p, 0, 2), {}, ValueError,
        "norm_type")
    add("max_pool2d/absurd input", F.max_pool2d, (_huge((1, 1, 400_000, 400_000)), 1), {},
        ValueError, "input|output")
    add("avg_pool2d/absurd input", F.avg_pool2d, (_huge((1, 1, 400_000, 400_000)), 1), {},
        ValueError, "input|output")

    # --- correlate2d / convolve2d ---------------------------------------------------------
    for name in ("correlate2d", "convolve2d"):
        fn = getattr(F, name)
        k = np.ones((3, 3))
        add(f"{name}/in1 3-D", fn, (x[0], k), {}, ValueError, "2-D")
        add(f"{name}/in2 1-D", fn, (v, np.ones(3)), {}, ValueError, "2-D")
        add(f"{name}/mode unknown", fn, (v, k), {"mode": "wide"}, ValueError, "mode")
        add(f"{name}/mode int", fn, (v, k), {"mode": 1}, ValueError, "mode")
        add(f"{name}/boundary unknown", fn, (v, k), {"boundary": "reflect"}, ValueError,
            "boundary")
        add(f"{name}/valid neither contains", fn, (np.ones((6, 2)), np.ones((2, 6))),
            {"mode": "valid"}, ValueError, "valid")
        add(f"{name}/fillvalue array", fn, (v, k), {"fillvalue": np.ones(2)}, ValueError,
            "fillvalue")
        add(f"{name}/fillvalue string", fn, (v, k), {"fillvalue": "x"}, (TypeError, ValueError),
            "fillvalue|complex|could not convert")
        add(f"{name}/object", fn, (v.astype(object), k), {}, ValueError, "not available|object")
        add(f"{name}/bool", fn, (v.astype(bool), k.astype(bool)), {}, ValueError,
            "not available|bool")
        add(f"{name}/string", fn, (np.full((6, 6), "a"), k), {}, ValueError, "not available")
        add(f"{name}/longdouble", fn, (v.astype(np.longdouble), k), {}, ValueError,
            "extended precision|not available")
        add(f"{name}/algorithm unknown", fn, (v, k), {"algorithm": "fast"}, ValueError,
            "algorithm")
        add(f"{name}/separable on full rank", fn, (v, np.eye(3)), {"algorithm": "separable"},
            ValueError, "rank")
        add(f"{name}/im2col on integers", fn, (v.astype(int), k.astype(int)),
            {"algorithm": "im2col"}, ValueError, "integer")
        add(f"{name}/absurd output", fn, (_huge((300_000, 300_000)), np.ones((3, 3))), {},
            ValueError, "output|in1")
        add(f"{name}/absurd full output", fn, (_huge((200_000, 1)), _huge((1, 200_000))), {},
            ValueError, "output")

    # --- local / tiled convolution ---------------------------------------------------------
    tiled_w = np.ones((2, 2, 3, 2, 3, 3))
    local_w = np.ones((4, 4, 3, 2, 3, 3))
    tiled_g = np.ones((1, 3, 4, 4))
    for name, fn, weight in (("tiled_conv2d", F.tiled_conv2d, tiled_w),
                             ("local_conv2d", F.local_conv2d, local_w)):
        add(f"{name}/weight 4-D", fn, (x, w), {}, ValueError, "weight")
        add(f"{name}/input 2-D", fn, (v, weight), {}, ValueError, "input")
        add(f"{name}/channels", fn, (np.ones((1, 3, 6, 6)), weight), {}, ValueError, "channels")
        add(f"{name}/stride 0", fn, (x, weight), {"stride": 0}, ValueError, "stride")
        add(f"{name}/bias", fn, (x, weight, np.ones(5)), {}, ValueError, "bias")
        add(f"{name}/complex", fn, (x.astype(complex), weight), {}, TypeError, "input")
        add(f"{name}/empty", fn, (np.ones((1, 2, 0, 6)), weight), {}, ValueError, "input")
        back_fn = getattr(F, name + "_backward")
        add(f"{name}_backward/grad shape", back_fn, (np.ones((1, 3, 5, 5)), x, weight), {},
            ValueError, "grad_output")
        add(f"{name}_backward/needs", back_fn, (tiled_g, x, weight), {"needs": ["weights"]},
            ValueError, "needs")
    add("local_conv2d/tile count", F.local_conv2d, (x, tiled_w), {}, ValueError, "weight")
    add("tiled_conv2d/tile period too big", F.tiled_conv2d, (x, np.ones((5, 5, 3, 2, 3, 3))), {},
        ValueError, "tile")

    # --- configuration and shape helpers ---------------------------------------------------
    add("explain/input shape", F.explain, ((2, 6, 6), (3, 2, 3, 3, 1)), {}, ValueError, "weight")
    add("explain/dtype", F.explain, ((1, 2, 6, 6), (3, 2, 3, 3)), {"dtype": "complex128"},
        TypeError, "complex|dtype|not supported")
    add("explain/dtype unknown", F.explain, ((1, 2, 6, 6), (3, 2, 3, 3)), {"dtype": "floaty"},
        TypeError, "dtype")
    add("explain/weight shape empty", F.explain, ((1, 2, 6, 6), ()), {"bias": True}, ValueError,
        "weight")
    add("explain/groups", F.explain, ((1, 2, 6, 6), (3, 2, 3, 3)), {"groups": 4}, ValueError,
        "groups")
    add("set_workspace_limit/tiny", F.set_workspace_limit, (10,), {}, ValueError, "workspace")
    add("set_workspace_limit/float", F.set_workspace_limit, (1e9,), {}, TypeError, "workspace")
    add("set_workspace_limit/string", F.set_workspace_limit, ("1GB",), {}, TypeError, "workspace")
    add("set_num_threads/0", F.set_num_threads, (0,), {}, ValueError, "n must")
    add("set_num_threads/float", F.set_num_threads, (1.5,), {}, TypeError, "n must")
    add("conv_output_shape/stride 0", F.conv_output_shape, (8, 3), {"stride": 0}, ValueError,
        "stride")
    add("conv_flops/bad shape", F.conv_flops, ((1, 2, 6), (3, 2, 3, 3)), {}, ValueError, "input")
    return E


# --- the child process ----------------------------------------------------------------------------
def _snapshot(values):
    """Copies of the array arguments.  Zero-stride arrays (the absurd sizes) are read-only views
    of one element; copying them is what those entries test fastconv never does."""
    return [np.array(value, copy=True)
            if isinstance(value, np.ndarray) and 0 not in value.strides else None
            for value in values]


def _unchanged(values, before):
    for value, copy in zip(values, before):
        if copy is None:
            continue
        if value.dtype.kind == "O" or value.dtype.kind == "U":
            if not (value == copy).all():
                return False
        elif not np.array_equal(value, copy, equal_nan=True):
            return False
    return True


def run_catalogue(progress_path):
    """Run every entry; return a list of failure descriptions.  Writes each entry's id to
    ``progress_path`` before calling it, so that a crash can be attributed."""
    import re
    import warnings

    failures = []
    for ident, fn, args, kwargs, expected, pattern in catalogue():
        with open(progress_path, "w") as progress:
            progress.write(ident)
        values = list(args) + list(kwargs.values())
        before = _snapshot(values)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn(*args, **kwargs)
        except expected as error:
            if not re.search(pattern, str(error), re.IGNORECASE):
                failures.append(f"{ident}: message {str(error)!r} does not match {pattern!r}")
        except BaseException as error:  # noqa: BLE001 - the point is to catch anything
            failures.append(f"{ident}: expected {expected}, got {type(error).__name__}: {error}")
        else:
            failures.append(f"{ident}: expected {expected}, nothing was raised")
        if not _unchanged(values, before):
            failures.append(f"{ident}: modified its input")
    return failures


def _child_main(progress_path):
    fastconv.set_workspace_limit(1 << 20)  # the configuration entries must leave it alone
    failures = run_catalogue(progress_path)
    if fastconv.get_workspace_limit() != 1 << 20:
        failures.append("a rejected set_workspace_limit changed the limit")
    print(json.dumps({"count": len(catalogue()), "failures": failures}))


def test_catalogue_in_a_subprocess(tmp_path):
    progress = tmp_path / "progress.txt"
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
              "from tests.test_hostile_inputs import _child_main; "
              f"_child_main({str(progress)!r})")
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           cwd=ROOT, timeout=600)
    if child.returncode < 0:
        last = progress.read_text() if progress.exists() else "(none)"
        pytest.fail(f"the catalogue child died of signal {-child.returncode} during entry {last!r}")
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["count"] >= 250
    assert report["failures"] == [], "\n".join(report["failures"])


def test_catalogue_entries_are_unique():
    idents = [entry[0] for entry in catalogue()]
    assert len(idents) == len(set(idents))


# --- successful calls on read-only, non-contiguous inputs ---------------------------------------
def _read_only(array):
    array = np.asfortranarray(array)  # non-C-contiguous
    array.flags.writeable = False
    return array


def _successful_calls(rng):
    x = _read_only(rng.standard_normal((2, 4, 9, 9)))
    w = _read_only(rng.standard_normal((6, 2, 3, 3)))
    b = _read_only(rng.standard_normal(6))
    g = _read_only(rng.standard_normal((2, 6, 7, 7)))
    v = _read_only(rng.standard_normal((9, 9)))
    k = _read_only(rng.standard_normal((3, 4)))
    p = _read_only(rng.standard_normal((2, 4, 3, 3)))
    tw = _read_only(rng.standard_normal((4, 3, 3, 3)))
    calls = [(fastconv.conv2d, (x, w, b), {"groups": 2, "algorithm": name})
             for name in ("auto", "direct", "im2col", "fft")]
    calls += [(fastconv.conv2d, (x, w, b), {"groups": 2, "padding": 2, "padding_mode": mode})
              for mode in ("reflect", "replicate", "circular")]
    calls += [
        (fastconv.conv2d_backward, (g, x, w), {"groups": 2}),
        (fastconv.conv_transpose2d, (x, tw), {"stride": 2}),
        (fastconv.conv1d_backward, (g[:, :, 0], x[:, :, 0], w[:, :, 0]), {"groups": 2}),
        (fastconv.conv_transpose1d, (x[:, :, 0], tw[:, :, 0]), {"stride": 2}),
        (fastconv.conv_transpose3d, (p[:, :, None], tw[:, :, None]), {"stride": 2}),
        (fastconv.max_pool1d, (x[:, :, 0], 3), {}),
        (fastconv.avg_pool1d_backward, (p[:, :, 0], x[:, :, 0], 3), {}),
        (fastconv.sepconv2d, (x, k[:, 0].copy(), k[0].copy()), {}),
        (fastconv.max_pool2d, (x, 3), {}),
        (fastconv.max_pool2d_backward, (p, x, 3), {}),
        (fastconv.avg_pool2d, (x, 3), {}),
        (fastconv.avg_pool2d_backward, (p, x, 3), {}),
        (fastconv.lp_pool2d, (np.abs(x), 2, 3), {}),
        (fastconv.weighted_avg_pool2d, (x, 3), {}),
    ]
    for name in ("auto", "direct", "fft", "im2col"):
        calls.append((fastconv.correlate2d, (v, k), {"algorithm": name}))
        calls.append((fastconv.convolve2d, (v, k), {"boundary": "symm", "algorithm": name}))
    return calls


def test_successful_calls_never_modify_read_only_inputs(rng):
    for fn, args, kwargs in _successful_calls(rng):
        before = _snapshot(args)
        fn(*args, **kwargs)
        assert _unchanged(args, before), f"{fn.__name__} modified an input"


def test_signal_api_refuses_measure_mode_by_name():
    with pytest.raises(ValueError, match="measure"):
        fastconv.correlate2d(np.ones((8, 8)), np.ones((3, 3)), algorithm="measure")


def test_sequential_given_a_list_says_how_to_call_it():
    from fastconv import nn

    with pytest.raises(TypeError, match=r"Sequential\(\*layers\)"):
        nn.Sequential([nn.Linear(4, 3), nn.Linear(3, 2)])
    with pytest.raises(TypeError, match="layer 1"):
        nn.Module([nn.Linear(4, 3), "relu"])
