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


def _id(case):
    shape, wshape, kwargs = case
    return f"x{shape}-w{wshape}-" + ",".join(f"{k}={v}" for k, v in kwargs.items())


@pytest.fixture(params=TILE_SHAPES)
def tile(request):
    _cpu.set_tile_shape(request.param)
    yield _cpu.tile_shape()
    _cpu.set_tile_shape(None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_every_tile_shape_matches_naive(tile, case, dtype, rng):
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    got = fastconv.conv2d(x, w, b, algorithm="direct", **kwargs)
    exact = naive.conv2d(x, w, b, **kwargs)
    magnitude = naive.conv2d(np.abs(x), np.abs(w), np.abs(b), **kwargs)
    assert_matches(got, exact, magnitude, dtype, "direct")


@pytest.mark.parametrize("case", CASES[2::3], ids=_id)
def test_every_tile_shape_serves_the_input_gradient(tile, case, rng):
    shape, wshape, kwargs = case
    x = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    grad = rng.standard_normal(naive.conv2d(x, w, **kwargs).shape)
    got = fastconv.conv2d_backward(grad, x, w, algorithm="direct", needs=("input",),
                                   **kwargs)[0]
    exact = naive.conv2d_backward(grad, x, w, **kwargs)[0]
    scale = naive.conv2d_backward(np.abs(grad), np.abs(x), np.abs(w), **kwargs)[0]
    assert_gradient_matches(got, exact, scale, np.float64, "direct", what="grad_input")


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


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "AMD64"),
                    reason="compiles for an x86 target: needs an x86 host LLVM")
def test_avx2_tile_loop_uses_ymm_registers_and_spills_nothing(tmp_path):
    """Compile (never run) the tile kernel for AVX2 in a child process and read its assembly: the
    full-tile tap loop holds its accumulators in ymm registers, with no vector register stored to or
    reloaded from the stack inside the loop."""
    result = _run_child("""
        import re
        import numpy as np
        from numba import types
        from fastconv import _cpu, _simd
        from fastconv.backends import _direct_blocked as blocked

        cpu = _cpu.target_cpu()
        shape = _cpu.tile_shape()
        assert (cpu.isa, shape.vector_bytes) == ("avx2", 32), (cpu, shape)
        f32 = types.float32
        signature = (f32[:, ::1], f32[:, :, :, ::1], types.int64[::1], f32[::1], f32[:, :, :, ::1],
                     types.int64, types.int64, types.int64, types.int64,
                     _simd.TileGeometry(shape.channels, shape.vectors, shape.vector_bytes))
        blocked._tile_kernel.compile(signature)
        assembly = "\\n".join(blocked._tile_kernel.inspect_asm().values())
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
            assert registers == {"ymm"}, (label, registers)
            spills = [b for b in body if re.search(r"%[xyz]mm\\d+", b) and re.search(r"\\(%r[sb]p\\)", b)]
            assert not spills, (label, spills)
        print("loops", [(label, fmas) for label, _, fmas in loops])
    """, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=_AVX2_FEATURES,
        NUMBA_CACHE_DIR=str(tmp_path))  # a fresh cache: inspection needs freshly compiled code
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("loops")


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


CASES_3D = [
    ((2, 3, 5, 6, 7), (5, 3, 3, 3, 3), {"padding": 1}),
    ((1, 4, 4, 5, 6), (6, 2, 2, 3, 2), {"groups": 2, "dilation": (1, 2, 1)}),
    ((1, 2, 3, 3, 3), (9, 2, 3, 3, 3), {}),  # one output position per channel
]


@pytest.mark.parametrize("case", CASES_3D, ids=_id)
def test_every_tile_shape_serves_conv3d_at_stride_one(tile, case, rng):
    """A stride-1 conv3d runs the 2-D tile kernel on the volume read as one tall plane (the depth
    slices' bottom rows computed and dropped): forward and input gradient against the naive twin,
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
