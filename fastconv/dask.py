"""fastconv on Dask arrays: images larger than memory, and streams of images across a cluster.

``pip install "fastconv[dask]"``.  Importing :mod:`fastconv` never imports Dask; importing this
module does.

Every function here builds a lazy Dask graph whose blocks run fastconv's own in-memory functions
(``fastconv.correlate2d`` / ``convolve2d`` / ``conv2d`` / ``max_pool2d`` / ``avg_pool2d``, or a
``fastconv.nn`` model) on one block plus the halo the definition needs, and the result equals the
in-memory function on the whole array.  The recipe is the same for every operation:

1. **Pad the true edges** (and only them) the way the definition does: scipy.signal's ``fill`` /
   ``wrap`` / ``symm`` boundary for ``full`` and ``same``, PyTorch's ``padding_mode`` for conv2d,
   -inf or zeros for pooling.  Wrap and mirror strips are gathered from the array itself with the
   index map the in-memory padding uses (:func:`fastconv._padding.source_index`), so pads wider
   than the array (a kernel larger than the image) behave exactly as scipy's.
2. **Choose block boundaries** on the padded axes (:func:`_plan_axis`): the original chunk
   boundaries, dropping any that would leave a block shorter than the halo it supplies to a
   neighbour or producing no output (the minimal rechunk: chunks that qualify are kept, small ones
   merged into a neighbour); with a stride, boundaries are rounded down to a multiple of it so
   that block outputs tile the output exactly.
3. **Add the halo, and only it**: a valid window of extent ``span`` (the dilated kernel) and step
   ``stride`` needs ``span - stride`` rows beyond a block's own.  With stride 1 the halo is split
   as the padding is (``same`` mode: ``R // 2`` above and ``(R - 1) // 2`` below for convolution,
   mirrored for correlation), so the output keeps the input's chunks; with a larger stride it is
   all below.  Small tasks copy exactly those rows and columns out of the neighbouring blocks,
   and one task per block runs the kernel on the assembled block (:func:`_map_valid_blocks`).
   A symmetric ``depth = halo`` with ``dask.array.overlap`` followed by trimming would move up
   to twice the halo between blocks;
   its asymmetric form (``boundary="none"``) moves exactly the halo, as here, but keeps halo
   pieces as views of whole blocks and stores each padded block before the kernel runs.
4. **Run the in-memory function** on each block in ``valid`` mode (no padding, stride and
   dilation as given); block outputs tile the output exactly.

The kernel (weight, bias, model) is one key in the graph (``dask.delayed``), shared by every
block: the graph grows with the number of blocks, never with blocks x kernel bytes.  Output dtype
and chunks are computed from the arguments (no trial call on a tiny array).

Threads per task
----------------
A Dask worker runs several tasks at once, and Numba's parallel kernels use every core per call by
default, so N concurrent tasks would run N x cores threads.  Each task therefore sets Numba's
thread count (thread-local in Numba) for the duration of its kernel call:
``threads_per_task=None`` (the default) uses **one thread per task whenever tasks can run
concurrently** (a ``dask.distributed`` worker, or the threaded scheduler's pool), and fastconv's
current thread count (:func:`fastconv.get_num_threads`) when the task runs on the calling thread
(the synchronous scheduler, one task at a time).  Parallelism then comes from Dask: give workers
``threads_per_worker`` = cores.  For fewer, larger tasks pass ``threads_per_task=k`` and start
workers with ``threads_per_worker = cores // k``.  (``distributed`` already limits BLAS to one
thread in its workers through ``OMP_NUM_THREADS`` and friends.)
"""
from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import product

import dask
import dask.array as da
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
import numba
import numpy as np

from . import conv as _conv
from . import dispatch as _dispatch
from . import pooling as _pooling
from . import signal as _signal
from ._padding import MODE_CODES, source_index
from ._params import (
    SIGNAL_BOUNDARIES,
    SIGNAL_MODES,
    as_array,
    compute_dtype,
    describe_conv,
    describe_pool,
    signal_fill_value,
    signal_padding,
    signal_result_dtype,
)

__all__ = ["avg_pool2d", "conv2d", "convolve2d", "correlate2d", "max_pool2d", "predict"]


# --- threads per task -----------------------------------------------------------------------------
def _check_threads_per_task(threads_per_task):
    if threads_per_task is None:
        return None
    if isinstance(threads_per_task, (bool, np.bool_)) or not hasattr(threads_per_task, "__index__"):
        raise TypeError(f"threads_per_task must be a positive int or None, got {threads_per_task!r}")
    threads = int(threads_per_task)
    if threads < 1:
        raise ValueError(f"threads_per_task must be a positive int or None, got {threads_per_task!r}")
    return threads


def _threads_for_this_task(threads_per_task):
    """The thread count a task uses (see the module docstring): the requested one, else one thread
    unless the task runs on the main thread, where nothing else runs alongside it."""
    if threads_per_task is not None:
        # a worker on another machine may have fewer threads than the client's
        return min(threads_per_task, numba.config.NUMBA_NUM_THREADS)
    if threading.current_thread() is threading.main_thread():
        return numba.get_num_threads()
    return 1


@contextmanager
def _numba_threads(threads_per_task):
    """Numba's thread count is thread-local: setting it here affects this task's calls only."""
    previous = numba.get_num_threads()
    numba.set_num_threads(_threads_for_this_task(threads_per_task))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


# --- checks shared by every entry point ----------------------------------------------------------
def _check_dask_array(array, name, function, ndims, in_memory_twin):
    if not isinstance(array, da.Array):
        raise TypeError(
            f"fastconv.dask.{function}: {name} must be a dask.array.Array, got "
            f"{type(array).__module__}.{type(array).__name__}; for in-memory arrays use "
            f"fastconv.{in_memory_twin} (or wrap it with dask.array.from_array)"
        )
    if array.ndim not in ndims:
        wanted = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(
            f"fastconv.dask.{function}: {name} must be {wanted}, got shape {array.shape}"
        )
    if any(np.isnan(size) for size in array.shape):
        raise ValueError(
            f"fastconv.dask.{function}: {name} has unknown chunk sizes (shape {array.shape}); "
            "call its compute_chunk_sizes() first"
        )


def _in_memory(value, name, function):
    """The kernel-side arguments (kernel, weight, bias) are small and live in memory; a private
    copy, so that changing the caller's array after building the graph cannot change the result."""
    if isinstance(value, da.Array):
        raise TypeError(
            f"fastconv.dask.{function}: {name} must be an in-memory array (it is sent to every "
            f"block), got a dask array of shape {value.shape}; compute it first"
        )
    return np.array(value, copy=True)


def _meta(dtype, ndim):
    return np.empty((0,) * ndim, dtype=dtype)


# --- step 1: padding the true edges --------------------------------------------------------------
def _edge_strip(array, axis, positions, mode, fill_value):
    """The samples at ``positions`` (outside ``[0, size)``) of ``array`` padded along ``axis``."""
    if mode in ("fill", "zeros"):
        shape = list(array.shape)
        shape[axis] = len(positions)
        chunks = list(array.chunks)
        chunks[axis] = (len(positions),)
        return da.full(tuple(shape), fill_value, dtype=array.dtype, chunks=tuple(chunks))
    size = array.shape[axis]
    code = MODE_CODES[mode]
    sources = np.array([source_index(int(i), size, code) for i in positions], dtype=np.int64)
    return da.take(array, sources, axis=axis)


def _pad_axis(array, axis, before, after, mode, fill_value=0):
    if before == 0 and after == 0:
        return array
    size = array.shape[axis]
    pieces = []
    if before:
        pieces.append(_edge_strip(array, axis, range(-before, 0), mode, fill_value))
    pieces.append(array)
    if after:
        pieces.append(_edge_strip(array, axis, range(size, size + after), mode, fill_value))
    return da.concatenate(pieces, axis=axis)


def _pad_plane(array, pads, mode, fill_value=0):
    """Pad the last two axes by ``pads`` = (top, bottom, left, right) with ``mode`` (a key of
    :data:`fastconv._padding.MODE_CODES`); rows first, so the corners read ``in[src(i), src(j)]``
    as the in-memory padding does."""
    top, bottom, left, right = pads
    array = _pad_axis(array, array.ndim - 2, top, bottom, mode, fill_value)
    return _pad_axis(array, array.ndim - 1, left, right, mode, fill_value)


# --- step 2: block boundaries ---------------------------------------------------------------------
@dataclass(frozen=True)
class AxisPlan:
    """How one padded axis is cut into blocks: each block's own rows, the rows of output it
    produces, and the halo it reads from the block before (``above``) and after (``below``)."""

    block_sizes: tuple
    output_sizes: tuple
    above: int
    below: int


def _plan_axis(padded_size, chunks, pad_before, span, stride) -> AxisPlan:
    """Cut one padded axis (the original ``chunks`` with ``pad_before`` rows in front) into blocks
    for a valid sliding window of extent ``span`` and step ``stride``.

    A block whose first output row is ``o`` reads padded rows ``o * stride`` onwards, so the halo
    is ``span - stride`` rows in all.  With stride 1 it is split as the padding is (``above`` =
    ``pad_before``, clipped to the halo): block boundaries stay where the original chunk boundaries
    are, so ``same`` mode returns the input's chunks.  With a larger stride the whole halo is below
    and every block starts on a multiple of the stride, so block outputs tile the output.

    The original boundaries are kept except where a block would be shorter than the halo it must
    supply to a neighbour (Dask takes a halo from the adjacent block only) or would produce no
    output: those are merged into a neighbour, the minimal rechunk.
    """
    halo = max(span - stride, 0)
    above = min(pad_before, halo) if stride == 1 else 0
    below = halo - above
    shortest = max(above, below, 1)
    last_shortest = max(shortest, span - above)  # the last block's output is at least one row
    starts = [0]
    for boundary in np.cumsum(chunks)[:-1] + pad_before:
        boundary = int(boundary) // stride * stride
        first_shortest = shortest if len(starts) > 1 else max(shortest, above + 1)
        if boundary - starts[-1] >= first_shortest and padded_size - boundary >= last_shortest:
            starts.append(boundary)
    output_end = (padded_size - span) // stride + 1
    output_starts = [(start - above) // stride for start in starts[1:]]
    output_bounds = [0] + output_starts + [output_end]
    return AxisPlan(
        block_sizes=tuple(np.diff(starts + [padded_size]).tolist()),
        output_sizes=tuple(np.diff(output_bounds).tolist()),
        above=above, below=below,
    )


# --- steps 3 and 4: the halo, then the in-memory function on every block --------------------------
def _halo_pieces(plan, block):
    """``[(neighbour, slice), ...]`` along one axis: what block ``block`` reads, in order — the
    last ``above`` rows of the block before, its own rows, the first ``below`` of the block after
    (none at the array's edges, which are already padded)."""
    pieces = []
    if plan.above and block > 0:
        pieces.append((block - 1, slice(plan.block_sizes[block - 1] - plan.above, None)))
    pieces.append((block, slice(None)))
    if plan.below and block < len(plan.block_sizes) - 1:
        pieces.append((block + 1, slice(0, plan.below)))
    return pieces


def _copy_of(block, row_slice, column_slice):
    """A halo piece, copied: a view would keep the whole neighbouring block in memory."""
    return np.array(block[..., row_slice, column_slice], copy=True)


def _run_on_block_with_halo(block_function, pieces, *args):
    """Assemble one block and its halo (rows of pieces, for ``np.block``), then run
    ``block_function`` on it."""
    whole = np.block(pieces) if len(pieces) > 1 or len(pieces[0]) > 1 else pieces[0][0]
    return block_function(whole, *args)


def _map_valid_blocks(padded, plans, block_function, *args, dtype, channels=None, **kwargs):
    """Rechunk ``padded`` to the planned blocks of its last two axes and run ``block_function``,
    which must compute a valid-mode result, on each block plus its halo.  The leading axes keep
    their chunks (the block function keeps their sizes, except axis 1 when ``channels`` is given).

    Each halo piece is copied out of its block by a task of its own, which runs where that block
    is, so only the halo crosses the network between workers and the copy (not a view) lets the
    block go as soon as its pieces are taken.  Assembling the block with its halo and running the
    in-memory function is one task, so no padded copy of a block is ever stored.  (This is what
    ``dask.array.overlap`` does with ``boundary="none"``, except for the copies and the fused last
    step.)  ``args`` may hold Delayed objects (the kernel): one key each, shared by every task.
    """
    h_plan, w_plan = plans
    target = padded.chunks[:-2] + (h_plan.block_sizes, w_plan.block_sizes)
    if target != padded.chunks:
        # Merging a few neighbouring chunks is local work for plain tasks; on a distributed
        # cluster Dask may pick its P2P rechunk, an all-to-all barrier that holds (and writes to
        # disk) the whole array before any block proceeds.
        padded = padded.rechunk(target, method="tasks")
    out_chunks = padded.chunks[:-2] + (h_plan.output_sizes, w_plan.output_sizes)
    if channels is not None:
        out_chunks = out_chunks[:1] + ((channels,),) + out_chunks[2:]
    function = partial(block_function, **kwargs) if kwargs else block_function
    arg_keys = [arg.key if isinstance(arg, Delayed) else arg for arg in args]
    token = tokenize(padded, block_function, kwargs, *args)
    name = "fastconv-" + block_function.__name__.strip("_").replace("_", "-") + "-" + token
    halo_name = "fastconv-halo-" + token
    graph = {}
    for index in product(*(range(n) for n in padded.numblocks)):
        *leading, row_block, column_block = index
        pieces = []
        for row, row_slice in _halo_pieces(h_plan, row_block):
            pieces.append([])
            for column, column_slice in _halo_pieces(w_plan, column_block):
                source = (padded.name, *leading, row, column)
                if (row, column) == (row_block, column_block):
                    pieces[-1].append(source)
                    continue
                piece = (halo_name, *index, row - row_block, column - column_block)
                graph[piece] = (_copy_of, source, row_slice, column_slice)
                pieces[-1].append(piece)
        graph[(name, *index)] = (_run_on_block_with_halo, function, pieces, *arg_keys)
    layer_graph = HighLevelGraph.from_collections(
        name, graph, dependencies=[padded] + [arg for arg in args if isinstance(arg, Delayed)])
    return da.Array(layer_graph, name, chunks=out_chunks, meta=_meta(dtype, padded.ndim))


# --- scipy.signal: correlate2d / convolve2d -------------------------------------------------------
def correlate2d(in1, in2, mode="full", boundary="fill", fillvalue=0, *, algorithm="auto",
                threads_per_task=None):
    """``scipy.signal.correlate2d`` of a 2-D dask array ``in1`` with an in-memory kernel ``in2``.

    Returns a lazy dask array equal to ``scipy.signal.correlate2d(in1.compute(), in2, ...)`` (and
    to :func:`fastconv.correlate2d`), of the same dtype, for every mode and boundary and any
    chunking of ``in1``.  Every block runs :func:`fastconv.correlate2d` in ``valid`` mode on the
    block plus the halo the kernel needs.  ``algorithm`` is passed to every block's call;
    ``threads_per_task`` is described in the module docstring.
    """
    return _signal_2d("correlate2d", in1, in2, mode, boundary, fillvalue, algorithm,
                      threads_per_task, flip=False)


def convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0, *, algorithm="auto",
               threads_per_task=None):
    """``scipy.signal.convolve2d`` of a 2-D dask array ``in1`` with an in-memory kernel ``in2``;
    see :func:`correlate2d` (blocks run :func:`fastconv.convolve2d`)."""
    return _signal_2d("convolve2d", in1, in2, mode, boundary, fillvalue, algorithm,
                      threads_per_task, flip=True)


def _check_signal_arguments(function, in1, in2, mode, boundary):
    _check_dask_array(in1, "in1", function, (2,), function)
    if in2.ndim != 2:
        raise ValueError(
            f"fastconv.dask.{function}: in2 must be a 2-D array, got shape {in2.shape} "
            f"(in1 has shape {in1.shape})"
        )
    if not isinstance(mode, str) or mode not in SIGNAL_MODES:
        raise ValueError(f"Acceptable mode flags are 'valid', 'same', or 'full'; got {mode!r}.")
    if not isinstance(boundary, str) or boundary not in SIGNAL_BOUNDARIES:
        raise ValueError(
            "Acceptable boundary flags are 'fill', 'circular' (or 'wrap'), and 'symmetric' "
            f"(or 'symm'); got {boundary!r}."
        )


def _signal_block(block, kernel, *, function, algorithm, threads_per_task):
    with _numba_threads(threads_per_task):
        return function(block, kernel, "valid", algorithm=algorithm)


def _whole_signal(array, kernel, *, function, mode, boundary, fillvalue, algorithm,
                  threads_per_task):
    with _numba_threads(threads_per_task):
        return function(array, kernel, mode, boundary, fillvalue, algorithm=algorithm)


def _signal_2d(function, in1, in2, mode, boundary, fillvalue, algorithm, threads_per_task, flip):
    in2 = _in_memory(in2, "in2", function)
    _check_signal_arguments(function, in1, in2, mode, boundary)
    _dispatch.check_algorithm(algorithm)
    threads_per_task = _check_threads_per_task(threads_per_task)
    boundary = SIGNAL_BOUNDARIES[boundary]
    result_dtype = signal_result_dtype(_meta(in1.dtype, 2), in2, function)
    fill = signal_fill_value(fillvalue, result_dtype) if boundary == "fill" else None
    in_memory_function = getattr(_signal, function)
    kernel = dask.delayed(in2, pure=True)

    if _signal._valid_swap_needed(mode, in1.shape, in2.shape):
        # scipy swaps the inputs when in2 is the larger: then in1 is smaller than the in-memory
        # kernel in both dimensions, and one task computes it (fastconv handles the swap).
        return da.map_blocks(
            _whole_signal, in1.rechunk(-1), kernel, function=in_memory_function, mode=mode,
            boundary=boundary, fillvalue=fillvalue, algorithm=algorithm,
            threads_per_task=threads_per_task, chunks=((in2.shape[0] - in1.shape[0] + 1,),
                                                       (in2.shape[1] - in1.shape[1] + 1,)),
            dtype=result_dtype, meta=_meta(result_dtype, 2))
    out_shape = _signal._output_shape(mode, in1.shape, in2.shape)
    if min(out_shape) <= 0 or in2.size == 0:
        # an empty output, or a sum over an empty kernel: zeros, as scipy
        return da.zeros(tuple(max(n, 0) for n in out_shape), dtype=result_dtype)
    if in1.size == 0 and boundary != "fill":
        raise ValueError(
            f"fastconv.dask.{function}: boundary={boundary!r} needs a non-empty in1 to wrap or "
            f"mirror, got shape {in1.shape}"
        )

    pads = signal_padding(mode, in1.shape, in2.shape, flip)
    # Blocks run in the result dtype, so that a fill strip holds the fill value converted as scipy
    # converts it (to the result dtype, not in1's).
    padded = _pad_plane(in1.astype(result_dtype), pads, boundary, None if fill is None else fill[()])
    plans = [_plan_axis(padded.shape[axis], in1.chunks[axis], pads[2 * axis], in2.shape[axis], 1)
             for axis in (0, 1)]
    return _map_valid_blocks(
        padded, plans, _signal_block, kernel, dtype=result_dtype, function=in_memory_function, algorithm=algorithm,
        threads_per_task=threads_per_task,
    )


# --- conv2d -------------------------------------------------------------------------------------
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", algorithm="auto", threads_per_task=None):
    """:func:`fastconv.conv2d` (PyTorch semantics) of an (N, C, H, W) or (C, H, W) dask array with
    an in-memory ``weight`` (and ``bias``).

    Batch chunks run independently; the channel axis is rechunked to one chunk (every output
    channel needs all input channels of its group); H and W blocks get the stride-aware halo
    ``dilation * (kernel - 1) + 1 - stride`` on their bottom/right side, every block but the last
    starting on a multiple of the stride.  Arguments are validated (and ``padding="same"`` resolved)
    by the same code as the in-memory function; the result equals it for every padding mode.
    """
    _check_dask_array(input, "input", "conv2d", (3, 4), "conv2d")
    weight = as_array(_in_memory(weight, "weight", "conv2d"), "weight")
    bias = None if bias is None else as_array(_in_memory(bias, "bias", "conv2d"), "bias")
    input_meta = as_array(_meta(input.dtype, input.ndim), "input")
    _dispatch.check_algorithm(algorithm)
    threads_per_task = _check_threads_per_task(threads_per_task)
    params, batched = describe_conv(
        input.shape, weight.shape, None if bias is None else bias.shape,
        compute_dtype(input_meta, weight, bias), stride, padding, dilation, groups, padding_mode,
        whole_output_in_memory=False,
    )
    x = (input if batched else input[np.newaxis]).astype(params.dtype)
    x = x.rechunk({1: -1})
    pads = (params.pad_top, params.pad_bottom, params.pad_left, params.pad_right)
    padded = _pad_plane(x, pads, params.padding_mode, 0)
    plans = [
        _plan_axis(params.padded_h, x.chunks[2], params.pad_top, params.dilated_kernel_h,
                   params.stride_h),
        _plan_axis(params.padded_w, x.chunks[3], params.pad_left, params.dilated_kernel_w,
                   params.stride_w),
    ]
    out = _map_valid_blocks(
        padded, plans, _conv_block, dask.delayed(weight.astype(params.dtype), pure=True),
        None if bias is None else dask.delayed(bias.astype(params.dtype), pure=True),
        channels=params.out_channels, dtype=params.dtype, stride=(params.stride_h, params.stride_w),
        dilation=(params.dilation_h, params.dilation_w), groups=params.groups,
        algorithm=algorithm, threads_per_task=threads_per_task,
    )
    return out if batched else out[0]


def _conv_block(block, weight, bias, *, stride, dilation, groups, algorithm, threads_per_task):
    with _numba_threads(threads_per_task):
        return _conv.conv2d(block, weight, bias, stride, 0, dilation, groups, algorithm=algorithm)


# --- pooling ----------------------------------------------------------------------------------------
def _pool_plans(params, x, pad_h, pad_w):
    """Plans for a pooling input padded by ``pad`` on both sides plus, in ``ceil_mode``, whatever
    the last window reaches beyond the padding; returns ``(pads, plans)``."""
    span_h = params.dilation_h * (params.kernel_h - 1) + 1
    span_w = params.dilation_w * (params.kernel_w - 1) + 1
    reach_h = (params.out_h - 1) * params.stride_h + span_h
    reach_w = (params.out_w - 1) * params.stride_w + span_w
    bottom = max(pad_h, reach_h - params.in_h - pad_h)
    right = max(pad_w, reach_w - params.in_w - pad_w)
    pads = (pad_h, bottom, pad_w, right)
    plans = [
        _plan_axis(params.in_h + pad_h + bottom, x.chunks[2], pad_h, span_h, params.stride_h),
        _plan_axis(params.in_w + pad_w + right, x.chunks[3], pad_w, span_w, params.stride_w),
    ]
    return pads, plans


def _pool_input(input, function, kernel_size, stride, padding, dilation, ceil_mode):
    _check_dask_array(input, "input", function, (3, 4), function)
    input_meta = as_array(_meta(input.dtype, input.ndim), "input")
    params, batched = describe_pool(input.shape, compute_dtype(input_meta), kernel_size, stride,
                                    padding, dilation, ceil_mode, op=function)
    x = (input if batched else input[np.newaxis]).astype(params.dtype)
    return params, batched, x


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
               threads_per_task=None):
    """:func:`fastconv.max_pool2d` (PyTorch semantics) of an (N, C, H, W) or (C, H, W) dask array.

    The padding is -inf, which is what the in-memory kernel's clipped windows amount to (NaN still
    wins, an all-padding window is -inf); ``ceil_mode``'s last partial window is padded with -inf
    too.  ``return_indices`` is not offered: flat indices into one plane need the block's offset.
    """
    threads_per_task = _check_threads_per_task(threads_per_task)
    params, batched, x = _pool_input(input, "max_pool2d", kernel_size, stride, padding, dilation,
                                     ceil_mode)
    pads, plans = _pool_plans(params, x, params.pad_h, params.pad_w)
    padded = _pad_plane(x, pads, "fill", -np.inf)
    out = _map_valid_blocks(
        padded, plans, _max_pool_block, dtype=params.dtype, kernel_size=(params.kernel_h, params.kernel_w),
        stride=(params.stride_h, params.stride_w),
        dilation=(params.dilation_h, params.dilation_w), threads_per_task=threads_per_task,
    )
    return out if batched else out[0]


def _max_pool_block(block, *, kernel_size, stride, dilation, threads_per_task):
    with _numba_threads(threads_per_task):
        return _pooling.max_pool2d(block, kernel_size, stride, 0, dilation)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, threads_per_task=None):
    """:func:`fastconv.avg_pool2d` (PyTorch semantics) of an (N, C, H, W) or (C, H, W) dask array.

    Blocks compute window sums (the in-memory kernel with ``divisor_override=1`` on the
    zero-padded block); the divisor depends only on where a window lies relative to the array's
    true edges (clipped to the padded input, or to the input with ``count_include_pad=False``), so
    it is a product of one vector per axis, divided in lazily.
    """
    threads_per_task = _check_threads_per_task(threads_per_task)
    divisor = _pooling._check_divisor(divisor_override)
    params, batched, x = _pool_input(input, "avg_pool2d", kernel_size, stride, padding, 1,
                                     ceil_mode)
    pads, plans = _pool_plans(params, x, params.pad_h, params.pad_w)
    padded = _pad_plane(x, pads, "fill", 0)
    sums = _map_valid_blocks(
        padded, plans, _sum_pool_block, dtype=params.dtype, kernel_size=(params.kernel_h, params.kernel_w),
        stride=(params.stride_h, params.stride_w), threads_per_task=threads_per_task,
    )
    if divisor:
        divisors = np.asarray(divisor, dtype=params.dtype)
    else:
        rows = _window_counts(params.out_h, params.stride_h, params.pad_h, params.kernel_h,
                              params.in_h, count_include_pad)
        cols = _window_counts(params.out_w, params.stride_w, params.pad_w, params.kernel_w,
                              params.in_w, count_include_pad)
        divisors = (da.from_array(rows.astype(params.dtype), chunks=(plans[0].output_sizes,))[:, None]
                    * da.from_array(cols.astype(params.dtype), chunks=(plans[1].output_sizes,))[None, :])
    out = sums / divisors
    return out if batched else out[0]


def _sum_pool_block(block, *, kernel_size, stride, threads_per_task):
    with _numba_threads(threads_per_task):
        return _pooling.avg_pool2d(block, kernel_size, stride, 0, divisor_override=1)


def _window_counts(out_size, stride, pad, kernel, size, count_include_pad):
    """Per output position of one axis, the window length PyTorch divides by (the in-memory
    kernel's ``_window_bounds``); 1 for a window with no sample in the input, whose sum is 0."""
    start = np.arange(out_size, dtype=np.int64) * stride - pad
    end = np.minimum(start + kernel, size + pad)
    if count_include_pad:
        counts = end - start
    else:
        counts = np.minimum(end, size) - np.maximum(start, 0)
    empty = np.minimum(end, size) <= np.maximum(start, 0)
    return np.where(empty, 1, counts)


# --- inference of a fastconv.nn model ----------------------------------------------------------------
def predict(model, images, batch_size=None, *, threads_per_task=None):
    """``model.forward`` (in evaluation mode) over a dask array of images, one task per batch.

    ``images`` is (N, ...) as the model takes it (N, C, H, W for convolutional models); it is
    rechunked to ``batch_size`` samples per block (default: its own batch chunks) and one chunk on
    every other axis.  A copy of ``model``, put in evaluation mode, is ONE key of the graph: the
    scheduler ships it to each worker once, not with every task.  The output's shape and dtype come
    from the model's forward on an empty batch (fastconv's layers accept N = 0 without running a
    kernel), so no sample is computed before ``compute``.
    """
    _check_dask_array(images, "images", "predict", (2, 3, 4, 5), "nn model's forward")
    if not callable(getattr(model, "forward", None)):
        raise TypeError(f"fastconv.dask.predict: model must have a forward method, got {model!r}")
    threads_per_task = _check_threads_per_task(threads_per_task)
    if batch_size is not None:
        if isinstance(batch_size, (bool, np.bool_)) or not hasattr(batch_size, "__index__"):
            raise TypeError(f"batch_size must be a positive int or None, got {batch_size!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        images = images.rechunk({0: int(batch_size)})
    images = images.rechunk({axis: -1 for axis in range(1, images.ndim)})
    inference_model = copy.deepcopy(model)
    if callable(getattr(inference_model, "eval", None)):
        inference_model.eval()
    empty_output = np.asarray(inference_model.forward(np.empty((0,) + images.shape[1:],
                                                               dtype=images.dtype)))
    out_chunks = (images.chunks[0],) + tuple((n,) for n in empty_output.shape[1:])
    return da.map_blocks(
        _predict_block, images, dask.delayed(inference_model, pure=False),
        chunks=out_chunks, dtype=empty_output.dtype, meta=_meta(empty_output.dtype,
                                                                empty_output.ndim),
        drop_axis=list(range(empty_output.ndim, images.ndim)) or None,
        threads_per_task=threads_per_task,
    )


def _predict_block(batch, model, *, threads_per_task):
    with _numba_threads(threads_per_task):
        return np.asarray(model.forward(batch))
