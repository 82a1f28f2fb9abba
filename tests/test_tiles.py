"""Register tiles sized from the CPU (fastconv._cpu, the direct backend's tile kernel): every tile
shape runs on any host against the naive twins, and the tile chosen for AVX2 keeps its accumulators
in the 16 ymm registers (checked in the compiled assembly)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv
from fastconv import _cpu
from fastconv.backends import _direct_blocked as blocked
from fastconv.backends import _direct_lanes as lanes
from tests import naive
from tests.tolerances import assert_gradient_matches, assert_matches

# one default shape per vector width (NEON/SSE 16 bytes, AVX2 32, AVX-512 64), the narrower shapes
# `tile_shape_for` picks for layers the default's channel count does not divide, and odd ones: a
# channel count that divides no layer here, one vector of one channel, a shape wider than any ISA's
TILE_SHAPES = ["8x3x16", "6x2x32", "8x3x64", "6x4x64", "4x6x64", "4x3x32", "5x1x32", "1x1x16",
               "2x4x64"]

CASES = [
    ((2, 3, 9, 11), (5, 3, 3, 3), {"padding": 1}),  # fewer channels than most tiles: one block
    ((2, 6, 14, 14), (16, 6, 5, 5), {}),  # LeNet's second layer
    ((2, 3, 8, 10), (17, 3, 3, 3), {"padding": 1}),  # blocks + a remainder; masked last tiles
    ((1, 3, 8, 8), (9, 3, 1, 1), {}),  # 64 positions: whole tiles only for most shapes
    ((3, 2, 4, 4), (8, 2, 3, 3), {}),  # a plane shorter than one tile: only the masked tile
    ((2, 16, 30, 31), (24, 16, 3, 3), {"padding": 1}),  # row chunks
    ((1, 8, 7, 7), (8, 2, 3, 3), {"groups": 4, "padding": 1}),  # groups
    ((2, 4, 13, 12), (6, 4, 3, 3), {"stride": 2, "padding": 1}),  # phase planes
    ((1, 2, 16, 15), (5, 2, 3, 3), {"dilation": 2, "stride": 3, "padding": 1}),
    ((1, 2, 5, 5), (4, 2, 5, 5), {}),  # one output: the last tap reads the plane's last value
]

CASES_3D = [
    ((2, 3, 5, 6, 7), (5, 3, 3, 3, 3), {"padding": 1}),
    ((1, 4, 4, 5, 6), (6, 2, 2, 3, 2), {"groups": 2, "dilation": (1, 2, 1)}),
    ((1, 2, 3, 3, 3), (9, 2, 3, 3, 3), {}),  # one output position per channel
]
STRIDED_3D = [
    ((2, 3, 7, 6, 9), (5, 3, 3, 2, 3), {"stride": (2, 1, 3), "padding": 1}),
    ((1, 4, 8, 7, 6), (6, 2, 3, 3, 2), {"groups": 2, "stride": 2, "dilation": (2, 1, 1),
                                        "padding": (2, 1, 0)}),
]


def _id(case):
    shape, wshape, kwargs = case
    return f"x{shape}-w{wshape}-" + ",".join(f"{k}={v}" for k, v in kwargs.items())


@pytest.fixture(params=TILE_SHAPES)
def tile(request):
    _cpu.set_tile_shape(request.param)
    yield _cpu.tile_shape()
    _cpu.set_tile_shape(None)


@pytest.fixture(params=["planes", "lanes"])
def forward_path(request, monkeypatch):
    """The direct forward on either kernel whatever the layer: positions in the lanes (phase
    planes, ``_direct_blocked``) or output channels in the lanes (``_direct_lanes``), which
    otherwise takes only layers with many pairs per output, enough positions and full lanes."""
    if request.param == "planes":
        monkeypatch.setattr(lanes, "MIN_PAIRS", 1 << 62)
    else:
        monkeypatch.setattr(lanes, "MIN_PAIRS", 0)
        monkeypatch.setattr(lanes, "MIN_POSITIONS", 0)
        monkeypatch.setattr(lanes, "MIN_CHANNELS", 2)
        monkeypatch.setattr(lanes, "LANE_USE", 0.0)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_every_tile_shape_matches_naive(tile, forward_path, case, dtype, rng):
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    got = fastconv.conv2d(x, w, b, algorithm="direct", **kwargs)
    exact = naive.conv2d(x, w, b, **kwargs)
    magnitude = naive.conv2d(np.abs(x), np.abs(w), np.abs(b), **kwargs)
    assert_matches(got, exact, magnitude, dtype, "direct")


@pytest.mark.parametrize("case", [CASES[1], CASES[5], CASES[8]], ids=_id)
def test_lane_tile_sums_runs_of_pairs_like_one(tile, case, rng, monkeypatch):
    """A block's weights beyond ``RUN_WEIGHT_BYTES`` are reduced in runs of pairs whose sums add
    up in the task's scratch: forced down to a few pairs a run, the result is still the naive
    twin's, float64 and every tile shape."""
    monkeypatch.setattr(lanes, "RUN_WEIGHT_BYTES", 512)
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    b = rng.standard_normal(wshape[0])
    params_run = lanes.pairs_per_run(wshape[1] * wshape[2] * wshape[3], 64, 8)
    assert params_run < wshape[1] * wshape[2] * wshape[3]  # more than one run
    pads = (kwargs.get("padding", 0),) * 4
    stride, dilation = (kwargs.get("stride", 1),) * 2, (kwargs.get("dilation", 1),) * 2
    got = lanes.correlate(x, w, b, pads, kwargs.get("groups", 1), stride, dilation, shape=tile)
    exact = naive.conv2d(x, w, b, **kwargs)
    magnitude = naive.conv2d(np.abs(x), np.abs(w), np.abs(b), **kwargs)
    assert_matches(got, exact, magnitude, np.float64, "direct")


@pytest.mark.parametrize("case", CASES[2::3], ids=_id)
def test_every_tile_shape_serves_the_input_gradient(tile, forward_path, case, rng):
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    grad = rng.standard_normal(naive.conv2d(x, w, **kwargs).shape)
    got = fastconv.conv2d_backward(grad, x, w, algorithm="direct", needs=("input",),
                                   **kwargs)[0]
    exact = naive.conv2d_backward(grad, x, w, **kwargs)[0]
    scale = naive.conv2d_backward(np.abs(grad), np.abs(x), np.abs(w), **kwargs)[0]
    assert_gradient_matches(got, exact, scale, np.float64, "direct", what="grad_input")


@pytest.fixture
def every_weight_gradient_on_tiles(monkeypatch):
    """The weight gradient on register tiles whatever share of a tile is padding (the dispatcher
    of shapes sends very padded layers to the loop kernel)."""
    monkeypatch.setattr(blocked, "TILE_LANE_USE", 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_every_tile_shape_serves_the_weight_gradient(tile, case, dtype, rng,
                                                     every_weight_gradient_on_tiles):
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    grad = rng.standard_normal(naive.conv2d(x, w, **kwargs).shape).astype(dtype)
    got = fastconv.conv2d_backward(grad, x, w, algorithm="direct", needs=("weight",),
                                   **kwargs)[1]
    exact = naive.conv2d_backward(grad, x, w, **kwargs)[1]
    scale = naive.conv2d_backward(np.abs(grad), np.abs(x), np.abs(w), **kwargs)[1]
    assert_gradient_matches(got, exact, scale, dtype, "direct", what="grad_weight")


@pytest.mark.parametrize("case", CASES_3D[:2] + STRIDED_3D, ids=_id)
def test_every_tile_shape_serves_the_conv3d_weight_gradient(tile, case, rng,
                                                            every_weight_gradient_on_tiles):
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    grad = rng.standard_normal(naive.conv3d(x, w, **kwargs).shape)
    got = fastconv.conv3d_backward(grad, x, w, needs=("weight",), **kwargs)[1]
    # the weight gradient is the adjoint in w: <grad_w, v> == <grad, conv3d(x, v)> for every v
    for direction in rng.standard_normal((3,) + w.shape):
        np.testing.assert_allclose(np.vdot(got, direction),
                                   np.vdot(grad, naive.conv3d(x, direction, **kwargs)), rtol=1e-10)


@pytest.mark.parametrize("split", [
    (1, 10**9, 1, 64),  # a slice per sample, one run group, short segments
    (2, 150, 1, 64),  # slices of positions; segments that end mid-row
    (3, 10**9, 2, 97),  # run groups (each transposes again); an odd segment length
    (3, 10**9, 1, 10**6),  # one segment per slice
])
def test_weight_gradient_tiles_sum_the_same_however_the_work_is_split(split, rng):
    """Slices of samples and of positions (own partial sums), groups of runs and segment lengths
    change only the order of the sums."""
    x = rng.standard_normal((3, 5, 17, 19))
    w = rng.standard_normal((11, 5, 3, 4))
    params_kwargs = {"padding": 1}
    grad = rng.standard_normal(naive.conv2d(x, w, **params_kwargs).shape)
    exact = naive.conv2d_backward(grad, x, w, **params_kwargs)[1]
    layout = blocked.plane_layout(17, 18, 3, 4, (1, 1), (1, 1))
    planes = blocked.phase_planes(x, (1, 1, 1, 1), (1, 1), layout).reshape(3, -1)
    offsets = blocked.tap_offsets(1, 3, 4, (1, 1), (1, 1), 17, 18)
    shape = _cpu.TileShape(4, 2, 32)  # 8 float64 channels a block: two blocks, one padded
    length = 17 * layout.plane_w - (layout.reach_w - 1)
    sums = blocked.reduce_weight_gradient_tiles(planes, grad, offsets, 1, 5,
                                                layout.plane_h * layout.plane_w, layout.plane_w,
                                                length, shape, split=split)
    got = sums.reshape(w.shape)
    np.testing.assert_allclose(got, exact, rtol=1e-12, atol=1e-12)


def test_shapes_differ_in_compiled_code_not_only_in_name(rng):
    """Numba caches an argument's type by its Python type and contents for tuples: a TileShape that
    were a tuple would run every shape on the first shape's kernel (wrong packing, memory corruption).
    Two shapes in one process must both be right."""
    x = rng.standard_normal((1, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((11, 4, 3, 3)).astype(np.float32)
    exact = naive.conv2d(x, w)
    try:
        for text in ("6x2x32", "4x3x32", "6x2x32"):
            _cpu.set_tile_shape(text)
            np.testing.assert_allclose(fastconv.conv2d(x, w, algorithm="direct"), exact, rtol=1e-4,
                                       atol=1e-4)
    finally:
        _cpu.set_tile_shape(None)


# --- the target CPU and the tile it gets ------------------------------------------------------------
@pytest.mark.parametrize("features, machine, isa, width, registers", [
    ("+avx,+avx2,+fma,+avx512f,+avx512bw", "x86_64", "avx512", 64, 32),
    ("+avx,+avx2,+fma,-avx512f,-avx512bw", "x86_64", "avx2", 32, 16),
    ("+sse2,+sse4.2,-avx", "x86_64", "sse", 16, 16),
    ("+neon,+fp-armv8", "aarch64", "neon", 16, 32),
])
def test_target_description_from_llvm_features(features, machine, isa, width, registers):
    cpu = _cpu._describe("some-cpu", _cpu._feature_set(features), machine)
    assert (cpu.isa, cpu.vector_bytes, cpu.vector_registers) == (isa, width, registers)
    tile = _cpu.default_tile_shape(cpu)
    assert tile.vector_bytes == width
    # accumulators + one load per vector + one broadcast fit the register file
    assert tile.accumulators + tile.vectors + 1 <= registers


def test_tile_text_parsing():
    assert _cpu.parse_tile("6x2", 32) == _cpu.TileShape(6, 2, 32)
    assert _cpu.parse_tile("8x3x64", 32) == _cpu.TileShape(8, 3, 64)
    assert str(_cpu.TileShape(8, 3, 64)) == "8x3x64"
    for bad in ("6", "6x", "axb", "0x2", "6x2x24", "6x2x4", "16x4", "1x2x3x4"):
        with pytest.raises(ValueError, match="FASTCONV_TILE"):
            _cpu.parse_tile(bad, 32)
    with pytest.raises(TypeError, match="set_tile_shape"):
        _cpu.set_tile_shape((6, 2, 32))


def _run_child(code, **env):
    full_env = dict(os.environ, **env)
    full_env.pop("FASTCONV_TILE", None)
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, timeout=600)


def test_fastconv_tile_environment_variable_forces_the_shape():
    result = _run_child("""
        import numpy as np, fastconv
        from fastconv import _cpu
        print(_cpu.tile_shape())
        x = np.ones((1, 2, 6, 6), np.float32); w = np.ones((3, 2, 3, 3), np.float32)
        assert (fastconv.conv2d(x, w, algorithm="direct") == 18).all()
    """, FASTCONV_TILE="3x2x16")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3x2x16"
    result = _run_child("import fastconv._cpu as c; c.tile_shape()", FASTCONV_TILE="3by2")
    assert result.returncode != 0 and "FASTCONV_TILE" in result.stderr


# Haswell's own features, AVX-512 off: what an AVX2 laptop or server compiles for.
_AVX2_FEATURES = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fxsr,+lzcnt,+mmx,+movbe,"
                  "+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,-avx512f,-avx512bw,"
                  "-avx512dq,-avx512vl,-avx512cd")


# Reads the assembly of ``kernel`` (compiled in the child for ``signature``) for its full-tile
# loops: a loop is a block that branches back to itself and does fused multiply-adds without masked
# loads; each must do a multiple of the tile's accumulators in FMAs, all on ymm registers, with no
# vector register stored to or reloaded from the stack.
_ASSEMBLY_CHECK = """
    import re
    import numpy as np
    from numba import types
    from fastconv import _cpu, _simd
    from fastconv.backends import _direct_blocked as blocked

    cpu = _cpu.target_cpu()
    assert cpu.isa == "avx2", cpu
    f32, i64 = types.float32, types.int64
    {setup}
    assert shape.vector_bytes == 32, shape
    geometry = _simd.TileGeometry(shape.channels, shape.vectors, shape.vector_bytes)
    kernel.compile(signature + (geometry,))
    assembly = "\\n".join(kernel.inspect_asm().values())
    accumulators = shape.channels * shape.vectors
    label = None
    loops = []
    body = []
    for line in assembly.splitlines():
        match = re.match(r"^(\\.LBB\\w+):", line)
        if match:
            label, body = match.group(1), []
            continue
        body.append(line.strip())
        jump = re.match(r"^j\\w+\\s+(\\.LBB\\w+)", line.strip())
        if jump and jump.group(1) == label:  # a backward branch to its own block: a loop
            fmas = [item for item in body if item.startswith("vfmadd")]
            if fmas and all("vmaskmov" not in item for item in body):
                loops.append((label, list(body), len(fmas)))
    assert loops, "no full-tile loop found"
    for label, body, fmas in loops:
        assert fmas % accumulators == 0, (label, fmas, accumulators)
        registers = set(re.findall(r"%([xyz]mm)\\d+", "\\n".join(b for b in body if b.startswith("vfmadd"))))
        assert registers == {{"ymm"}}, (label, registers)
        spills = [b for b in body if re.search(r"%[xyz]mm\\d+", b) and re.search(r"\\(%r[sb]p\\)", b)]
        assert not spills, (label, spills)
    print("loops", [(label, fmas) for label, _, fmas in loops])
"""


def _check_avx2_assembly(setup, tmp_path):
    result = _run_child(_ASSEMBLY_CHECK.format(setup=setup), NUMBA_CPU_NAME="haswell",
                        NUMBA_CPU_FEATURES=_AVX2_FEATURES,
                        NUMBA_CACHE_DIR=str(tmp_path))  # fresh: inspection needs compiled code
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("loops")


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "AMD64"),
                    reason="compiles for an x86 target: needs an x86 host LLVM")
def test_avx2_tile_loop_uses_ymm_registers_and_spills_nothing(tmp_path):
    """Compile (never run) the forward tile kernel for AVX2 in a child process and read its
    assembly: the tap loop keeps its accumulators in ymm registers and spills nothing."""
    _check_avx2_assembly("""
    shape = _cpu.tile_shape()
    kernel = blocked._tile_kernel
    signature = (f32[:, ::1], f32[:, :, :, ::1], i64[::1], f32[::1], f32[:, :, :, ::1],
                 i64, i64, i64, i64)""", tmp_path)


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "AMD64"),
                    reason="compiles for an x86 target: needs an x86 host LLVM")
def test_avx2_weight_gradient_tile_loop_uses_ymm_registers_and_spills_nothing(tmp_path):
    """The weight gradient's tile (output channels in the lanes, (channel, tap) broadcasts) for a
    64-channel layer on AVX2: its position loop keeps the accumulators and the pairs' offsets in
    registers."""
    _check_avx2_assembly("""
    shape = _cpu.lane_tile_shape(64, 4)
    kernel = blocked._weight_tile_kernel
    signature = (f32[:, ::1], f32[:, :, :, ::1], i64[::1], i64[::1], f32[:, :, :, :, ::1], i64,
                 i64, i64, types.UniTuple(i64, 4))""", tmp_path)


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "AMD64"),
                    reason="compiles for an x86 target: needs an x86 host LLVM")
def test_avx2_lane_tile_loop_uses_ymm_registers_and_spills_nothing(tmp_path):
    """The forward's lane tile (output channels in the lanes, positions broadcast) for a
    64-channel layer on AVX2: its pair loop keeps the accumulators and the positions' offsets in
    registers (the loop is not unrolled: it ends at a sentinel)."""
    _check_avx2_assembly("""
    from fastconv.backends import _direct_lanes as lanes
    shape = _cpu.lane_tile_shape(64, 4)
    kernel = lanes._lane_kernel
    signature = (f32[:, ::1], f32[:, :, :, ::1], i64[::1], i64[::1], f32[::1], f32[:, :, ::1],
                 i64, types.UniTuple(i64, 3))""", tmp_path)


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "AMD64"),
                    reason="compiles for an x86 target: needs an x86 host LLVM")
def test_avx2_batch_lane_tap_loop_uses_ymm_registers_and_spills_nothing(tmp_path):
    """The forward with the samples in the lanes (LeNet's input gradient: 6 output channels) on
    AVX2: its tap loop keeps the accumulators in registers."""
    _check_avx2_assembly("""
    from fastconv.backends import _direct_batch_lanes as batch_lanes
    shape = _cpu.tile_shape_for(6)
    kernel = batch_lanes._kernel
    signature = (f32[:, ::1], f32[:, :, ::1], f32[:, ::1]) + (i64,) * 9""", tmp_path)


@pytest.mark.parametrize("isa_features, expected", [
    ({"avx512f", "avx2", "fma"}, {3: "4x6x64", 6: "6x4x64", 8: "8x3x64", 12: "6x4x64",
                                  16: "8x3x64", 24: "8x3x64", 64: "8x3x64"}),
    ({"avx2", "fma"}, {6: "6x2x32", 12: "6x2x32", 16: "4x3x32", 32: "4x3x32", 64: "6x2x32"}),
    ({"neon"}, {6: "6x4x16", 16: "8x3x16"}),
])
def test_layer_tile_keeps_the_default_unless_a_narrower_shape_pads_fewer_channels(
        isa_features, expected, monkeypatch):
    """Per ISA, whatever the host: the default shape where its channel count divides the layer's
    output channels (or nearly), a narrower shape of the same budget where that saves at least a
    tenth of the computed channels; a forced shape serves every layer."""
    monkeypatch.delenv("FASTCONV_TILE", raising=False)
    machine = "aarch64" if "neon" in isa_features else "x86_64"
    cpu = _cpu._describe("test", frozenset(isa_features), machine)
    assert {k: str(_cpu.tile_shape_for(k, cpu)) for k in expected} == expected
    for shape in map(_cpu.tile_shape_for, expected, [cpu] * len(expected)):
        assert shape.accumulators == _cpu.default_tile_shape(cpu).accumulators
    _cpu.set_tile_shape("5x1")
    try:
        assert {str(_cpu.tile_shape_for(k, cpu)) for k in expected} == {str(_cpu.tile_shape())}
    finally:
        _cpu.set_tile_shape(None)




@pytest.mark.parametrize("isa_features, itemsize, expected", [
    ({"avx512f", "avx2", "fma"}, 4, {6: "12x1x64", 16: "12x1x64", 32: "12x2x64", 48: "8x3x64",
                                     64: "6x4x64", 128: "6x4x64"}),
    ({"avx512f", "avx2", "fma"}, 8, {6: "12x1x64", 16: "12x2x64", 64: "6x4x64"}),
    ({"avx2", "fma"}, 4, {6: "12x1x32", 16: "6x2x32", 24: "4x3x32", 64: "6x2x32"}),
    ({"neon"}, 4, {6: "12x2x16", 16: "6x4x16", 64: "6x4x16"}),
])
def test_lane_tile_pads_the_fewest_channels_within_the_register_budget(
        isa_features, itemsize, expected, monkeypatch):
    """Per ISA, whatever the host: the vectors of output channels pad the fewest lanes (ties: more
    vectors), the broadcasts fill the accumulator budget up to 12 (their offsets live in
    general-purpose registers), and accumulators + loaded vectors + one broadcast fit the register
    file."""
    monkeypatch.delenv("FASTCONV_TILE", raising=False)
    machine = "aarch64" if "neon" in isa_features else "x86_64"
    cpu = _cpu._describe("test", frozenset(isa_features), machine)
    got = {k: _cpu.lane_tile_shape(k, itemsize, cpu) for k in expected}
    assert {k: str(shape) for k, shape in got.items()} == expected
    for shape in got.values():
        assert shape.accumulators + shape.vectors + 1 <= cpu.vector_registers
        assert shape.channels <= 12


@pytest.mark.parametrize("case", CASES_3D + STRIDED_3D, ids=_id)
def test_every_tile_shape_serves_conv3d(tile, forward_path, case, rng):
    """conv3d runs the 2-D direct backend's kernels on the flattened padded volumes: strided
    layers the lane tile (positions' and pairs' offsets in the volume), stride-1 ones the tile
    kernel on the volume read as one tall plane (the depth slices' bottom rows computed and
    dropped), the rest the loop kernel: forward and input gradient against the naive twin,
    whatever the shape."""
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    b = rng.standard_normal(wshape[0])
    got = fastconv.conv3d(x, w, b, **kwargs)
    exact = naive.conv3d(x, w, b, **kwargs)
    magnitude = naive.conv3d(np.abs(x), np.abs(w), np.abs(b), **kwargs)
    assert_matches(got, exact, magnitude, np.float64, "direct")
    grad = rng.standard_normal(exact.shape)
    grad_input = fastconv.conv3d_backward(grad, x, w, needs=("input",), **kwargs)[0]
    # the input gradient is the adjoint: <conv3d(x), g> == <x, grad_input>
    np.testing.assert_allclose(np.vdot(grad_input, x), np.vdot(grad, naive.conv3d(x, w, **kwargs)),
                               rtol=1e-10)
