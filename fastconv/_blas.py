"""BLAS ``?gemm`` callable from compiled kernels, with strides and ``beta`` that ``np.dot`` lacks.

``np.dot`` inside ``@njit`` only writes ``C = A @ B`` into contiguous arrays.  Convolution wants
more: accumulate (``beta = 1``) several products into one output, read operands that are strided
views (a shifted window of a padded image is a matrix with a leading dimension larger than its
width).  SciPy exports the Fortran BLAS it bundles as C function pointers
(``scipy.linalg.cython_blas.__pyx_capi__``); this module registers them as LLVM symbols that
kernels call by name.  All arguments are pointers, as Fortran passes them.

Row-major ``C (m, n) = A (m, k) @ B (k, n)`` is column-major ``C^T = B^T A^T``: the call swaps the
operands and the m/n dimensions, with leading dimensions the row strides in elements.
"""
from __future__ import annotations

import ctypes

import llvmlite.binding as llvm
import numpy as np
import scipy.linalg.cython_blas as cython_blas
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._config import njit_kernel

_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.restype = ctypes.c_char_p
_capsule_name.argtypes = [ctypes.py_object]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

def _register(name):
    """Expose SciPy's Fortran ``name`` to LLVM as the symbol ``fastconv_<name>``.

    Kernels refer to the symbol by name, so they stay cacheable: the address is bound afresh in
    every process when this module is imported (before any cached kernel is loaded)."""
    capsule = cython_blas.__pyx_capi__[name]
    llvm.add_symbol(f"fastconv_{name}", _capsule_pointer(capsule, _capsule_name(capsule)))
    return types.ExternalFunction(f"fastconv_{name}", types.void(*([types.voidptr] * 13)))


_sgemm = _register("sgemm")
_dgemm = _register("dgemm")


@intrinsic
def _as_pointer(typingctx, address):
    """An integer address as a ``void*`` (Numba has no cast for it)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@njit_kernel
def gemm_strided(transpose_a, transpose_b, m, n, k, alpha, a, a_offset, lda, b, b_offset, ldb,
                 beta, c, c_offset, ldc):
    """``C = alpha * op(A) @ op(B) + beta * C`` with row-major matrices addressed as (buffer,
    offset, row stride).

    ``op(A)`` is (m, k): ``A`` itself when not ``transpose_a`` (stored (m, k), rows ``lda`` elements
    apart), else the transpose of an (k, m) matrix stored so; likewise ``op(B)`` (k, n) and ``C``
    (m, n).  This reaches matrices NumPy cannot view, e.g. a window of a flattened padded image whose
    rows overlap the next channel.  The caller guarantees every addressed element lies inside its
    buffer and that the three dtypes match.
    """
    itemsize = a.itemsize
    dims = np.empty(6, dtype=np.int32)
    dims[0] = n
    dims[1] = m
    dims[2] = k
    dims[3] = ldb
    dims[4] = lda
    dims[5] = ldc
    scalars = np.empty(2, dtype=a.dtype)
    scalars[0] = alpha
    scalars[1] = beta
    flags = np.empty(2, dtype=np.uint8)
    flags[0] = 84 if transpose_b else 78  # 'T' / 'N': B comes first in the column-major call
    flags[1] = 84 if transpose_a else 78
    base = dims.ctypes.data
    args = (
        _as_pointer(flags.ctypes.data), _as_pointer(flags.ctypes.data + 1),
        _as_pointer(base), _as_pointer(base + 4), _as_pointer(base + 8),
        _as_pointer(scalars.ctypes.data),
        _as_pointer(b.ctypes.data + b_offset * itemsize), _as_pointer(base + 12),
        _as_pointer(a.ctypes.data + a_offset * itemsize), _as_pointer(base + 16),
        _as_pointer(scalars.ctypes.data + itemsize),
        _as_pointer(c.ctypes.data + c_offset * itemsize), _as_pointer(base + 20),
    )
    if itemsize == 4:  # float32
        _sgemm(*args)
    else:
        _dgemm(*args)


@njit_kernel
def gemm(a, b, c, alpha, beta):
    """``c = alpha * a @ b + beta * c`` for 2-D float32/float64 views whose last axis is contiguous
    (rows may be strided).  Shapes a (m, k), b (k, n), c (m, n); the caller guarantees they agree."""
    itemsize = a.itemsize
    gemm_strided(False, False, a.shape[0], b.shape[1], a.shape[1], alpha,
                 a, 0, a.strides[0] // itemsize, b, 0, b.strides[0] // itemsize,
                 beta, c, 0, c.strides[0] // itemsize)
