"""What the kernels are compiled for: the target CPU's vector width and register count, read once from
the same place Numba's code generator reads them, and the register-tile shape that follows.

Numba compiles for ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` when they are set and for the host
otherwise; so does this module, so a process restricted to AVX2 on an AVX-512 machine
(``NUMBA_CPU_NAME=znver3 NUMBA_CPU_FEATURES=<host features, -avx512*>``) sizes its tiles for AVX2.

The tile shape is the one place per-ISA tuning lives.  ``FASTCONV_TILE`` forces a shape on any host
(``CHANNELSxVECTORS`` in the target's vector width, or ``CHANNELSxVECTORSxBYTES``), which is how the
tests run every shape whatever the machine.
"""
from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["TargetCPU", "TileShape", "target_cpu", "tile_shape", "tile_shape_for",
           "default_tile_shape", "parse_tile", "lane_tile_shape"]


class TargetCPU(NamedTuple):
    name: str  # LLVM's CPU name (znver4, haswell, apple-m1, ...)
    features: frozenset  # target features switched on ("avx2", "fma", "avx512f", "neon", ...)
    isa: str  # "avx512", "avx2", "avx", "sse", "neon" or "generic": the vector instruction set
    vector_bytes: int  # width of one vector register
    vector_registers: int  # architectural vector registers


@dataclass(frozen=True)
class TileShape:
    """A register tile: ``channels`` output channels x ``vectors`` vectors of ``vector_bytes`` bytes
    of output positions, summed over every tap in ``channels * vectors`` accumulator registers.

    Not a tuple on purpose: Numba's dispatcher caches the type of a tuple argument by the types of
    its items, which would give every shape the first shape's compiled kernel."""

    channels: int
    vectors: int
    vector_bytes: int

    @property
    def accumulators(self) -> int:
        return self.channels * self.vectors

    @property
    def position_bytes(self) -> int:
        """Bytes of output positions one tile covers (per channel)."""
        return self.vectors * self.vector_bytes

    def __str__(self) -> str:
        return f"{self.channels}x{self.vectors}x{self.vector_bytes}"


def _feature_set(flattened: str) -> frozenset:
    """'+avx2,-avx512f,+fma' -> {'avx2', 'fma'}: the features switched on."""
    return frozenset(item[1:] for item in flattened.split(",") if item.startswith("+"))


def _describe(name: str, features: frozenset, machine: str) -> TargetCPU:
    if machine in ("aarch64", "arm64") or "neon" in features:
        return TargetCPU(name, features, "neon", 16, 32)
    if "avx512f" in features:
        return TargetCPU(name, features, "avx512", 64, 32)
    if "avx2" in features:
        return TargetCPU(name, features, "avx2", 32, 16)
    if "avx" in features:
        return TargetCPU(name, features, "avx", 32, 16)
    if "sse2" in features or machine in ("x86_64", "amd64"):
        return TargetCPU(name, features, "sse", 16, 16)
    return TargetCPU(name, features, "generic", 16, 16)


@functools.lru_cache(maxsize=1)
def target_cpu() -> TargetCPU:
    """The CPU Numba compiles for (its own config first, then LLVM's view of the host)."""
    import llvmlite.binding as llvm
    from numba.core import config

    name = config.CPU_NAME or llvm.get_host_cpu_name()
    if config.CPU_FEATURES is not None:
        features = config.CPU_FEATURES
    else:
        features = llvm.get_host_cpu_features().flatten()
    return _describe(name, _feature_set(features), platform.machine().lower())


# Default tile per ISA.  The rule of the tuned micro-kernels (oneDNN, XNNPACK): the accumulators,
# the position vectors loaded per tap and the broadcast weight fit the register file, with enough
# independent accumulators to hide the FMA latency (two FMA pipes x 4 cycles: 8 or more).  Chosen by
# measurement (README, "Register tiles per ISA": 3x3 and 1x1 ResNet layers, LeNet conv2, against
# the neighbouring shapes, one thread, interleaved):
#   avx512 (32 x 64 B): 8 channels x 3 vectors = 24 accumulators + 3 loads + 1 broadcast.  16 x 1
#       came close (one load feeding 16 FMAs) but lost on small-channel layers, whose last block
#       is mostly padding; 8 x 2 leaves FMA slots idle; 12 x 2 and 28 x 1 spill.
#   avx2 (16 x 32 B): 6 channels x 2 vectors = 12 accumulators + 2 loads + 1 broadcast = 15.
#       4 x 3 (the same 12 accumulators) was close; 8 x 1 and 12 x 1 are load-bound (one vector
#       feeds too few FMAs per broadcast); 8 x 2 (the former AVX-512 tile) spills every tap.
#   neon (32 x 16 B) follows the AVX-512 budget and sse (16 x 16 B) the AVX2 one: not measured
#       here (no such machine); FASTCONV_TILE overrides.
_DEFAULT_TILES = {
    "avx512": (8, 3),
    "avx2": (6, 2),
    "avx": (6, 2),
    "neon": (8, 3),
    "sse": (6, 2),
    "generic": (6, 2),
}


def default_tile_shape(cpu: TargetCPU | None = None) -> TileShape:
    cpu = cpu or target_cpu()
    channels, vectors = _DEFAULT_TILES[cpu.isa]
    return TileShape(channels, vectors, cpu.vector_bytes)


# Shapes of the default's accumulator budget with fewer channels, for layers whose output channels
# per group the default's channel count does not divide: a 6-channel layer (LeNet's conv1, the
# input gradient of its conv2) on the 8-channel AVX-512 tile computes two zero channels in every
# block, a quarter of its work.  6 x 4 ran such layers 9-21% faster than 8 x 3 on a Sapphire Rapids
# (and 40% slower on 16-channel ones, so the default stays where it divides); 4 x 6 is slower than
# either at equal waste, hence the margin a shape must save to be used.
_NARROWER_TILES = {
    "avx512": ((6, 4), (4, 6)),
    "neon": ((6, 4), (4, 6)),
    "avx2": ((4, 3),),
    "avx": ((4, 3),),
    "sse": ((4, 3),),
    "generic": ((4, 3),),
}
_CHANNEL_SAVING = 0.1
"""The fraction of computed (padded) channels a narrower shape must save over the best so far."""


def tile_shape_for(channels: int, cpu: TargetCPU | None = None) -> TileShape:
    """The register tile for a layer of ``channels`` output channels per group: the default shape,
    or a narrower one of the same budget that computes at least 10% fewer zero-padded channels.
    A forced shape (``set_tile_shape``, ``FASTCONV_TILE``) serves every layer."""
    if _forced_tile is not None or os.environ.get("FASTCONV_TILE"):
        return tile_shape()
    cpu = cpu or target_cpu()
    best = default_tile_shape(cpu)
    best_padded = -(-channels // best.channels) * best.channels
    for shape_channels, vectors in _NARROWER_TILES[cpu.isa]:
        padded = -(-channels // shape_channels) * shape_channels
        if padded <= best_padded * (1 - _CHANNEL_SAVING):
            best, best_padded = TileShape(shape_channels, vectors, cpu.vector_bytes), padded
    return best


# --- the lane tile: output channels in the vector lanes -----------------------------------------
# The weight gradient reduces over positions: grad_w[k, c, tap] = sum_p g[k, p] * x[c, p + tap].
# Its tile turns the forward's around: vectors of output channels (the gradient stored channels
# last), broadcasts of input values at ``channels`` (input channel, tap) pairs, the reduction over
# every position of every sample in registers.  The forward's lane kernel (``_direct_lanes``) runs
# the same tile with output positions as the broadcasts and the pairs reduced.  Same register
# budget as the forward tile (24 accumulators of 32 registers, 12 of 16); the vector count is
# chosen per layer so the output channels pad the fewest lanes (ties: more vectors, which load
# fewer broadcasts per FMA).  The broadcasts' offsets stay in general-purpose registers for the
# whole loop; x86-64 has 16 and the loop needs a few for its pointers and counter, so at most 12
# broadcasts: a 16-channel layer's 24 x 1 on AVX-512 reloaded an offset for every broadcast and ran
# slower than 12 x 1, forward and weight gradient alike.
_LANE_TILE_BUDGET = {"avx512": (24, 4), "neon": (24, 4)}
"""ISA -> (accumulators, most vectors); (12, 3) for the 16-register ISAs."""

_LANE_TILE_MOST_BROADCASTS = 12


def lane_tile_shape(channels: int, itemsize: int, cpu: TargetCPU | None = None) -> TileShape:
    """The lane tile for ``channels`` output channels per group of ``itemsize``-byte values:
    ``TileShape(broadcasts, vectors, bytes)``, ``broadcasts`` (the weight gradient's (input channel,
    tap) pairs, the forward's output positions) x ``vectors`` vectors of output channels.  A forced
    shape (``set_tile_shape``, ``FASTCONV_TILE``) serves here too, read the same way."""
    if _forced_tile is not None or os.environ.get("FASTCONV_TILE"):
        return tile_shape()
    cpu = cpu or target_cpu()
    accumulators, most_vectors = _LANE_TILE_BUDGET.get(cpu.isa, (12, 3))
    lanes = cpu.vector_bytes // itemsize
    best, best_padded = 1, None
    for vectors in range(1, most_vectors + 1):
        width = vectors * lanes
        padded = -(-channels // width) * width
        if best_padded is None or padded <= best_padded:
            best, best_padded = vectors, padded
    return TileShape(min(accumulators // best, _LANE_TILE_MOST_BROADCASTS), best, cpu.vector_bytes)


_MAX_ACCUMULATORS = 32


def parse_tile(text: str, vector_bytes: int) -> TileShape:
    """'4x3' (vectors of ``vector_bytes``) or '4x3x32' -> TileShape; ValueError if malformed."""
    parts = text.lower().replace(" ", "").split("x")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (2, 3):
        raise ValueError(f"FASTCONV_TILE must be CHANNELSxVECTORS or CHANNELSxVECTORSxBYTES "
                         f"(e.g. 4x3 or 8x2x64), got {text!r}")
    channels, vectors = numbers[:2]
    nbytes = numbers[2] if len(numbers) == 3 else vector_bytes
    if channels < 1 or vectors < 1 or channels * vectors > _MAX_ACCUMULATORS:
        raise ValueError(f"FASTCONV_TILE: channels and vectors must be >= 1 with at most "
                         f"{_MAX_ACCUMULATORS} accumulators, got {text!r}")
    if nbytes < 8 or nbytes & (nbytes - 1):
        raise ValueError(f"FASTCONV_TILE: vector bytes must be a power of two >= 8, got {text!r}")
    return TileShape(channels, vectors, nbytes)


_forced_tile: TileShape | None = None


def tile_shape() -> TileShape:
    """The register tile the forward kernels use: ``set_tile_shape``'s, else ``FASTCONV_TILE``'s,
    else the target ISA's default."""
    if _forced_tile is not None:
        return _forced_tile
    return _tile_from_environment()


@functools.lru_cache(maxsize=1)
def _tile_from_environment() -> TileShape:
    text = os.environ.get("FASTCONV_TILE")
    if text:
        return parse_tile(text, target_cpu().vector_bytes)
    return default_tile_shape()


def set_tile_shape(shape: TileShape | str | None) -> None:
    """Force a tile shape for this process (tests, measurements); ``None`` restores the default."""
    global _forced_tile
    if isinstance(shape, str):
        shape = parse_tile(shape, target_cpu().vector_bytes)
    elif shape is not None and not isinstance(shape, TileShape):
        raise TypeError(f"set_tile_shape: a TileShape, a string like '4x3' or None, got {shape!r}")
    _forced_tile = shape


# --- measuring another ISA on this host -----------------------------------------------------------
# Below this many multiply-adds a kernel runs on the calling thread: waking the other threads for a
# parallel region costs about what one core does in this much work with 32-byte vectors (measured
# on single images and small layers, Zen 4 natively and restricted to AVX2: the same crossover,
# since Zen 4 runs 64-byte vectors as two halves; docs/measurements.md).  Narrower vectors do half
# the work in that time.
_SERIAL_MACS_PER_32_BYTES = 1 << 18


def default_serial_macs(cpu: TargetCPU | None = None) -> int:
    """The serial-work threshold for ``cpu`` (default: the target); ``FASTCONV_SERIAL_MACS``
    overrides it (see ``fastconv._config``)."""
    cpu = cpu or target_cpu()
    return _SERIAL_MACS_PER_32_BYTES * min(cpu.vector_bytes, 32) // 32


ISA_CHOICES = ("native", "avx2")


def restricted_environment(isa: str) -> dict:
    """Environment variables that make every library in a *new* process run ``isa`` on this host:
    Numba (target CPU name + host features with every AVX-512 feature off: the name alone keeps the
    host's features, so zmm registers and 32 of them), PyTorch's convolutions (oneDNN) and its own
    kernels (ATen), and OpenBLAS.  Empty for ``native``.  ValueError if the host cannot run ``isa``."""
    if isa == "native":
        return {}
    if isa != "avx2":
        raise ValueError(f"isa must be one of {ISA_CHOICES}, got {isa!r}")
    import llvmlite.binding as llvm

    host_name = llvm.get_host_cpu_name()
    host_features = llvm.get_host_cpu_features().flatten().split(",")
    if "+avx2" not in host_features or "+fma" not in host_features:
        raise ValueError(f"isa='avx2': this CPU ({host_name}) has no AVX2+FMA to restrict to")
    features = ",".join("-" + item[1:] if item[1:].startswith("avx512") else item
                        for item in host_features)
    return {
        "NUMBA_CPU_NAME": "znver3" if host_name.startswith("znver") else "haswell",
        "NUMBA_CPU_FEATURES": features,
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "OPENBLAS_CORETYPE": "Haswell",
    }


def what_each_library_runs() -> str:
    """One line: the ISA Numba compiles for, PyTorch's CPU capability, OpenBLAS's core type."""
    parts = [f"numba {target_cpu().name}/{target_cpu().isa}"]
    try:
        import torch

        parts.append(f"torch {torch.backends.cpu.get_cpu_capability()}"
                     f" (ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')})")
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info

        cores = sorted({entry.get("architecture") or "?" for entry in threadpool_info()
                        if entry.get("internal_api") == "openblas"})
        if cores:
            parts.append("OpenBLAS " + "/".join(cores))
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        pass
    return ", ".join(parts)
