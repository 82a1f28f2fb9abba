"""Explicit SIMD vectors for Numba kernels: a vector type and the operations a register-blocked
micro-kernel needs (zeros, load, masked load, broadcast, fused multiply-add, store, masked store),
plus the lane swap that complex arithmetic on interleaved (re, im) values needs.

Why: LLVM's loop vectoriser keeps a loop's running values in registers only when they are
reductions.  A convolution tile that accumulates *many* output vectors across a loop over taps
(``acc[c][j] += w[t, c] * x[t + j]``) is written in plain Numba as arrays in memory, so every
multiply-add also loads and stores its accumulator: the arithmetic units wait on L1.  With the
accumulators as SSA *vector values* (``<32 x float>`` locals), LLVM keeps them in registers for
the whole tap loop, as a hand-written BLAS micro-kernel does.

A vector is sized in bytes, not lanes, so one kernel serves float32 and float64 with the same
register footprint: ``load(array, start, 128)`` is 32 float32 or 16 float64 values (two AVX-512
registers, four AVX2 ones; LLVM splits a wide vector into the target's registers).  The byte
count must be a compile-time constant (a module-level integer) and a power of two: LLVM's type
legaliser scalarises odd widths (docs/measurements.md).

Loads and stores are unaligned and unchecked: the caller guarantees ``array[start:start + lanes]``
lies inside the array (``load_first`` reads only the first ``count`` lanes, for a tail).  Arrays
must be 1-D, C-contiguous, float32 or float64.
"""
from __future__ import annotations

import functools
import operator

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.core.extending import (NativeValue, intrinsic, models, overload, overload_attribute,
                                    register_model, typeof_impl, unbox)

from ._cpu import TileShape

__all__ = ["Vector", "zeros", "load", "load_first", "store", "store_first", "broadcast", "fma",
           "swap_pairs", "Tile", "TileGeometry", "tile_zeros", "tile_fma", "tile_fma_first", "tile_fma_gathered",
           "tile_store"]


class Vector(types.Type):
    """Numba type of an LLVM vector: ``lanes`` values of ``dtype`` (a float type)."""

    def __init__(self, dtype, lanes):
        self.dtype = dtype
        self.lanes = lanes
        super().__init__(name=f"Vector({dtype}, {lanes})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


_I32 = ir.IntType(32)


def _vector_of(dtype, nbytes, what):
    """The Vector type of ``nbytes`` (an integer literal) of ``dtype``, or a TypingError."""
    if not isinstance(dtype, types.Float):
        raise TypingError(f"{what}: float32 or float64 values only, got {dtype}")
    if not isinstance(nbytes, types.IntegerLiteral):
        raise TypingError(f"{what}: the vector's byte count must be a compile-time constant")
    size = nbytes.literal_value
    itemsize = dtype.bitwidth // 8
    if size < itemsize or size & (size - 1):
        raise TypingError(f"{what}: the byte count must be a power of two >= {itemsize}, got {size}")
    return Vector(dtype, size // itemsize)


def _check_array(array, what):
    if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C"):
        raise TypingError(f"{what}: needs a 1-D C-contiguous array, got {array}")


def _element_pointer(context, builder, array_type, array, index_type, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [context.cast(builder, index, index_type, types.intp)])


def _splat(builder, vector_type, scalar):
    lanes = vector_type.count
    single = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(single, ir.Constant(vector_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))


def _intrinsic_suffix(vector_type):
    return f"v{vector_type.count}{vector_type.element.intrinsic_name}"


def _first_lanes_mask(builder, lanes, count_value):
    index_vector = ir.VectorType(count_value.type, lanes)
    return builder.icmp_signed("<", ir.Constant(index_vector, list(range(lanes))),
                               _splat(builder, index_vector, count_value))


@intrinsic
def zeros(typingctx, dtype, nbytes):
    """A vector of ``nbytes`` bytes of zeros; ``dtype`` an array's ``.dtype`` or a NumPy float type."""
    if isinstance(dtype, types.DType):
        element = dtype.dtype
    elif isinstance(dtype, types.NumberClass):
        element = dtype.instance_type
    else:
        element = dtype
    vector = _vector_of(element, nbytes, "zeros")

    def codegen(context, builder, signature, args):
        return ir.Constant(context.get_value_type(vector), None)

    return vector(dtype, nbytes), codegen


@intrinsic
def load(typingctx, array, start, nbytes):
    """``array[start:start + lanes]`` as a vector (unaligned; not bounds-checked)."""
    _check_array(array, "load")
    vector = _vector_of(array.dtype, nbytes, "load")

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        llvm_vector = context.get_value_type(vector)
        return builder.load(builder.bitcast(pointer, llvm_vector.as_pointer()),
                            align=array.dtype.bitwidth // 8)

    return vector(array, start, nbytes), codegen


@intrinsic
def load_first(typingctx, array, start, nbytes, count):
    """``array[start:start + count]`` in the first ``count`` lanes, zeros after; the memory behind
    the other lanes is not touched (a masked load), so a tail can end at the array's end."""
    _check_array(array, "load_first")
    vector = _vector_of(array.dtype, nbytes, "load_first")
    if not isinstance(count, types.Integer):
        raise TypingError(f"load_first: count must be an integer, got {count}")

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        count_value = context.cast(builder, args[3], signature.args[3], types.intp)
        llvm_vector = context.get_value_type(vector)
        mask = _first_lanes_mask(builder, vector.lanes, count_value)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(llvm_vector, [pointer.type, _I32, mask.type, llvm_vector]),
            f"llvm.masked.load.{_intrinsic_suffix(llvm_vector)}.p0")
        alignment = ir.Constant(_I32, array.dtype.bitwidth // 8)
        return builder.call(function, [pointer, alignment, mask, ir.Constant(llvm_vector, None)])

    return vector(array, start, nbytes, count), codegen


@intrinsic
def store(typingctx, array, start, value):
    """``array[start:start + lanes] = value`` (unaligned; not bounds-checked)."""
    _check_array(array, "store")
    if not isinstance(value, Vector) or value.dtype != array.dtype:
        raise TypingError(f"store: value must be a vector of {array.dtype}, got {value}")

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        vector_pointer = builder.bitcast(pointer, args[2].type.as_pointer())
        builder.store(args[2], vector_pointer, align=array.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(array, start, value), codegen


@intrinsic
def store_first(typingctx, array, start, value, count):
    """``array[start:start + count] = value[:count]`` (a masked store): the memory behind the other
    lanes is neither read nor written, so a tail can end where the array (or its row) ends."""
    _check_array(array, "store_first")
    if not isinstance(value, Vector) or value.dtype != array.dtype:
        raise TypingError(f"store_first: value must be a vector of {array.dtype}, got {value}")
    if not isinstance(count, types.Integer):
        raise TypingError(f"store_first: count must be an integer, got {count}")

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        llvm_vector = args[2].type
        count_value = context.cast(builder, args[3], signature.args[3], types.intp)
        mask = _first_lanes_mask(builder, value.lanes, count_value)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [llvm_vector, pointer.type, _I32, mask.type]),
            f"llvm.masked.store.{_intrinsic_suffix(llvm_vector)}.p0")
        builder.call(function, [args[2], pointer, ir.Constant(_I32, array.dtype.bitwidth // 8), mask])
        return context.get_dummy_value()

    return types.none(array, start, value, count), codegen


@intrinsic
def swap_pairs(typingctx, value):
    """Lanes (0, 1, 2, 3, ...) as (1, 0, 3, 2, ...): the (im, re) of interleaved complex values, the
    one shuffle a complex product ``x * w = x * (wr, wr) + swap(x) * (-wi, wi)`` needs."""
    if not isinstance(value, Vector) or value.lanes % 2:
        raise TypingError(f"swap_pairs: a vector of an even number of lanes, got {value}")

    def codegen(context, builder, signature, args):
        order = [lane ^ 1 for lane in range(value.lanes)]
        return builder.shuffle_vector(args[0], ir.Constant(args[0].type, ir.Undefined),
                                      ir.Constant(ir.VectorType(_I32, value.lanes), order))

    return value(value), codegen


@intrinsic
def broadcast(typingctx, scalar, nbytes):
    """A vector of ``nbytes`` bytes with every lane ``scalar``."""
    vector = _vector_of(scalar, nbytes, "broadcast")

    def codegen(context, builder, signature, args):
        return _splat(builder, context.get_value_type(vector), args[0])

    return vector(scalar, nbytes), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` lane by lane, fused (one rounding): llvm.fma."""
    if not (isinstance(a, Vector) and a == b == c):
        raise TypingError(f"fma: three vectors of one type, got {a}, {b}, {c}")

    def codegen(context, builder, signature, args):
        llvm_vector = args[0].type
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(llvm_vector, [llvm_vector] * 3),
            f"llvm.fma.{_intrinsic_suffix(llvm_vector)}")
        return builder.call(function, args)

    return a(a, b, c), codegen


# --- register tiles ------------------------------------------------------------------------------
# A tile is ``channels x vectors`` accumulator vectors: output channel c's positions p * lanes ..
# (p + 1) * lanes - 1 in vector (c, p).  Its shape is part of its *type*: a ``TileShape`` passed to a
# kernel is typed ``TileGeometry(channels, vectors, bytes)``, so each shape is its own compiled and
# cached specialisation (a module-level constant would be frozen into Numba's cache).  The tile is an
# LLVM array of vectors whose elements are only ever addressed by constant indices: after inlining,
# LLVM's SROA turns it into ``channels * vectors`` separate registers, as in a hand-written
# micro-kernel.  One update is an outer product: ``vectors`` position loads, ``channels`` weight
# broadcasts, ``channels * vectors`` fused multiply-adds.
class TileGeometry(types.Type):
    """Numba type of a ``fastconv._cpu.TileShape`` argument: the shape lives in the type."""

    def __init__(self, channels, vectors, vector_bytes):
        self.channels, self.vectors, self.vector_bytes = channels, vectors, vector_bytes
        super().__init__(name=f"TileGeometry({channels}x{vectors}x{vector_bytes})")


@typeof_impl.register(TileShape)
def _typeof_tile_shape(value, context):
    return _tile_geometry(value.channels, value.vectors, value.vector_bytes)


@functools.lru_cache(maxsize=None)
def _tile_geometry(channels, vectors, vector_bytes):
    # memoised: Numba types every argument on every call, and building a Type (its name, its
    # interning) cost more than a small layer's kernel
    return TileGeometry(channels, vectors, vector_bytes)


register_model(TileGeometry)(models.OpaqueModel)


@unbox(TileGeometry)
def _unbox_tile_geometry(typ, obj, c):
    return NativeValue(c.context.get_constant_null(typ))  # nothing to carry: the type says it all


class Tile(types.Type):
    """Numba type of a register tile of ``dtype``: ``channels x vectors`` vectors of ``lanes``."""

    def __init__(self, dtype, channels, vectors, lanes):
        self.dtype, self.channels, self.vectors, self.lanes = dtype, channels, vectors, lanes
        super().__init__(name=f"Tile({dtype}, {channels}x{vectors}x{lanes})")


@register_model(Tile)
class _TileModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        vector = ir.VectorType(element, fe_type.lanes)
        super().__init__(dmm, fe_type, ir.ArrayType(vector, fe_type.channels * fe_type.vectors))


@intrinsic
def tile_zeros(typingctx, dtype, geometry):
    """A tile of zeros of ``dtype`` (an array's ``.dtype``) shaped by ``geometry`` (a TileShape)."""
    element = dtype.dtype if isinstance(dtype, types.DType) else dtype
    if not isinstance(geometry, TileGeometry):
        raise TypingError(f"tile_zeros: geometry must be a TileShape, got {geometry}")
    vector = _vector_of(element, types.IntegerLiteral(geometry.vector_bytes), "tile_zeros")
    tile = Tile(element, geometry.channels, geometry.vectors, vector.lanes)

    def codegen(context, builder, signature, args):
        return ir.Constant(context.get_value_type(tile), None)

    return tile(dtype, geometry), codegen


def _check_tile_operands(tile, x, w, what):
    if not isinstance(tile, Tile):
        raise TypingError(f"{what}: needs a tile, got {tile}")
    _check_array(x, what)
    _check_array(w, what)
    if x.dtype != tile.dtype or w.dtype != tile.dtype:
        raise TypingError(f"{what}: positions, weights and tile must share a dtype, got "
                          f"{x.dtype}, {w.dtype}, {tile.dtype}")


def _outer_fma(context, builder, tile_type, accumulators, x_vectors, w_pointers):
    """accumulators[c, p] += broadcast(*w_pointers[c]) * x_vectors[p], as a new tile value."""
    vector_type = x_vectors[0].type
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector_type, [vector_type] * 3),
        f"llvm.fma.{_intrinsic_suffix(vector_type)}")
    result = accumulators
    for c in range(tile_type.channels):
        weight = _splat(builder, vector_type, builder.load(w_pointers[c]))
        for p in range(tile_type.vectors):
            index = c * tile_type.vectors + p
            updated = builder.call(function, [x_vectors[p], weight, builder.extract_value(result, index)])
            result = builder.insert_value(result, updated, index)
    return result


def _adjacent(builder, pointer, count):
    """Pointers to ``count`` adjacent values from ``pointer`` (a tile's broadcast weights)."""
    return [builder.gep(pointer, [ir.Constant(ir.IntType(64), c)]) for c in range(count)]


def _load_tile_vectors(builder, tile_type, x_pointer, vector_type):
    """The tile's ``vectors`` unaligned vector loads from ``x_pointer`` onwards."""
    vectors = []
    for p in range(tile_type.vectors):
        pointer = builder.gep(x_pointer, [ir.Constant(ir.IntType(64), p * tile_type.lanes)])
        vectors.append(builder.load(builder.bitcast(pointer, vector_type.as_pointer()),
                                    align=tile_type.dtype.bitwidth // 8))
    return vectors


@intrinsic
def tile_fma(typingctx, tile, x, x_start, w, w_start):
    """One tap: tile[c, p] += w[w_start + c] * x[x_start + p * lanes:][:lanes] (unchecked loads)."""
    _check_tile_operands(tile, x, w, "tile_fma")

    def codegen(context, builder, signature, args):
        accumulators, x_array, x_index, w_array, w_index = args
        sig_args = signature.args
        x_pointer = _element_pointer(context, builder, sig_args[1], x_array, sig_args[2], x_index)
        w_pointer = _element_pointer(context, builder, sig_args[3], w_array, sig_args[4], w_index)
        vectors = _load_tile_vectors(builder, tile, x_pointer, accumulators.type.element)
        return _outer_fma(context, builder, tile, accumulators, vectors,
                          _adjacent(builder, w_pointer, tile.channels))

    return tile(tile, x, x_start, w, w_start), codegen


@intrinsic
def tile_fma_gathered(typingctx, tile, x, x_start, w, w_start, w_offsets):
    """``tile_fma`` with the broadcast values scattered: tile[c, p] += w[w_start + w_offsets[c]]
    * x[x_start + p * lanes:][:lanes] (unchecked loads).  The weight gradient's tile: its vectors
    are output channels, its broadcasts input values at (channel, tap) offsets that are not
    adjacent.  ``w_offsets`` (integers) does not change inside a loop over ``x_start``, so LLVM
    keeps the offsets in registers."""
    _check_tile_operands(tile, x, w, "tile_fma_gathered")
    if not (isinstance(w_offsets, types.Array) and w_offsets.ndim == 1 and w_offsets.layout == "C"
            and isinstance(w_offsets.dtype, types.Integer)):
        raise TypingError(f"tile_fma_gathered: offsets must be a 1-D C-contiguous integer array, "
                          f"got {w_offsets}")

    def codegen(context, builder, signature, args):
        accumulators, x_array, x_index, w_array, w_index, offsets_array = args
        sig_args = signature.args
        x_pointer = _element_pointer(context, builder, sig_args[1], x_array, sig_args[2], x_index)
        w_pointer = _element_pointer(context, builder, sig_args[3], w_array, sig_args[4], w_index)
        offsets = context.make_array(sig_args[5])(context, builder, offsets_array)
        vectors = _load_tile_vectors(builder, tile, x_pointer, accumulators.type.element)
        w_pointers = []
        for c in range(tile.channels):
            offset = builder.load(cgutils.gep(builder, offsets.data, c))
            w_pointers.append(builder.gep(w_pointer, [context.cast(builder, offset,
                                                                   w_offsets.dtype, types.intp)]))
        return _outer_fma(context, builder, tile, accumulators, vectors, w_pointers)

    return tile(tile, x, x_start, w, w_start, w_offsets), codegen


@intrinsic
def tile_fma_first(typingctx, tile, x, x_start, count, w, w_start):
    """``tile_fma`` reading only the first ``count`` positions (masked loads: nothing past them is
    touched, the other lanes read as zeros), for the last tile of a run."""
    _check_tile_operands(tile, x, w, "tile_fma_first")
    if not isinstance(count, types.Integer):
        raise TypingError(f"tile_fma_first: count must be an integer, got {count}")

    def codegen(context, builder, signature, args):
        accumulators, x_array, x_index, count_value, w_array, w_index = args
        sig_args = signature.args
        x_pointer = _element_pointer(context, builder, sig_args[1], x_array, sig_args[2], x_index)
        w_pointer = _element_pointer(context, builder, sig_args[4], w_array, sig_args[5], w_index)
        count_value = context.cast(builder, count_value, sig_args[3], types.intp)
        vector_type = accumulators.type.element
        index_vector = ir.VectorType(count_value.type, tile.lanes)
        masked_load = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(vector_type, [x_pointer.type, _I32, ir.VectorType(ir.IntType(1), tile.lanes),
                                          vector_type]),
            f"llvm.masked.load.{_intrinsic_suffix(vector_type)}.p0")
        vectors = []
        for p in range(tile.vectors):
            pointer = builder.gep(x_pointer, [ir.Constant(ir.IntType(64), p * tile.lanes)])
            lane_positions = ir.Constant(index_vector, [p * tile.lanes + i for i in range(tile.lanes)])
            mask = builder.icmp_signed("<", lane_positions, _splat(builder, index_vector, count_value))
            vectors.append(builder.call(masked_load, [pointer, ir.Constant(_I32, tile.dtype.bitwidth // 8),
                                                      mask, ir.Constant(vector_type, None)]))
        return _outer_fma(context, builder, tile, accumulators, vectors,
                          _adjacent(builder, w_pointer, tile.channels))

    return tile(tile, x, x_start, count, w, w_start), codegen


@intrinsic
def tile_store(typingctx, tile, out, start, row_stride):
    """out[start + c * row_stride + p * lanes:][:lanes] = tile[c, p] (unchecked stores)."""
    if not isinstance(tile, Tile):
        raise TypingError(f"tile_store: needs a tile, got {tile}")
    _check_array(out, "tile_store")
    if out.dtype != tile.dtype:
        raise TypingError(f"tile_store: a tile of {tile.dtype} into an array of {out.dtype}")

    def codegen(context, builder, signature, args):
        accumulators, out_array, start_value, stride_value = args
        sig_args = signature.args
        base = _element_pointer(context, builder, sig_args[1], out_array, sig_args[2], start_value)
        stride_value = context.cast(builder, stride_value, sig_args[3], types.intp)
        vector_pointer_type = accumulators.type.element.as_pointer()
        for c in range(tile.channels):
            row = builder.gep(base, [builder.mul(stride_value, ir.Constant(stride_value.type, c))])
            for p in range(tile.vectors):
                pointer = builder.gep(row, [ir.Constant(ir.IntType(64), p * tile.lanes)])
                builder.store(builder.extract_value(accumulators, c * tile.vectors + p),
                              builder.bitcast(pointer, vector_pointer_type), align=tile.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(tile, out, start, row_stride), codegen


def _geometry_attribute(name):
    @overload_attribute(TileGeometry, name)
    def _attribute(geometry):
        value = getattr(geometry, name)
        return lambda geometry: value


for _name in ("channels", "vectors", "vector_bytes"):
    _geometry_attribute(_name)


# --- arithmetic and (de)interleaving, for transforms written as straight-line formulas -------------
# Winograd's transforms are fixed linear combinations (``4 * d0 - 5 * d2 + d4``) applied to many tiles
# at once: one vector holds one transform position of ``lanes`` tiles.  With ``+ - *`` on vectors the
# formulas read as the paper writes them and the same helper serves scalars and vectors; a scalar
# operand is converted to the vector's dtype (a float32 formula stays float32) and splatted.  The
# kernel's fastmath flags reach these instructions like any other, so ``contract`` fuses ``a * b + c``.
# ``load_strided`` / ``store_interleaved`` move between a memory layout with several tiles' values
# interleaved (``a[step * t + phase]``) and one vector per phase: one wide load or store plus the
# shuffles LLVM's backend picks for the target.
__all__ += ["load_strided", "store_interleaved", "store_first", "convert"]


def _binary_intrinsic(method_name):
    @intrinsic
    def vector_op(typingctx, a, b):
        if not (isinstance(a, Vector) and a == b):
            raise TypingError(f"{method_name}: two vectors of one type, got {a}, {b}")

        def codegen(context, builder, signature, args):
            return getattr(builder, method_name)(args[0], args[1])

        return a(a, b), codegen

    return vector_op


_vector_add = _binary_intrinsic("fadd")
_vector_sub = _binary_intrinsic("fsub")
_vector_mul = _binary_intrinsic("fmul")


@intrinsic
def _splat_like(typingctx, scalar, like):
    """``scalar`` converted to ``like``'s dtype, in every lane of a vector of ``like``'s type."""
    if not (isinstance(like, Vector) and isinstance(scalar, (types.Integer, types.Float))):
        raise TypingError(f"vector arithmetic: a number and a vector, got {scalar}, {like}")

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], like.dtype)
        return _splat(builder, context.get_value_type(like), value)

    return like(scalar, like), codegen


@intrinsic
def _vector_neg(typingctx, a):
    if not isinstance(a, Vector):
        raise TypingError(f"negation: needs a vector, got {a}")

    def codegen(context, builder, signature, args):
        return builder.fneg(args[0])

    return a(a), codegen


def _overload_binary(operator_function, vector_op):
    @overload(operator_function)
    def _vector_operator(a, b):
        if isinstance(a, Vector) and isinstance(b, Vector):
            return lambda a, b: vector_op(a, b)
        if isinstance(a, Vector) and isinstance(b, (types.Integer, types.Float)):
            return lambda a, b: vector_op(a, _splat_like(b, a))
        if isinstance(b, Vector) and isinstance(a, (types.Integer, types.Float)):
            return lambda a, b: vector_op(_splat_like(a, b), b)
        return None


_overload_binary(operator.add, _vector_add)
_overload_binary(operator.sub, _vector_sub)
_overload_binary(operator.mul, _vector_mul)


@overload(operator.neg)
def _vector_negation(a):
    if isinstance(a, Vector):
        return lambda a: _vector_neg(a)
    return None


@intrinsic
def load_strided(typingctx, array, start, step, nbytes):
    """The ``step`` vectors ``array[start + phase::step][:lanes]`` for phase 0 .. step - 1, as a
    tuple (one unaligned load of ``step * lanes`` values; not bounds-checked).  ``step`` and
    ``nbytes`` are compile-time constants; a phase the caller ignores costs nothing."""
    _check_array(array, "load_strided")
    vector = _vector_of(array.dtype, nbytes, "load_strided")
    if not isinstance(step, types.IntegerLiteral) or step.literal_value < 1:
        raise TypingError("load_strided: the step must be a positive compile-time constant")
    phases = step.literal_value
    result = types.UniTuple(vector, phases)

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        llvm_vector = context.get_value_type(vector)
        wide = ir.VectorType(llvm_vector.element, phases * vector.lanes)
        values = builder.load(builder.bitcast(pointer, wide.as_pointer()), align=array.dtype.bitwidth // 8)
        undefined = ir.Constant(wide, ir.Undefined)
        parts = [builder.shuffle_vector(values, undefined, ir.Constant(
            ir.VectorType(_I32, vector.lanes), [phase + phases * i for i in range(vector.lanes)]))
            for phase in range(phases)]
        return context.make_tuple(builder, result, parts)

    return result(array, start, step, nbytes), codegen


@intrinsic
def store_interleaved(typingctx, array, start, vectors):
    """``array[start + phase::n][:lanes] = vectors[phase]`` for the ``n`` vectors of a tuple: one
    unaligned store of ``n * lanes`` values, lane i of vector p at ``start + n * i + p``."""
    _check_array(array, "store_interleaved")
    if not (isinstance(vectors, types.UniTuple) and isinstance(vectors.dtype, Vector)
            and vectors.dtype.dtype == array.dtype):
        raise TypingError(f"store_interleaved: a tuple of vectors of {array.dtype}, got {vectors}")
    count, lanes = vectors.count, vectors.dtype.lanes

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        parts = [builder.extract_value(args[2], p) for p in range(count)]
        # concatenate (pairwise shuffles need equal widths: pad the odd one out with undef lanes)
        while len(parts) > 1:
            width = parts[0].type.count
            joined = []
            for i in range(0, len(parts) - 1, 2):
                joined.append(builder.shuffle_vector(parts[i], parts[i + 1], ir.Constant(
                    ir.VectorType(_I32, 2 * width), list(range(2 * width)))))
            if len(parts) % 2:
                last = parts[-1]
                joined.append(builder.shuffle_vector(last, ir.Constant(last.type, ir.Undefined), ir.Constant(
                    ir.VectorType(_I32, 2 * width), list(range(2 * width)))))
            parts = joined
        concatenated = parts[0]
        mask = [p * lanes + i for i in range(lanes) for p in range(count)]  # lane i of vector p
        wide = builder.shuffle_vector(concatenated, ir.Constant(concatenated.type, ir.Undefined),
                                      ir.Constant(ir.VectorType(_I32, count * lanes), mask))
        builder.store(wide, builder.bitcast(pointer, wide.type.as_pointer()), align=array.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(array, start, vectors), codegen


@intrinsic
def transpose_square(typingctx, source, source_start, source_stride, target, target_start,
                     target_stride, nbytes):
    """``target[target_start + t * target_stride + i] = source[source_start + i * source_stride +
    t]`` for i, t < lanes (``nbytes`` of the arrays' dtype): a lanes x lanes block moved through
    registers, ``lanes`` vector loads, ``lanes * log2(lanes)`` two-input shuffles and ``lanes``
    vector stores, where an element-by-element transpose does a scattered store per value.
    ``nbytes`` is a compile-time constant; nothing is bounds-checked."""
    _check_array(source, "transpose_square")
    _check_array(target, "transpose_square")
    if source.dtype != target.dtype:
        raise TypingError(f"transpose_square: one dtype for both arrays, got {source.dtype}, {target.dtype}")
    vector = _vector_of(source.dtype, nbytes, "transpose_square")
    lanes = vector.lanes
    half = lanes // 2
    # interleaving the first half of the rows with the second, log2(lanes) times, transposes
    low = [v for k in range(half) for v in (k, lanes + k)]
    high = [v for k in range(half, lanes) for v in (k, lanes + k)]

    def codegen(context, builder, signature, args):
        source_value, source_first, source_step, target_value, target_first, target_step, _ = args
        types_in = signature.args
        llvm_vector = context.get_value_type(vector)
        align = source.dtype.bitwidth // 8

        def row_pointer(array_type, array, first_type, first, step_type, step, row):
            index = builder.add(context.cast(builder, first, first_type, types.intp),
                                builder.mul(context.cast(builder, step, step_type, types.intp),
                                            ir.Constant(ir.IntType(64), row)))
            pointer = _element_pointer(context, builder, array_type, array, types.intp, index)
            return builder.bitcast(pointer, llvm_vector.as_pointer())

        rows = [builder.load(row_pointer(types_in[0], source_value, types_in[1], source_first,
                                         types_in[2], source_step, i), align=align)
                for i in range(lanes)]
        for _ in range(lanes.bit_length() - 1):  # none for one lane
            masks = [ir.Constant(ir.VectorType(_I32, lanes), order) for order in (low, high)]
            rows = [builder.shuffle_vector(rows[i], rows[i + half], mask)
                    for i in range(half) for mask in masks]
        for t in range(lanes):
            builder.store(rows[t], row_pointer(types_in[3], target_value, types_in[4], target_first,
                                               types_in[5], target_step, t), align=align)
        return context.get_dummy_value()

    return types.none(source, source_start, source_stride, target, target_start, target_stride,
                      nbytes), codegen


__all__ += ["transpose_square"]


@intrinsic
def convert(typingctx, value, dtype):
    """``value`` with every lane converted to ``dtype`` (an array's ``.dtype`` or a NumPy float
    type): exact from float32 to float64, rounded to nearest the other way."""
    if isinstance(dtype, types.DType):
        element = dtype.dtype
    elif isinstance(dtype, types.NumberClass):
        element = dtype.instance_type
    else:
        element = dtype
    if not (isinstance(value, Vector) and isinstance(element, types.Float)):
        raise TypingError(f"convert: a vector and a float type, got {value}, {dtype}")
    result = Vector(element, value.lanes)

    def codegen(context, builder, signature, args):
        target = context.get_value_type(result)
        if element.bitwidth > value.dtype.bitwidth:
            return builder.fpext(args[0], target)
        if element.bitwidth < value.dtype.bitwidth:
            return builder.fptrunc(args[0], target)
        return args[0]

    return result(value, dtype), codegen
