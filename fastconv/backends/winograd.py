"""Winograd minimal filtering F(m x m, 3 x 3): fewer multiplications for 3x3, stride-1 layers.

The output is cut into m x m tiles; tile t of sample n reads an alpha x alpha input patch d
(alpha = m + 2) and, for each output channel k,

    Y[k, t] = A^T ( sum_c U[k, c] (.) V[c, t] ) A,   U = G g G^T,   V = B^T d B

where (.) is the elementwise product (Lavin & Gray 2015).  Fixing one of the alpha^2 transform
positions xi turns the channel sum into a matrix product, so the work is alpha^2 independent GEMMs

    M[xi] (K x P) = U[xi] (K x C) @ V[xi] (C x P)

with P tiles.  F(4x4, 3x3) does 36 multiplies per 16 outputs where the direct sum does 144: 4x fewer
GEMM flops than im2col, paid for with transforms and a larger rounding error (see ``VARIANTS``).

Layouts (per group; C and K below are the group's channels), all flat:

* ``filters``  (groups, alpha^2, C, K rounded up to the register tile's channels)  U, transformed
  once per call in float64 and rounded once; output channels contiguous (the tile broadcasts them);
* ``transformed_input`` (alpha^2, C, columns)  V: tiles contiguous, one vector of tiles per load;
* ``products`` (alpha^2, K rounded up, columns rounded up to whole register tiles)  M.

``columns`` is the chunk's tile count rounded up to TILE_ALIGN, so that every transform works on
whole vectors; the extra tiles are zeros in V and are never written out.  Tiles are numbered
row-major over (n, tile_row, tile_col).  Work proceeds in chunks of whole tile rows, sized so that
V and M stay in the last-level cache between stages and within the workspace cap; per chunk and
group: input transform (parallel over channel x run of tiles), the alpha^2 products on the direct
backend's register tile (parallel over xi x tile positions), output transform (parallel over output
channel x run of tiles) which adds the bias and crops partial tiles at the right/bottom edges.

The transforms are straight-line formulas (``_f4_input``, ...) applied to vectors that hold one
patch position of ``lanes`` consecutive tiles, whatever tile row each is in: a run of tiles is first
staged row by row, ``m`` values per tile (``_stage_input``), so that patch value d[r, s] of every
tile in the run is one stride-m sequence that a single wide load splits out (``load_strided``).
Each transform is two passes (rows, then columns) whose intermediates stay in registers; the output
transform stores its results interleaved, in output-row order, and copies each row piece out.  The
staging is also where implicit zero padding happens; the padded input is never materialised.
The formulas never multiply by a zero coefficient, so a NaN/Inf reaches only the values that
really depend on it algebraically — which is still every output of each tile whose input patch
holds it: the dispatcher treats winograd like fft and never chooses it on non-finite data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from .. import _simd
from .._config import get_num_threads, get_workspace_limit, njit_kernel, njit_parallel
from .._cpu import target_cpu, tile_shape
from ._common import bias_or_zeros

NAME = "winograd"


@dataclass(frozen=True)
class Variant:
    """Transform matrices of F(m x m, 3 x 3) (interpolation points 0, +-1, +-2, +-1/2, ...)."""

    tile: int                 # m: output tile side
    input_matrix: tuple       # B^T (alpha x alpha)
    filter_matrix: tuple      # G   (alpha x 3)
    output_matrix: tuple      # A^T (m x alpha)

    @property
    def alpha(self) -> int:
        return self.tile + 2


# Lavin & Gray (2015), points 0, -1, 1 (F2) and 0, -1, 1, -2, 2 (F4), as in wincnn.
F2 = Variant(
    tile=2,
    input_matrix=((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
    filter_matrix=((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1)),
    output_matrix=((1, 1, 1, 0), (0, 1, -1, -1)),
)
F4 = Variant(
    tile=4,
    input_matrix=(
        (4, 0, -5, 0, 1, 0),
        (0, -4, -4, 1, 1, 0),
        (0, 4, -4, -1, 1, 0),
        (0, -2, -1, 2, 1, 0),
        (0, 2, -1, -2, 1, 0),
        (0, 4, 0, -5, 0, 1),
    ),
    filter_matrix=(
        (1 / 4, 0, 0),
        (-1 / 6, -1 / 6, -1 / 6),
        (-1 / 6, 1 / 6, -1 / 6),
        (1 / 24, 1 / 12, 1 / 6),
        (1 / 24, -1 / 12, 1 / 6),
        (0, 0, 1),
    ),
    output_matrix=(
        (1, 1, 1, 1, 1, 0),
        (0, 1, -1, 2, -2, 0),
        (0, 1, 1, 4, 4, 0),
        (0, 1, -1, 8, -8, 1),
    ),
)
VARIANTS = {2: F2, 4: F4}
DEFAULT_TILE = 4

# One vector holds one transform position of ``lanes`` consecutive tiles; its width is the target's
# vector register.  A module-level constant is frozen into each compiled kernel, which is safe here:
# Numba keys its cache by the target CPU name and features, the same ones ``target_cpu`` reads.
_VECTOR_BYTES = target_cpu().vector_bytes

# Tiles one transform task handles: its staging rows and mixing buffer (about 2 alpha^2 x RUN_TILES
# values) stay in L1 while each formula runs over RUN_TILES / lanes vectors.
RUN_TILES = 64

# V and M of a chunk are written by one stage and read by the next: kept within this budget they
# stay in the last-level cache in between instead of going through memory.  The workspace cap still
# applies on top.
CHUNK_BYTES = 8 << 20
# ... but a chunk of at least this many tiles (cap permitting): each chunk streams all of U through
# the GEMMs again, which costs more than the cache misses when C x K is large and the chunk small.
MIN_CHUNK_TILES = 128

# V rows hold the chunk's tiles rounded up to a multiple of TILE_ALIGN (>= the lanes of the widest
# vector: 16 float32), so every transform vector is whole; the extra tiles are zeros and are never
# written out.
TILE_ALIGN = 16


def supports(params) -> str | None:
    """3x3 kernels, stride 1, dilation 1; any zero padding, groups, batch, float32/float64."""
    geometry = (params.kernel_h, params.kernel_w, params.stride_h, params.stride_w,
                params.dilation_h, params.dilation_w)
    if geometry != (3, 3, 1, 1, 1, 1):
        return (
            "winograd needs 3x3 kernels, stride 1 and dilation 1; got kernel "
            f"{params.kernel_h}x{params.kernel_w}, stride ({params.stride_h}, {params.stride_w}), "
            f"dilation ({params.dilation_h}, {params.dilation_w})"
        )
    return None


def tile_grid(params, tile: int = DEFAULT_TILE) -> tuple[int, int]:
    """(tile rows, tile columns) covering the output; the last row/column may be partial."""
    return -(-params.out_h // tile), -(-params.out_w // tile)


def tile_count(params, tile: int = DEFAULT_TILE) -> int:
    tiles_h, tiles_w = tile_grid(params, tile)
    return params.batch * tiles_h * tiles_w


def padded_tiles(tiles: int) -> int:
    """Columns of V for ``tiles`` tiles (see TILE_ALIGN)."""
    return -(-tiles // TILE_ALIGN) * TILE_ALIGN


def _gemm_geometry(params, tile):
    """(register tile, positions per tile, U row length = K rounded up to the tile's channels)."""
    shape = tile_shape()
    positions = shape.vectors * shape.vector_bytes // params.dtype.itemsize
    filter_row = -(-params.out_channels_per_group // shape.channels) * shape.channels
    return shape, positions, filter_row


def _product_columns(columns: int, positions: int) -> int:
    """Columns of M for ``columns`` of V: whole register tiles, so every tile store stays in its row."""
    return -(-columns // positions) * positions


def rows_per_chunk(params, tile: int = DEFAULT_TILE, limit: int | None = None) -> int:
    """Tile rows (over all samples) per chunk: V and M within CHUNK_BYTES (but at least
    MIN_CHUNK_TILES tiles) and always within the workspace cap ``limit``; at least one row; the
    chunks as equal as whole rows allow."""
    limit = get_workspace_limit() if limit is None else limit
    alpha_sq = (tile + 2) ** 2
    tiles_h, tiles_w = tile_grid(params, tile)
    _, positions, filter_row = _gemm_geometry(params, tile)
    bytes_per_tile = alpha_sq * (params.in_channels_per_group + filter_row) * params.dtype.itemsize
    total_rows = params.batch * tiles_h
    rows = max(-(-MIN_CHUNK_TILES // tiles_w),
               (CHUNK_BYTES // bytes_per_tile - TILE_ALIGN - positions) // tiles_w)
    rows = min(rows, (limit // bytes_per_tile - TILE_ALIGN - positions) // tiles_w)
    rows = max(1, min(total_rows, rows))
    chunks = -(-total_rows // rows)
    return int(-(-total_rows // chunks))


def _workspace_sizes(params, tile, rows):
    """Values in V and in M for chunks of ``rows`` tile rows, and in U."""
    alpha_sq = (tile + 2) ** 2
    _, tiles_w = tile_grid(params, tile)
    _, positions, filter_row = _gemm_geometry(params, tile)
    columns = padded_tiles(rows * tiles_w)
    return (alpha_sq * params.in_channels_per_group * columns,
            alpha_sq * filter_row * _product_columns(columns, positions),
            params.groups * alpha_sq * params.in_channels_per_group * filter_row)


def workspace_bytes(params, tile: int = DEFAULT_TILE) -> int:
    """V and M for one chunk plus the transformed filters."""
    return sum(_workspace_sizes(params, tile, rows_per_chunk(params, tile))) * params.dtype.itemsize


def work(params, tile: int = DEFAULT_TILE) -> tuple[int, int, int, int]:
    """(values the input and output transforms write, GEMM flops, parallel kernel launches, values
    the filter transform writes) of one forward call.  V and M hold alpha^2 values per channel and
    tile, alignment tiles included (M for whole register tiles); the GEMMs also multiply the zero
    channels that round K up to the tile's channels; each chunk and group launches three parallel
    kernels (input transform, GEMMs, output transform).  The filters are transformed on every call
    (in float64): alpha^2 values per (output, input) channel pair, the thing that dominates a
    512-channel layer on a 7x7 plane."""
    alpha_sq = (tile + 2) ** 2
    tiles_h, tiles_w = tile_grid(params, tile)
    _, positions, filter_row = _gemm_geometry(params, tile)
    rows = rows_per_chunk(params, tile)
    full_chunks, last_rows = divmod(params.batch * tiles_h, rows)
    chunk_columns = [padded_tiles(rows * tiles_w)] * full_chunks
    if last_rows:
        chunk_columns.append(padded_tiles(last_rows * tiles_w))
    columns = sum(chunk_columns)
    product_columns = sum(_product_columns(c, positions) for c in chunk_columns)
    transform_elements = alpha_sq * params.groups * (
        params.in_channels_per_group * columns + params.out_channels_per_group * product_columns)
    flops = 2 * alpha_sq * params.groups * filter_row * params.in_channels_per_group * product_columns
    filter_elements = alpha_sq * params.groups * params.in_channels_per_group * filter_row
    return transform_elements, flops, 3 * params.groups * len(chunk_columns), filter_elements


# Priced by the dispatcher's cost model (fastconv.dispatch.model).
COST_FEATURES = ("call", "transform_elements", "gemm_flops", "kernel_launches", "filter_elements")


def cost_features(params, threads: int) -> tuple[float, ...]:
    """F(4x4, 3x3) as ``forward`` runs it (see ``work``), per thread, float64 counted double (the
    filter transform computes in float64 whatever the dtype)."""
    width = params.dtype.itemsize / 4.0
    transform_elements, gemm_flops, launches, filter_elements = work(params)
    return (1.0, transform_elements * width / threads, gemm_flops * width / threads,
            float(launches), filter_elements / threads)


@njit_kernel
def _task_blocks(tasks, threads):
    """Split ``tasks`` into a few contiguous blocks per thread: each block allocates its scratch
    buffers once, and a few blocks per thread even out tasks of unequal cost.  (``threads`` comes
    from the caller: ``numba.get_num_threads()`` inside a kernel would make it uncacheable.)"""
    return max(1, min(tasks, 4 * threads))


@njit_kernel
def _block_range(block, blocks, tasks):
    return block * tasks // blocks, (block + 1) * tasks // blocks


# --- the transforms as formulas ------------------------------------------------------------------
# Each helper applies one matrix of ``VARIANTS`` to a column (or, transposed, a row) of a tile: the
# same code on scalars (tests) and on vectors of ``lanes`` tiles (kernels).  Common subexpressions
# are shared as in wincnn/NNPACK; no zero coefficient is ever multiplied, so a NaN reaches exactly
# the values whose matrix entry for it is nonzero, as the definition of the transform says.
@njit_kernel
def _f4_input(d0, d1, d2, d3, d4, d5):
    """Rows of F4's B^T applied to (d0 .. d5)."""
    upper = d4 - 4 * d2
    lower = d3 - 4 * d1
    outer = d4 - d2
    inner = 2 * (d3 - d1)
    return (4 * d0 - 5 * d2 + d4, upper + lower, upper - lower, outer + inner, outer - inner,
            4 * d1 - 5 * d3 + d5)


@njit_kernel
def _f4_output(m0, m1, m2, m3, m4, m5):
    """Rows of F4's A^T applied to (m0 .. m5)."""
    sum12 = m1 + m2
    difference12 = m1 - m2
    sum34 = m3 + m4
    difference34 = m3 - m4
    return (m0 + sum12 + sum34, difference12 + 2 * difference34, sum12 + 4 * sum34,
            difference12 + 8 * difference34 + m5)


@njit_kernel
def _f2_input(d0, d1, d2, d3):
    """Rows of F2's B^T applied to (d0 .. d3)."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit_kernel
def _f2_output(m0, m1, m2, m3):
    """Rows of F2's A^T applied to (m0 .. m3)."""
    return m0 + m1 + m2, m1 - m2 - m3


@njit_kernel
def _f4_filter(g0, g1, g2):
    """Rows of F4's G applied to (g0, g1, g2)."""
    even = (g0 + g2) * (-1 / 6)
    odd = g1 * (1 / 6)
    even_small = g0 * (1 / 24) + g2 * (1 / 6)
    odd_small = g1 * (1 / 12)
    return g0 * 0.25, even - odd, even + odd, even_small + odd_small, even_small - odd_small, g2


@njit_kernel
def _f2_filter(g0, g1, g2):
    """Rows of F2's G applied to (g0, g1, g2)."""
    even = (g0 + g2) * 0.5
    odd = g1 * 0.5
    return g0, even + odd, even - odd, g2


@njit_kernel
def _store_row(filters, first, step, count, values):
    """filters[first + j * step][:count] = values[j] (float64 vectors rounded to the filters'
    dtype) for the alpha values of one row of G g G^T."""
    j = 0
    for value in values:
        _simd.store_first(filters, first + j * step, _simd.convert(value, filters.dtype), count)
        j += 1


@njit_kernel
def _filter_block(tile, g00, g01, g02, g10, g11, g12, g20, g21, g22, filters, first, step, count):
    """U of ``count`` consecutive output channels (float64 vectors of their taps): G applied to
    the kernels' three columns, then to each row of the result; element (i, j) goes to
    ``filters[first + (alpha i + j) * step]``."""
    if tile == 4:
        l0, l1, l2, l3, l4, l5 = _f4_filter(g00, g10, g20)
        m0, m1, m2, m3, m4, m5 = _f4_filter(g01, g11, g21)
        r0, r1, r2, r3, r4, r5 = _f4_filter(g02, g12, g22)
        _store_row(filters, first, step, count, _f4_filter(l0, m0, r0))
        _store_row(filters, first + 6 * step, step, count, _f4_filter(l1, m1, r1))
        _store_row(filters, first + 12 * step, step, count, _f4_filter(l2, m2, r2))
        _store_row(filters, first + 18 * step, step, count, _f4_filter(l3, m3, r3))
        _store_row(filters, first + 24 * step, step, count, _f4_filter(l4, m4, r4))
        _store_row(filters, first + 30 * step, step, count, _f4_filter(l5, m5, r5))
    else:
        l0, l1, l2, l3 = _f2_filter(g00, g10, g20)
        m0, m1, m2, m3 = _f2_filter(g01, g11, g21)
        r0, r1, r2, r3 = _f2_filter(g02, g12, g22)
        _store_row(filters, first, step, count, _f2_filter(l0, m0, r0))
        _store_row(filters, first + 4 * step, step, count, _f2_filter(l1, m1, r1))
        _store_row(filters, first + 8 * step, step, count, _f2_filter(l2, m2, r2))
        _store_row(filters, first + 12 * step, step, count, _f2_filter(l3, m3, r3))


@njit_parallel
def _transform_filters(w, tile, groups, filters):
    """U: filters[((g * alpha^2 + xi) * C + c) * filter_row + k] = (G w[g K + k, c] G^T)[xi],
    computed in float64 and rounded once to the dtype; zero for the channels k >= K that round the
    row up to whole register tiles.  Output channels (k) contiguous: the GEMM's register tile
    broadcasts consecutive ones.  Vectors of ``lanes`` output channels, their taps gathered first."""
    out_channels, channels = w.shape[0], w.shape[1]
    out_per_group = out_channels // groups
    alpha_sq = (tile + 2) * (tile + 2)
    filter_row = filters.shape[0] // (groups * alpha_sq * channels)
    lanes = _VECTOR_BYTES // w.itemsize
    kernels = w.reshape(w.size)
    for task in prange(groups * channels):
        g = task // channels
        c = task - g * channels
        taps = np.empty(9 * lanes, dtype=w.dtype)  # taps[t * lanes + i]: tap t of channel first_k + i
        for first_k in range(0, filter_row, lanes):
            real = min(lanes, out_per_group - first_k)
            for i in range(real):
                first = ((g * out_per_group + first_k + i) * channels + c) * 9
                for t in range(9):
                    taps[t * lanes + i] = kernels[first + t]
            for i in range(real, lanes):
                for t in range(9):
                    taps[t * lanes + i] = 0
            _filter_block(tile,
                          _simd.convert(_simd.load(taps, 0, _VECTOR_BYTES), np.float64),
                          _simd.convert(_simd.load(taps, lanes, _VECTOR_BYTES), np.float64),
                          _simd.convert(_simd.load(taps, 2 * lanes, _VECTOR_BYTES), np.float64),
                          _simd.convert(_simd.load(taps, 3 * lanes, _VECTOR_BYTES), np.float64),
                          _simd.convert(_simd.load(taps, 4 * lanes, _VECTOR_BYTES), np.float64),
                          _simd.convert(_simd.load(taps, 5 * lanes, _VECTOR_BYTES), np.float64),
                          _simd.convert(_simd.load(taps, 6 * lanes, _VECTOR_BYTES), np.float64),
                          _simd.convert(_simd.load(taps, 7 * lanes, _VECTOR_BYTES), np.float64),
                          _simd.convert(_simd.load(taps, 8 * lanes, _VECTOR_BYTES), np.float64),
                          filters, (g * alpha_sq * channels + c) * filter_row + first_k,
                          channels * filter_row, min(lanes, filter_row - first_k))


# --- input transform -----------------------------------------------------------------------------
@njit_kernel
def _copy_padded(source, row_start, row_length, first_column, dest, start, length):
    """dest[start + i] = source[row_start + first_column + i] for i < length, zero where
    first_column + i is outside [0, row_length): implicit zero padding.  Whole vectors, a masked
    load for the last one: ``dest`` may be written up to lanes - 1 values past start + length
    (the caller leaves room), ``source`` is never read outside the row."""
    lanes = _VECTOR_BYTES // dest.itemsize
    zero = _simd.zeros(dest.dtype, _VECTOR_BYTES)
    lo = min(max(0, -first_column), length)
    hi = max(lo, min(length, row_length - first_column))
    for i in range(0, lo, lanes):
        _simd.store(dest, start + i, zero)
    offset = row_start + first_column
    i = lo
    while i + lanes <= hi:
        _simd.store(dest, start + i, _simd.load(source, offset + i, _VECTOR_BYTES))
        i += lanes
    if i < hi:
        _simd.store(dest, start + i, _simd.load_first(source, offset + i, _VECTOR_BYTES, hi - i))
        i += lanes
    while i < length:
        _simd.store(dest, start + i, zero)
        i += lanes


@njit_kernel
def _stage_input(x, channel, tile, pad_top, pad_left, tiles_h, tiles_w, first_row, tiles,
                 first_tile, count, near, far):
    """Copy the input rows of chunk tiles first_tile .. first_tile + count - 1 into two buffers of
    ``alpha`` rows, ``tile`` values per tile: in row r, tile q's values start at
    ``tile * (q - first_tile)`` and hold patch columns 0 .. tile - 1 (``near``) and tile .. 2 tile - 1
    (``far``, of which the transform uses the first two).  So patch value d[r, s] of every tile is
    one stride-``tile`` sequence, whatever the tile's row; zeros stand for padding and for the
    alignment tiles past the chunk's end.  Pieces are written in increasing order, so a piece's
    overrun (``_copy_padded``) lands where the next piece or the rows' spare room will be."""
    in_channels, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    flat = x.reshape(x.size)
    alpha = tile + 2
    row_length = near.shape[0] // alpha
    end = first_tile + count
    q = first_tile
    while q < end:
        if q >= tiles:
            for r in range(alpha):
                start = r * row_length + tile * (q - first_tile)
                _copy_padded(flat, 0, 0, 0, near, start, tile * (end - q))
                _copy_padded(flat, 0, 0, 0, far, start, tile * (end - q))
            break
        chunk_row = q // tiles_w
        column = q - chunk_row * tiles_w
        segment = min(end, tiles, (chunk_row + 1) * tiles_w) - q  # tiles of this tile row
        global_row = first_row + chunk_row
        n = global_row // tiles_h
        top = (global_row - n * tiles_h) * tile - pad_top
        first_column = column * tile - pad_left
        for r in range(alpha):
            start = r * row_length + tile * (q - first_tile)
            # an input row outside the image reads as a row of zeros (length 0)
            inside = 0 <= top + r < in_h
            row_start = ((n * in_channels + channel) * in_h + top + r) * in_w if inside else 0
            width = in_w if inside else 0
            _copy_padded(flat, row_start, width, first_column, near, start, tile * segment)
            _copy_padded(flat, row_start, width, first_column + tile, far, start, tile * segment)
        q += segment


@njit_kernel
def _input_run_f4(near, far, mixed, transformed_input, start, position_step, count):
    """V for ``count`` staged tiles (a multiple of the lanes): pass 1 applies B^T to each patch row
    r (6 strided loads, 6 stores into ``mixed``), pass 2 to each column j (6 loads, 6 stores into V
    at ``start + (6 i + j) * position_step``).  Every intermediate of a pass stays in registers."""
    lanes = _VECTOR_BYTES // near.itemsize
    row_length = near.shape[0] // 6
    for v in range(0, count, lanes):
        for r in range(6):
            d0, d1, d2, d3 = _simd.load_strided(near, r * row_length + 4 * v, 4, _VECTOR_BYTES)
            d4, d5, _, _ = _simd.load_strided(far, r * row_length + 4 * v, 4, _VECTOR_BYTES)
            e0, e1, e2, e3, e4, e5 = _f4_input(d0, d1, d2, d3, d4, d5)
            base = 6 * r * RUN_TILES + v  # mixed[(6 r + j) * RUN_TILES + tile] = (d B)[r, j]
            _simd.store(mixed, base, e0)
            _simd.store(mixed, base + RUN_TILES, e1)
            _simd.store(mixed, base + 2 * RUN_TILES, e2)
            _simd.store(mixed, base + 3 * RUN_TILES, e3)
            _simd.store(mixed, base + 4 * RUN_TILES, e4)
            _simd.store(mixed, base + 5 * RUN_TILES, e5)
        for j in range(6):
            base = j * RUN_TILES + v
            f0, f1, f2, f3, f4, f5 = _f4_input(
                _simd.load(mixed, base, _VECTOR_BYTES),
                _simd.load(mixed, base + 6 * RUN_TILES, _VECTOR_BYTES),
                _simd.load(mixed, base + 12 * RUN_TILES, _VECTOR_BYTES),
                _simd.load(mixed, base + 18 * RUN_TILES, _VECTOR_BYTES),
                _simd.load(mixed, base + 24 * RUN_TILES, _VECTOR_BYTES),
                _simd.load(mixed, base + 30 * RUN_TILES, _VECTOR_BYTES))
            out = start + j * position_step + v
            _simd.store(transformed_input, out, f0)
            _simd.store(transformed_input, out + 6 * position_step, f1)
            _simd.store(transformed_input, out + 12 * position_step, f2)
            _simd.store(transformed_input, out + 18 * position_step, f3)
            _simd.store(transformed_input, out + 24 * position_step, f4)
            _simd.store(transformed_input, out + 30 * position_step, f5)


@njit_kernel
def _input_run_f2(near, far, mixed, transformed_input, start, position_step, count):
    """``_input_run_f4`` for F(2x2, 3x3): 4 x 4 patches, B^T of F2."""
    lanes = _VECTOR_BYTES // near.itemsize
    row_length = near.shape[0] // 4
    for v in range(0, count, lanes):
        for r in range(4):
            d0, d1 = _simd.load_strided(near, r * row_length + 2 * v, 2, _VECTOR_BYTES)
            d2, d3 = _simd.load_strided(far, r * row_length + 2 * v, 2, _VECTOR_BYTES)
            e0, e1, e2, e3 = _f2_input(d0, d1, d2, d3)
            base = 4 * r * RUN_TILES + v
            _simd.store(mixed, base, e0)
            _simd.store(mixed, base + RUN_TILES, e1)
            _simd.store(mixed, base + 2 * RUN_TILES, e2)
            _simd.store(mixed, base + 3 * RUN_TILES, e3)
        for j in range(4):
            base = j * RUN_TILES + v
            f0, f1, f2, f3 = _f2_input(
                _simd.load(mixed, base, _VECTOR_BYTES),
                _simd.load(mixed, base + 4 * RUN_TILES, _VECTOR_BYTES),
                _simd.load(mixed, base + 8 * RUN_TILES, _VECTOR_BYTES),
                _simd.load(mixed, base + 12 * RUN_TILES, _VECTOR_BYTES))
            out = start + j * position_step + v
            _simd.store(transformed_input, out, f0)
            _simd.store(transformed_input, out + 4 * position_step, f1)
            _simd.store(transformed_input, out + 8 * position_step, f2)
            _simd.store(transformed_input, out + 12 * position_step, f3)


@njit_parallel
def _transform_input(x, first_channel, channels, tile, pad_top, pad_left, tiles_h, tiles_w,
                     first_row, tiles, columns, threads, transformed_input):
    """V: transformed_input[((xi * channels) + c) * columns + p] = (B^T d B)[xi] for the patch d of
    chunk tile p (tile row ``first_row + p // tiles_w``, column ``p % tiles_w``) in channel
    ``first_channel + c``; zeros for the alignment tiles p >= tiles.

    One task per (channel, run of RUN_TILES tiles): stage the run's input rows (``_stage_input``),
    then both passes of B^T . B over whole vectors of tiles."""
    alpha = tile + 2
    runs = (columns + RUN_TILES - 1) // RUN_TILES
    tasks = channels * runs
    blocks = _task_blocks(tasks, threads)
    for block in prange(blocks):
        # staged rows: RUN_TILES tiles of ``tile`` values plus room for a vector's overrun
        near = np.empty(alpha * (tile * RUN_TILES + TILE_ALIGN), dtype=x.dtype)
        far = np.empty(alpha * (tile * RUN_TILES + TILE_ALIGN), dtype=x.dtype)
        mixed = np.empty(alpha * alpha * RUN_TILES, dtype=x.dtype)
        first_task, last_task = _block_range(block, blocks, tasks)
        for task in range(first_task, last_task):
            c = task // runs
            first_tile = (task - c * runs) * RUN_TILES
            count = min(RUN_TILES, columns - first_tile)
            _stage_input(x, first_channel + c, tile, pad_top, pad_left, tiles_h, tiles_w, first_row,
                         tiles, first_tile, count, near, far)
            if tile == 4:
                _input_run_f4(near, far, mixed, transformed_input, c * columns + first_tile,
                              channels * columns, count)
            else:
                _input_run_f2(near, far, mixed, transformed_input, c * columns + first_tile,
                              channels * columns, count)


# --- output transform ----------------------------------------------------------------------------
@njit_kernel
def _output_run_f4(products, start, position_step, mixed, rows, count, bias):
    """Y + bias for ``count`` tiles of M (a multiple of the lanes): pass 1 applies A^T to each column
    j of M (6 loads, 4 stores into ``mixed``), pass 2 to each row a (6 loads) and stores the four
    results interleaved, ``rows[a * 4 RUN_TILES + 4 t + b]`` = Y[a, b] of tile t: output row order."""
    lanes = _VECTOR_BYTES // products.itemsize
    for v in range(0, count, lanes):
        for j in range(6):
            base = start + j * position_step + v
            t0, t1, t2, t3 = _f4_output(
                _simd.load(products, base, _VECTOR_BYTES),
                _simd.load(products, base + 6 * position_step, _VECTOR_BYTES),
                _simd.load(products, base + 12 * position_step, _VECTOR_BYTES),
                _simd.load(products, base + 18 * position_step, _VECTOR_BYTES),
                _simd.load(products, base + 24 * position_step, _VECTOR_BYTES),
                _simd.load(products, base + 30 * position_step, _VECTOR_BYTES))
            mixed_base = j * RUN_TILES + v  # mixed[(6 a + j) * RUN_TILES + tile] = (A^T M)[a, j]
            _simd.store(mixed, mixed_base, t0)
            _simd.store(mixed, mixed_base + 6 * RUN_TILES, t1)
            _simd.store(mixed, mixed_base + 12 * RUN_TILES, t2)
            _simd.store(mixed, mixed_base + 18 * RUN_TILES, t3)
        for a in range(4):
            base = 6 * a * RUN_TILES + v
            y0, y1, y2, y3 = _f4_output(
                _simd.load(mixed, base, _VECTOR_BYTES),
                _simd.load(mixed, base + RUN_TILES, _VECTOR_BYTES),
                _simd.load(mixed, base + 2 * RUN_TILES, _VECTOR_BYTES),
                _simd.load(mixed, base + 3 * RUN_TILES, _VECTOR_BYTES),
                _simd.load(mixed, base + 4 * RUN_TILES, _VECTOR_BYTES),
                _simd.load(mixed, base + 5 * RUN_TILES, _VECTOR_BYTES))
            _simd.store_interleaved(rows, 4 * (a * RUN_TILES + v),
                                    (y0 + bias, y1 + bias, y2 + bias, y3 + bias))


@njit_kernel
def _output_run_f2(products, start, position_step, mixed, rows, count, bias):
    """``_output_run_f4`` for F(2x2, 3x3)."""
    lanes = _VECTOR_BYTES // products.itemsize
    for v in range(0, count, lanes):
        for j in range(4):
            base = start + j * position_step + v
            t0, t1 = _f2_output(
                _simd.load(products, base, _VECTOR_BYTES),
                _simd.load(products, base + 4 * position_step, _VECTOR_BYTES),
                _simd.load(products, base + 8 * position_step, _VECTOR_BYTES),
                _simd.load(products, base + 12 * position_step, _VECTOR_BYTES))
            mixed_base = j * RUN_TILES + v
            _simd.store(mixed, mixed_base, t0)
            _simd.store(mixed, mixed_base + 4 * RUN_TILES, t1)
        for a in range(2):
            base = 4 * a * RUN_TILES + v
            y0, y1 = _f2_output(
                _simd.load(mixed, base, _VECTOR_BYTES),
                _simd.load(mixed, base + RUN_TILES, _VECTOR_BYTES),
                _simd.load(mixed, base + 2 * RUN_TILES, _VECTOR_BYTES),
                _simd.load(mixed, base + 3 * RUN_TILES, _VECTOR_BYTES))
            _simd.store_interleaved(rows, 2 * (a * RUN_TILES + v), (y0 + bias, y1 + bias))


@njit_kernel
def _scatter_output(rows, out, channel, tile, tiles_h, tiles_w, first_row, tiles, first_tile, count):
    """Copy the run's output rows (``rows[a * tile * RUN_TILES + tile * (q - first_tile) + b]``) into
    ``out``, one contiguous piece per tile row and output row, cropping partial tiles: whole vectors
    and a masked store for the last, so nothing outside the piece is written."""
    out_channels, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    flat = out.reshape(out.size)
    lanes = _VECTOR_BYTES // out.itemsize
    row_length = tile * RUN_TILES
    end = min(first_tile + count, tiles)
    q = first_tile
    while q < end:
        chunk_row = q // tiles_w
        column = q - chunk_row * tiles_w
        segment = min(end, (chunk_row + 1) * tiles_w) - q
        global_row = first_row + chunk_row
        n = global_row // tiles_h
        top = (global_row - n * tiles_h) * tile
        left = column * tile
        width = min(tile * segment, out_w - left)
        for a in range(min(tile, out_h - top)):
            dest = ((n * out_channels + channel) * out_h + top + a) * out_w + left
            source = a * row_length + tile * (q - first_tile)
            i = 0
            while i + lanes <= width:
                _simd.store(flat, dest + i, _simd.load(rows, source + i, _VECTOR_BYTES))
                i += lanes
            if i < width:
                _simd.store_first(flat, dest + i, _simd.load(rows, source + i, _VECTOR_BYTES), width - i)
        q += segment


@njit_parallel
def _transform_output(products, out_per_group, filter_row, columns, product_columns, bias, out,
                      first_out_channel, tile, tiles_h, tiles_w, first_row, tiles, threads):
    """out[n, first_out_channel + k, tile] = (A^T M[:, k, p] A) + bias for chunk tile p < tiles,
    M being ``products[((xi * filter_row) + k) * product_columns + p]``; tiles p < columns are
    transformed (whole vectors), the rest of M's columns and rows k >= out_per_group are ignored.

    One task per (output channel, run of RUN_TILES tiles): both passes of A^T . A over whole
    vectors of tiles into output-row order, then one copy per output row of each tile row."""
    alpha = tile + 2
    runs = (columns + RUN_TILES - 1) // RUN_TILES
    tasks = out_per_group * runs
    blocks = _task_blocks(tasks, threads)
    for block in prange(blocks):
        mixed = np.empty(alpha * tile * RUN_TILES, dtype=out.dtype)
        rows = np.empty(tile * tile * RUN_TILES + TILE_ALIGN, dtype=out.dtype)  # + a vector's overrun
        first_task, last_task = _block_range(block, blocks, tasks)
        for task in range(first_task, last_task):
            k = task // runs
            channel = first_out_channel + k
            first_tile = (task - k * runs) * RUN_TILES
            count = min(RUN_TILES, columns - first_tile)
            start = k * product_columns + first_tile
            if tile == 4:
                _output_run_f4(products, start, filter_row * product_columns, mixed, rows, count,
                               bias[channel])
            else:
                _output_run_f2(products, start, filter_row * product_columns, mixed, rows, count,
                               bias[channel])
            _scatter_output(rows, out, channel, tile, tiles_h, tiles_w, first_row, tiles, first_tile,
                            count)


# --- the GEMMs and the whole call ----------------------------------------------------------------
# M[xi] = U[xi] @ V[xi] on the direct backend's register tile (``fastconv._simd``): shape.channels
# output channels x shape.vectors vectors of tiles, summed over the input channels in registers;
# per channel, ``vectors`` loads of V, ``channels`` broadcasts of U, channels x vectors fused
# multiply-adds.  The tile shape comes from the target CPU (``fastconv._cpu.tile_shape``).  A task
# is (xi, one tile's worth of positions) and runs every block of output channels, so its V panel
# (C x positions) stays in L1/L2 while U streams.  Everything runs on Numba's threads: no BLAS
# worker threads spin against the transforms'.
@njit_parallel
def _multiply(filters, first_filter, alpha_sq, channels, filter_row, columns, product_columns,
              transformed_input, products, shape):
    """products[(xi * filter_row + k) * product_columns + p] = sum over c of
    filters[first_filter + (xi * C + c) * filter_row + k] * transformed_input[(xi * C + c) * columns + p]
    for p < product_columns (V's columns from ``columns`` on are not read: they count as zeros)."""
    tile_channels = shape.channels
    positions = shape.vectors * shape.vector_bytes // products.itemsize
    position_blocks = product_columns // positions
    channel_blocks = filter_row // tile_channels
    for task in prange(alpha_sq * position_blocks):
        xi = task // position_blocks
        start = (task - xi * position_blocks) * positions
        count = min(positions, columns - start)
        first_input = xi * channels * columns + start
        for block in range(channel_blocks):
            first_weight = first_filter + xi * channels * filter_row + block * tile_channels
            tile = _simd.tile_zeros(products.dtype, shape)
            if count == positions:
                for c in range(channels):
                    tile = _simd.tile_fma(tile, transformed_input, first_input + c * columns,
                                          filters, first_weight + c * filter_row)
            else:  # the chunk's last tiles: masked loads, nothing past V's row is read
                for c in range(channels):
                    tile = _simd.tile_fma_first(tile, transformed_input, first_input + c * columns,
                                                count, filters, first_weight + c * filter_row)
            _simd.tile_store(tile, products,
                             (xi * filter_row + block * tile_channels) * product_columns + start,
                             product_columns)


@njit_kernel
def _winograd_kernel(x, filters, bias, out, tile, pad_top, pad_left, groups, tiles_h, tiles_w,
                     rows_per_chunk, threads, transformed_input, products, shape):
    """Chunks of tile rows x groups: transform the input, alpha^2 GEMMs, transform the output."""
    alpha_sq = (tile + 2) * (tile + 2)
    channels = x.shape[1] // groups
    out_per_group = out.shape[1] // groups
    filter_row = filters.shape[0] // (groups * alpha_sq * channels)
    positions = shape.vectors * shape.vector_bytes // x.itemsize
    total_rows = x.shape[0] * tiles_h
    for first_row in range(0, total_rows, rows_per_chunk):
        rows = min(rows_per_chunk, total_rows - first_row)
        tiles = rows * tiles_w
        columns = (tiles + TILE_ALIGN - 1) // TILE_ALIGN * TILE_ALIGN
        product_columns = (columns + positions - 1) // positions * positions
        for g in range(groups):
            _transform_input(x, g * channels, channels, tile, pad_top, pad_left, tiles_h, tiles_w,
                             first_row, tiles, columns, threads, transformed_input)
            _multiply(filters, g * alpha_sq * channels * filter_row, alpha_sq, channels, filter_row,
                      columns, product_columns, transformed_input, products, shape)
            _transform_output(products, out_per_group, filter_row, columns, product_columns, bias,
                              out, g * out_per_group, tile, tiles_h, tiles_w, first_row, tiles,
                              threads)


def forward(x, w, bias, params, *, tile: int = DEFAULT_TILE, workspace_limit: int | None = None):
    """conv2d of C-contiguous ``x`` (N, C, H, W) with 3x3 ``w``; zero padding only (see ConvParams).

    ``tile`` picks the variant (4: F(4x4, 3x3), 2: F(2x2, 3x3)); ``workspace_limit`` overrides the
    configured cap on V + M (bytes), for tests and benchmarks of the chunking."""
    reason = supports(params)
    if reason is not None:
        raise ValueError(reason)
    dtype = params.dtype
    shape = tile_shape()
    tiles_h, tiles_w = tile_grid(params, tile)
    rows = rows_per_chunk(params, tile, workspace_limit)
    input_size, product_size, filter_size = _workspace_sizes(params, tile, rows)
    filters = np.empty(filter_size, dtype)
    _transform_filters(w, tile, params.groups, filters)
    transformed_input = np.empty(input_size, dtype)
    products = np.empty(product_size, dtype)
    out = np.empty(params.output_shape, dtype)
    bias = bias_or_zeros(bias, params.out_channels, dtype)
    _winograd_kernel(x, filters, bias, out, tile, params.pad_top, params.pad_left, params.groups,
                     tiles_h, tiles_w, rows, get_num_threads(), transformed_input, products, shape)
    return out
