"""Winograd minimal filtering F(m x m, 3 x 3): fewer multiplications for 3x3, stride-1 layers.

The output is cut into m x m tiles; tile t of sample n reads an alpha x alpha input patch d
(alpha = m + 2) and, for each output channel k,

    Y[k, t] = A^T ( sum_c U[k, c] (.) V[c, t] ) A,   U = G g G^T,   V = B^T d B

where (.) is the elementwise product (Lavin & Gray 2015).  Fixing one of the alpha^2 transform
positions xi turns the channel sum into a matrix product, so the work is alpha^2 independent GEMMs

    M[xi] (K x P) = U[xi] (K x C) @ V[xi] (C x P)

with P tiles.  F(4x4, 3x3) does 36 multiplies per 16 outputs where the direct sum does 144: 4x fewer
GEMM flops than im2col, paid for with transforms and a larger rounding error (see ``VARIANTS``).

Layouts (per group; C and K below are the group's channels):

* ``filters``  (alpha^2, K_total, C)  U, transformed once per call in float64 and rounded once;
* ``transformed_input`` (alpha^2, C, P_chunk)  V: tiles contiguous so each GEMM reads plain rows;
* ``products`` (alpha^2, K, P_chunk)  M.

Tiles are numbered row-major over (n, tile_row, tile_col).  Work proceeds in chunks of whole tile
rows so that V and M stay within the workspace cap; per chunk and group: input transform (parallel
over channel x tile row), alpha^2 BLAS GEMMs (threaded by BLAS), output transform (parallel over
output channel x tile row) which adds the bias and crops partial tiles at the right/bottom edges.

Both transforms are vectorised across the tiles of a tile row.  The input rows of a tile row are
staged in a small per-thread buffer "phase-major": element (phase, j) holds input column
j * m + phase - pad_left, so the tap s of tile j is element (s % m, j + s // m) — a contiguous run
over j for every tap.  The staging is also where implicit zero padding happens (out-of-range rows and
columns are written as zeros); the padded input is never materialised.  Zero transform coefficients
are skipped, so a NaN/Inf reaches only the outputs that really depend on it algebraically — which is
still every output of each tile whose input patch holds it: the dispatcher treats winograd like fft
and never chooses it on non-finite data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from .._blas import gemm
from .._config import get_num_threads, get_workspace_limit, njit_kernel, njit_parallel
from ._common import bias_or_zeros, valid_output_range

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

# Tiles a transform task handles at once: its tap-major scratch (alpha^2 x TILE_BLOCK, twice) stays
# in L1/L2 while every multiply-add runs over TILE_BLOCK contiguous tiles.
TILE_BLOCK = 64


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


def rows_per_chunk(params, tile: int = DEFAULT_TILE, limit: int | None = None) -> int:
    """Tile rows (over all samples) whose V and M workspaces fit the cap; at least 1."""
    limit = get_workspace_limit() if limit is None else limit
    alpha = tile + 2
    tiles_h, tiles_w = tile_grid(params, tile)
    bytes_per_row = (
        alpha * alpha * (params.in_channels_per_group + params.out_channels_per_group)
        * tiles_w * params.dtype.itemsize
    )
    return int(max(1, min(params.batch * tiles_h, limit // bytes_per_row)))


def workspace_bytes(params, tile: int = DEFAULT_TILE) -> int:
    """V and M for one chunk plus the transformed filters."""
    alpha = tile + 2
    _, tiles_w = tile_grid(params, tile)
    channels = params.in_channels_per_group + params.out_channels_per_group
    chunk = alpha * alpha * channels * rows_per_chunk(params, tile) * tiles_w
    filters = alpha * alpha * params.out_channels * params.in_channels_per_group
    return (chunk + filters) * params.dtype.itemsize


@njit_kernel
def _task_blocks(tasks, threads):
    """Split ``tasks`` into a few contiguous blocks per thread: each block allocates its scratch
    buffers once, and a few blocks per thread even out tasks of unequal cost.  (``threads`` comes
    from the caller: ``numba.get_num_threads()`` inside a kernel would make it uncacheable.)"""
    return max(1, min(tasks, 4 * threads))


@njit_parallel
def _transform_filters(w, filter_matrix, filters):
    """filters[xi, k, c] = (G w[k, c] G^T)[xi], summed in float64 and rounded once to the dtype."""
    out_channels, channels = w.shape[0], w.shape[1]
    alpha = filter_matrix.shape[0]
    for k in prange(out_channels):
        half = np.empty((alpha, 3))  # G g, float64
        for c in range(channels):
            for i in range(alpha):
                for s in range(3):
                    total = 0.0
                    for r in range(3):
                        if filter_matrix[i, r] != 0:
                            total += filter_matrix[i, r] * w[k, c, r, s]
                    half[i, s] = total
            for i in range(alpha):
                for j in range(alpha):
                    total = 0.0
                    for s in range(3):
                        if filter_matrix[j, s] != 0:
                            total += half[i, s] * filter_matrix[j, s]
                    filters[i * alpha + j, k, c] = total


@njit_kernel
def _block_range(block, blocks, tasks):
    return block * tasks // blocks, (block + 1) * tasks // blocks


@njit_parallel
def _transform_input(x, first_channel, input_matrix, tile, pad_top, pad_left, tiles_h, tiles_w,
                     first_row, threads, transformed_input):
    """transformed_input[xi, c, p] = (B^T d B)[xi] for the input patch d of chunk tile p (tile row
    ``first_row + p // tiles_w``, column ``p % tiles_w``) in channel ``first_channel + c``.

    One task per (channel, run of TILE_BLOCK tiles): gather the patches tap-major (zeros where a
    patch hangs over the input's edge), then apply B^T and B as multiply-adds over the run's tiles."""
    in_h, in_w = x.shape[2], x.shape[3]
    alpha = input_matrix.shape[0]
    channels, tiles = transformed_input.shape[1], transformed_input.shape[2]
    runs = (tiles + TILE_BLOCK - 1) // TILE_BLOCK
    tasks = channels * runs
    blocks = _task_blocks(tasks, threads)
    for block in prange(blocks):
        patches = np.empty((alpha * alpha, TILE_BLOCK), dtype=x.dtype)  # d[r, s] per tile
        mixed = np.empty((alpha * alpha, TILE_BLOCK), dtype=x.dtype)  # (B^T d)[i, s] per tile
        acc = np.empty(TILE_BLOCK, dtype=x.dtype)
        first_task, last_task = _block_range(block, blocks, tasks)
        for task in range(first_task, last_task):
            c = task // runs
            first_tile = (task % runs) * TILE_BLOCK
            count = min(TILE_BLOCK, tiles - first_tile)
            channel = first_channel + c
            for q in range(count):
                global_row = first_row + (first_tile + q) // tiles_w
                n = global_row // tiles_h
                top = (global_row % tiles_h) * tile - pad_top
                left = ((first_tile + q) % tiles_w) * tile - pad_left
                if top >= 0 and left >= 0 and top + alpha <= in_h and left + alpha <= in_w:
                    for r in range(alpha):
                        for s in range(alpha):
                            patches[r * alpha + s, q] = x[n, channel, top + r, left + s]
                else:
                    for r in range(alpha):
                        for s in range(alpha):
                            if 0 <= top + r < in_h and 0 <= left + s < in_w:
                                patches[r * alpha + s, q] = x[n, channel, top + r, left + s]
                            else:
                                patches[r * alpha + s, q] = 0
            # Row views hoisted out of the tile loops: 1-D contiguous loops are what LLVM vectorises.
            for i in range(alpha):
                for s in range(alpha):
                    dest = mixed[i * alpha + s]
                    dest[:count] = 0
                    for r in range(alpha):
                        coefficient = input_matrix[i, r]
                        if coefficient != 0:
                            src = patches[r * alpha + s]
                            for q in range(count):
                                dest[q] += coefficient * src[q]
            for i in range(alpha):
                for j in range(alpha):
                    acc[:count] = 0
                    for s in range(alpha):
                        coefficient = input_matrix[j, s]
                        if coefficient != 0:
                            src = mixed[i * alpha + s]
                            for q in range(count):
                                acc[q] += coefficient * src[q]
                    transformed_input[i * alpha + j, c, first_tile:first_tile + count] = acc[:count]


@njit_parallel
def _transform_output(products, bias, out, first_out_channel, output_matrix, tiles_h, tiles_w,
                      first_row, threads):
    """out[n, first_out_channel + k, tile] = (A^T M[:, k, p] A) + bias for chunk tile p, cropped
    at the right/bottom edges.

    One task per (output channel, run of TILE_BLOCK tiles): A then A^T as multiply-adds over the
    run's tiles, then each tile's m x m block is scattered into the output."""
    tile, alpha = output_matrix.shape
    out_per_group, tiles = products.shape[1], products.shape[2]
    out_h, out_w = out.shape[2], out.shape[3]
    runs = (tiles + TILE_BLOCK - 1) // TILE_BLOCK
    tasks = out_per_group * runs
    blocks = _task_blocks(tasks, threads)
    for block in prange(blocks):
        across = np.empty((alpha * tile, TILE_BLOCK), dtype=out.dtype)  # (M A)[i, b] per tile
        result = np.empty((tile * tile, TILE_BLOCK), dtype=out.dtype)  # (A^T M A)[a, b] per tile
        first_task, last_task = _block_range(block, blocks, tasks)
        for task in range(first_task, last_task):
            k = task // runs
            channel = first_out_channel + k
            first_tile = (task % runs) * TILE_BLOCK
            count = min(TILE_BLOCK, tiles - first_tile)
            for i in range(alpha):
                for b in range(tile):
                    dest = across[i * tile + b]
                    dest[:count] = 0
                    for j in range(alpha):
                        coefficient = output_matrix[b, j]
                        if coefficient != 0:
                            src = products[i * alpha + j, k, first_tile:first_tile + count]
                            for q in range(count):
                                dest[q] += coefficient * src[q]
            for a in range(tile):
                for b in range(tile):
                    dest = result[a * tile + b]
                    dest[:count] = bias[channel]
                    for i in range(alpha):
                        coefficient = output_matrix[a, i]
                        if coefficient != 0:
                            src = across[i * tile + b]
                            for q in range(count):
                                dest[q] += coefficient * src[q]
            for q in range(count):
                global_row = first_row + (first_tile + q) // tiles_w
                plane = out[global_row // tiles_h, channel]
                top = (global_row % tiles_h) * tile
                left = ((first_tile + q) % tiles_w) * tile
                for a in range(min(tile, out_h - top)):
                    for b in range(min(tile, out_w - left)):
                        plane[top + a, left + b] = result[a * tile + b, q]


@njit_kernel
def _winograd_kernel(x, filters, bias, out, input_matrix, output_matrix, pad_top, pad_left,
                     groups, tiles_h, tiles_w, rows_per_chunk, threads, workspace):
    """Chunks of tile rows x groups: transform the input, alpha^2 GEMMs, transform the output.
    ``workspace`` is a flat buffer for one chunk's V followed by its M."""
    tile, alpha = output_matrix.shape
    alpha_sq, out_channels, channels = filters.shape
    out_per_group = out_channels // groups
    total_rows = x.shape[0] * tiles_h
    for first_row in range(0, total_rows, rows_per_chunk):
        rows = min(rows_per_chunk, total_rows - first_row)
        tiles = rows * tiles_w
        input_size = alpha_sq * channels * tiles
        transformed_input = workspace[:input_size].reshape((alpha_sq, channels, tiles))
        products = workspace[input_size:input_size + alpha_sq * out_per_group * tiles].reshape(
            (alpha_sq, out_per_group, tiles))
        for g in range(groups):
            _transform_input(x, g * channels, input_matrix, tile, pad_top, pad_left, tiles_h,
                             tiles_w, first_row, threads, transformed_input)
            for xi in range(alpha_sq):
                gemm(filters[xi, g * out_per_group:(g + 1) * out_per_group],
                     transformed_input[xi], products[xi], 1.0, 0.0)
            _transform_output(products, bias, out, g * out_per_group, output_matrix, tiles_h,
                              tiles_w, first_row, threads)


def forward(x, w, bias, params, *, tile: int = DEFAULT_TILE, workspace_limit: int | None = None):
    """conv2d of C-contiguous ``x`` (N, C, H, W) with 3x3 ``w``; zero padding only (see ConvParams).

    ``tile`` picks the variant (4: F(4x4, 3x3), 2: F(2x2, 3x3)); ``workspace_limit`` overrides the
    configured cap on V + M (bytes), for tests and benchmarks of the chunking."""
    reason = supports(params)
    if reason is not None:
        raise ValueError(reason)
    variant = VARIANTS[tile]
    dtype = params.dtype
    alpha = variant.alpha
    filters = np.empty((alpha * alpha, params.out_channels, params.in_channels_per_group), dtype)
    _transform_filters(w, np.array(variant.filter_matrix, dtype=np.float64), filters)
    tiles_h, tiles_w = tile_grid(params, tile)
    rows = rows_per_chunk(params, tile, workspace_limit)
    workspace = np.empty(
        alpha * alpha * (params.in_channels_per_group + params.out_channels_per_group)
        * rows * tiles_w, dtype,
    )
    out = np.empty(params.output_shape, dtype)
    bias = bias_or_zeros(bias, params.out_channels, dtype)
    _winograd_kernel(
        x, filters, bias, out,
        np.array(variant.input_matrix, dtype=dtype), np.array(variant.output_matrix, dtype=dtype),
        params.pad_top, params.pad_left, params.groups, tiles_h, tiles_w, rows, get_num_threads(),
        workspace,
    )
    return out
