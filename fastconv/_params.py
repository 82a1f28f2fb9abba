"""Argument normalisation and validation, done once at the public edge.

Every public convolution entry point turns its arguments into a frozen :class:`ConvParams` and
contiguous arrays of one compute dtype before any kernel runs.  Kernels are compiled without bounds
checks, so this module is what stands between a user's typo and a segfault: every error names the
argument and the shapes involved.
"""
from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass, replace

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

# Refuse problems whose output alone could never be allocated, before numpy tries.
_MAX_ELEMENTS = 1 << 40


def physical_memory_bytes() -> int | None:
    """This machine's physical memory (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return None


_PHYSICAL_MEMORY = physical_memory_bytes()


def check_memory(nbytes: int, what: str) -> None:
    """Refuse, with a ValueError naming ``what``, an allocation larger than physical memory.

    Without this a hopeless call either raises a bare MemoryError from deep inside a backend or,
    with memory overcommit, is killed by the OS halfway through.  ``nbytes`` is a Python int.
    """
    if _PHYSICAL_MEMORY is not None and nbytes > _PHYSICAL_MEMORY:
        raise ValueError(
            f"{what} needs {nbytes / 2**30:.4g} GiB, more than this machine's "
            f"{_PHYSICAL_MEMORY / 2**30:.4g} GiB of physical memory"
        )


def check_copy(array: np.ndarray, dtype, name: str) -> None:
    """Refuse before :func:`contiguous` copies ``array`` when the copy could not fit in memory
    (a zero-stride broadcast view can describe any number of elements)."""
    if array.flags.c_contiguous and array.dtype == dtype:
        return  # no copy
    check_memory(int(array.size) * np.dtype(dtype).itemsize,
                 f"a contiguous {np.dtype(dtype).name} copy of {name} of shape {array.shape}")


def as_pair(value, name: str, *, minimum: int) -> tuple[int, int]:
    """Turn an int or a pair of ints into a validated ``(h, w)`` tuple."""
    items = value if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    pair = []
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not hasattr(item, "__index__"):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        item = operator.index(item)
        if item < minimum:
            qualifier = "positive" if minimum == 1 else f">= {minimum}"
            raise ValueError(f"{name} must be {qualifier}, got {value!r}")
        pair.append(item)
    return pair[0], pair[1]


def as_single(value, name: str, *, minimum: int, op: str) -> int:
    """A 1-D op's stride, padding, dilation, output_padding or kernel_size: an int or a 1-tuple
    (PyTorch's two forms), validated here so that errors speak of one axis, not of the height-1
    plane the 1-D ops run on."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    if len(items) != 1:
        raise ValueError(f"{op}: {name} must be an int or a 1-tuple, got {value!r}")
    item = items[0]
    if isinstance(item, (bool, np.bool_)) or not hasattr(item, "__index__"):
        raise TypeError(f"{op}: {name} must be an int or a 1-tuple of ints, got {value!r}")
    item = operator.index(item)
    if item < minimum:
        qualifier = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{op}: {name} must be {qualifier}, got {value!r}")
    return item


def as_array(value, name: str) -> np.ndarray:
    """An ndarray view of ``value``, rejecting dtypes no kernel can compute in."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        if array.dtype.kind == "c":
            raise TypeError(
                f"{name} is complex ({array.dtype}); conv2d works on real data — use "
                "fastconv.correlate2d / convolve2d for complex signals"
            )
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    return array


def compute_dtype(*arrays: np.ndarray | None) -> np.dtype:
    """float32 stays float32, float64 stays float64, mixed floats promote as NumPy does;
    integer and bool inputs are computed in float64, float16 in float32."""
    dtype = np.result_type(*[a.dtype for a in arrays if a is not None])
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype.itemsize < 4:
        return np.dtype(np.float32)
    if dtype.itemsize > 8:
        raise TypeError(f"{dtype} is not supported; use float32 or float64")
    return dtype


def contiguous(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous array of ``dtype``; a copy only when needed (inputs are never written to)."""
    return np.ascontiguousarray(array, dtype=dtype)


@dataclass(frozen=True)
class ConvParams:
    """Everything about one conv2d call except the data: shapes, geometry, dtype.

    Padding here is the total implicit zero padding seen by the kernels.  For the non-zero padding
    modes, :meth:`explicitly_padded` describes the problem after the input has been padded.
    """

    batch: int
    in_channels: int
    in_h: int
    in_w: int
    out_channels: int
    kernel_h: int
    kernel_w: int
    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    pad_top: int = 0
    pad_bottom: int = 0
    pad_left: int = 0
    pad_right: int = 0
    groups: int = 1
    padding_mode: str = "zeros"
    dtype: np.dtype = np.dtype(np.float64)
    has_bias: bool = False

    # --- derived geometry ---------------------------------------------------------------------
    @property
    def in_channels_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_channels_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def dilated_kernel_h(self) -> int:
        return self.dilation_h * (self.kernel_h - 1) + 1

    @property
    def dilated_kernel_w(self) -> int:
        return self.dilation_w * (self.kernel_w - 1) + 1

    @property
    def padded_h(self) -> int:
        return self.in_h + self.pad_top + self.pad_bottom

    @property
    def padded_w(self) -> int:
        return self.in_w + self.pad_left + self.pad_right

    @property
    def out_h(self) -> int:
        return (self.padded_h - self.dilated_kernel_h) // self.stride_h + 1

    @property
    def out_w(self) -> int:
        return (self.padded_w - self.dilated_kernel_w) // self.stride_w + 1

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, self.in_h, self.in_w)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels_per_group, self.kernel_h, self.kernel_w)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_channels, self.out_h, self.out_w)

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.in_channels_per_group == 1

    # --- costs -------------------------------------------------------------------------------
    @property
    def flops(self) -> int:
        """Multiply-adds counted as 2 FLOPs, as the direct definition performs them."""
        return (
            2 * self.batch * self.out_channels * self.out_h * self.out_w
            * self.in_channels_per_group * self.kernel_h * self.kernel_w
        )

    @property
    def key(self) -> tuple:
        """Hashable identity of the problem: the memo key for decisions."""
        return tuple(getattr(self, f) for f in self.__dataclass_fields__)

    def explicitly_padded(self) -> "ConvParams":
        """The same problem after the input has been padded explicitly (for non-zero modes)."""
        return replace(
            self, in_h=self.padded_h, in_w=self.padded_w,
            pad_top=0, pad_bottom=0, pad_left=0, pad_right=0, padding_mode="zeros",
        )

    def describe(self) -> str:
        text = (
            f"input {self.input_shape} weight {self.weight_shape} -> {self.output_shape} "
            f"{self.dtype.name}"
        )
        extras = []
        if (self.stride_h, self.stride_w) != (1, 1):
            extras.append(f"stride=({self.stride_h}, {self.stride_w})")
        if any((self.pad_top, self.pad_bottom, self.pad_left, self.pad_right)):
            extras.append(f"pad=(t{self.pad_top} b{self.pad_bottom} l{self.pad_left} r{self.pad_right})")
        if (self.dilation_h, self.dilation_w) != (1, 1):
            extras.append(f"dilation=({self.dilation_h}, {self.dilation_w})")
        if self.groups != 1:
            extras.append(f"groups={self.groups}")
        if self.padding_mode != "zeros":
            extras.append(f"padding_mode={self.padding_mode}")
        return text + (" " + " ".join(extras) if extras else "")


def resolve_padding(padding, kernel_h, kernel_w, dilation, stride) -> tuple[int, int, int, int]:
    """``padding`` as (top, bottom, left, right); ``"same"`` puts an odd extra row/column at the
    bottom/right, as PyTorch does."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions (stride={stride})"
                )
            total_h = dilation[0] * (kernel_h - 1)
            total_w = dilation[1] * (kernel_w - 1)
            return (total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2)
        raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    pad_h, pad_w = as_pair(padding, "padding", minimum=0)
    return (pad_h, pad_h, pad_w, pad_w)


def check_padding_mode(padding_mode, pads, in_h, in_w) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    top, bottom, left, right = pads
    if padding_mode == "reflect" and (max(top, bottom) >= in_h or max(left, right) >= in_w):
        raise ValueError(
            f"padding_mode='reflect' needs padding smaller than the input: padding "
            f"(top={top}, bottom={bottom}, left={left}, right={right}) vs input {in_h}x{in_w}"
        )
    if padding_mode == "circular" and (max(top, bottom) > in_h or max(left, right) > in_w):
        raise ValueError(
            f"padding_mode='circular' needs padding no larger than the input: padding "
            f"(top={top}, bottom={bottom}, left={left}, right={right}) vs input {in_h}x{in_w}"
        )
    return padding_mode


def check_not_empty(shape, name: str, batched: bool, op: str = "") -> None:
    """Only the batch axis may be 0: an empty batch has a well-defined (empty) result, as in PyTorch;
    zero channels or an empty plane stay errors (PyTorch refuses them too)."""
    shape = tuple(shape)
    if 0 in (shape[1:] if batched else shape):
        prefix = f"{op}: " if op else ""
        batch_note = " (only the batch may be 0)" if batched else ""
        raise ValueError(f"{prefix}{name} must not be empty{batch_note}, got shape {shape}")


def check_fits(params: ConvParams, check_output_memory: bool = True) -> None:
    """The (dilated) kernel must fit in the padded input; the output must be allocatable."""
    if params.dilated_kernel_h > params.padded_h or params.dilated_kernel_w > params.padded_w:
        raise ValueError(
            f"kernel of size ({params.kernel_h}, {params.kernel_w}) with dilation "
            f"({params.dilation_h}, {params.dilation_w}) spans ({params.dilated_kernel_h}, "
            f"{params.dilated_kernel_w}), larger than the padded input "
            f"({params.padded_h}, {params.padded_w})"
        )
    if np.prod(params.output_shape, dtype=np.float64) > _MAX_ELEMENTS:
        raise ValueError(f"output of shape {params.output_shape} is too large to allocate")
    if not check_output_memory:
        return
    elements = 1
    for size in params.output_shape:
        elements *= size
    check_memory(elements * params.dtype.itemsize, f"the output of shape {params.output_shape}")


def describe_conv(
    input_shape, weight_shape, bias_shape, dtype, stride=1, padding=0, dilation=1, groups=1,
    padding_mode="zeros", *, input_name="input", weight_name="weight", whole_output_in_memory=True,
):
    """Validate a conv2d problem given by shapes alone; return ``(ConvParams, batched)``.

    ``bias_shape`` is None for no bias.  Used by :func:`make_conv_params` and by ``explain``, which
    must not allocate the arrays it describes.  ``whole_output_in_memory=False`` (``fastconv.dask``,
    whose output lives in blocks) skips the check that the output fits in this machine's memory.
    """
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    if len(input_shape) not in (3, 4):
        raise ValueError(
            f"{input_name} must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {input_shape}"
        )
    batched = len(input_shape) == 4
    if len(weight_shape) != 4:
        raise ValueError(
            f"{weight_name} must be 4-D (K, C/groups, R, S), got shape {weight_shape}"
        )
    check_not_empty(input_shape, input_name, batched)
    if 0 in weight_shape:
        raise ValueError(f"{weight_name} must not be empty, got shape {weight_shape}")
    if isinstance(groups, (bool, np.bool_)) or not hasattr(groups, "__index__"):
        raise TypeError(f"groups must be a positive int, got {groups!r}")
    groups = operator.index(groups)
    if groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups}")

    batch, in_channels, in_h, in_w = input_shape if batched else (1,) + input_shape
    out_channels, channels_per_group, kernel_h, kernel_w = weight_shape
    if in_channels % groups:
        raise ValueError(
            f"groups={groups} must divide the input channels: {input_name} has {in_channels} "
            f"(shape {input_shape})"
        )
    if out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide the output channels: {weight_name} has {out_channels} "
            f"(shape {weight_shape})"
        )
    if channels_per_group * groups != in_channels:
        raise ValueError(
            f"{weight_name} of shape {weight_shape} expects {channels_per_group * groups} input "
            f"channels (C/groups={channels_per_group}, groups={groups}), but {input_name} of shape "
            f"{input_shape} has {in_channels}"
        )
    if bias_shape is not None and tuple(bias_shape) != (out_channels,):
        raise ValueError(
            f"bias must have shape ({out_channels},) to match {weight_name} {weight_shape}, "
            f"got {tuple(bias_shape)}"
        )

    stride_hw = as_pair(stride, "stride", minimum=1)
    dilation_hw = as_pair(dilation, "dilation", minimum=1)
    pads = resolve_padding(padding, kernel_h, kernel_w, dilation_hw, stride_hw)
    mode = check_padding_mode(padding_mode, pads, in_h, in_w)

    params = ConvParams(
        batch=batch, in_channels=in_channels, in_h=in_h, in_w=in_w,
        out_channels=out_channels, kernel_h=kernel_h, kernel_w=kernel_w,
        stride_h=stride_hw[0], stride_w=stride_hw[1],
        dilation_h=dilation_hw[0], dilation_w=dilation_hw[1],
        pad_top=pads[0], pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3],
        groups=groups, padding_mode=mode, dtype=np.dtype(dtype), has_bias=bias_shape is not None,
    )
    check_fits(params, check_output_memory=whole_output_in_memory)
    return params, batched


def make_conv_params(
    input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
    *, input_name="input", weight_name="weight",
):
    """Validate conv2d arguments and return ``(params, x, w, b, batched)``.

    ``x`` (N, C, H, W), ``w`` and ``b`` are C-contiguous arrays of ``params.dtype`` (copies only
    where the caller's arrays are not already so), ``batched`` says whether ``input`` had a batch axis.
    """
    x = as_array(input, input_name)
    w = as_array(weight, weight_name)
    b = None if bias is None else as_array(bias, "bias")
    params, batched = describe_conv(
        x.shape, w.shape, None if b is None else b.shape, compute_dtype(x, w, b),
        stride, padding, dilation, groups, padding_mode,
        input_name=input_name, weight_name=weight_name,
    )
    x4 = x if batched else x[np.newaxis]
    check_copy(x4, params.dtype, input_name)
    check_copy(w, params.dtype, weight_name)
    return (
        params,
        contiguous(x4, params.dtype),
        contiguous(w, params.dtype),
        None if b is None else contiguous(b, params.dtype),
        batched,
    )


# --- pooling ----------------------------------------------------------------------------------
def pooled_size(size, kernel, stride, pad, dilation, ceil_mode) -> int:
    """PyTorch's pooling output size: floor (or ceil) of ``(H + 2p - d(k - 1) - 1) / s`` plus one,
    where with ``ceil_mode`` the last window must start inside the input or the left padding."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + pad:
            out -= 1
    else:
        out = span // stride + 1
    return out


@dataclass(frozen=True)
class PoolParams:
    """Everything about one 2-D pooling call except the data (NCHW view of the input)."""

    batch: int
    channels: int
    in_h: int
    in_w: int
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_h: int = 0
    pad_w: int = 0
    dilation_h: int = 1
    dilation_w: int = 1
    ceil_mode: bool = False
    dtype: np.dtype = np.dtype(np.float64)

    @property
    def out_h(self) -> int:
        return pooled_size(self.in_h, self.kernel_h, self.stride_h, self.pad_h, self.dilation_h,
                           self.ceil_mode)

    @property
    def out_w(self) -> int:
        return pooled_size(self.in_w, self.kernel_w, self.stride_w, self.pad_w, self.dilation_w,
                           self.ceil_mode)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.in_h, self.in_w)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.out_h, self.out_w)


def describe_pool(input_shape, dtype, kernel_size, stride=None, padding=0, dilation=1,
                  ceil_mode=False, *, op="pool", name="input") -> tuple[PoolParams, bool]:
    """Validate pooling arguments as PyTorch does, from the input's shape and dtype alone; return
    ``(params, batched)``.  Used by :func:`make_pool_params` and by ``fastconv.dask``, whose input
    must not be read (nor copied) to be described.

    ``stride=None`` means ``stride = kernel_size``.  Padding may be at most half the kernel
    (PyTorch's rule); every output must have at least one row and column.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) not in (3, 4):
        raise ValueError(f"{name} must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {input_shape}")
    batched = len(input_shape) == 4
    check_not_empty(input_shape, name, batched)
    kernel_h, kernel_w = as_pair(kernel_size, "kernel_size", minimum=1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        stride_h, stride_w = kernel_h, kernel_w
    else:
        stride_h, stride_w = as_pair(stride, "stride", minimum=1)
    pad_h, pad_w = as_pair(padding, "padding", minimum=0)
    dilation_h, dilation_w = as_pair(dilation, "dilation", minimum=1)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
    if 2 * pad_h > kernel_h or 2 * pad_w > kernel_w:
        raise ValueError(
            f"{op}: padding {(pad_h, pad_w)} must be at most half of kernel_size "
            f"{(kernel_h, kernel_w)}"
        )
    batch, channels, in_h, in_w = input_shape if batched else (1,) + input_shape
    params = PoolParams(
        batch=batch, channels=channels, in_h=in_h, in_w=in_w, kernel_h=kernel_h, kernel_w=kernel_w,
        stride_h=stride_h, stride_w=stride_w, pad_h=pad_h, pad_w=pad_w,
        dilation_h=dilation_h, dilation_w=dilation_w, ceil_mode=bool(ceil_mode),
        dtype=np.dtype(dtype),
    )
    if params.out_h < 1 or params.out_w < 1:
        raise ValueError(
            f"{op}: input of shape {input_shape} is too small for kernel_size {(kernel_h, kernel_w)} "
            f"with padding {(pad_h, pad_w)} and dilation {(dilation_h, dilation_w)}: output would "
            f"be {params.out_h}x{params.out_w}"
        )
    return params, batched


def make_pool_params(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                     *, op="pool"):
    """Validate pooling arguments (see :func:`describe_pool`) and return ``(params, x, batched)``.

    ``x`` is the (N, C, H, W) C-contiguous input in the compute dtype (float32 or float64; integer
    input is pooled in float64).
    """
    x = as_array(input, "input")
    params, batched = describe_pool(x.shape, compute_dtype(x), kernel_size, stride, padding,
                                    dilation, ceil_mode, op=op)
    x4 = x if batched else x[np.newaxis]
    check_copy(x4, params.dtype, "input")
    return params, contiguous(x4, params.dtype), batched

# --- scipy.signal 2-D API -----------------------------------------------------------------------
# correlate2d / convolve2d are single-plane problems: a ConvParams with N = C = K = 1, so they run on
# the same backends as conv2d.  The helpers below hold scipy.signal's argument rules.

SIGNAL_MODES = ("full", "same", "valid")

# scipy's spellings -> one canonical name per boundary rule ('pad' is scipy's undocumented alias).
SIGNAL_BOUNDARIES = {
    "fill": "fill", "pad": "fill",
    "wrap": "wrap", "circular": "wrap",
    "symm": "symm", "symmetric": "symm",
}

# Dtypes scipy.signal.correlate2d/convolve2d accept that fastconv computes exactly (longdouble is
# refused: Numba has no extended precision).
SIGNAL_DTYPES = frozenset(
    np.dtype(t) for t in (
        np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
        np.float32, np.float64, np.complex64, np.complex128,
    )
)


def signal_result_dtype(in1: np.ndarray, in2: np.ndarray, function: str) -> np.dtype:
    """scipy.signal's output dtype: the promotion of the two input dtypes, computed in that type.

    bool, float16 and object arrays are refused with scipy's own message; extended precision
    (longdouble) is refused because no kernel computes in it.
    """
    dtype = np.result_type(in1.dtype, in2.dtype)
    if dtype in SIGNAL_DTYPES:
        return dtype
    if dtype.kind in "fc" and dtype.itemsize > (8 if dtype.kind == "f" else 16):
        raise ValueError(
            f"{function}: {dtype} (extended precision) is not supported by fastconv; "
            "use float64/complex128 or scipy.signal"
        )
    raise ValueError(f"{function} not available for this type ({dtype}).")


def signal_compute_dtype(result_dtype: np.dtype) -> np.dtype:
    """The dtype the kernels run in.  Floats and complex run in their own dtype.  Integers run in
    int32 (results of <= 32 bits) or int64: scipy accumulates integers in the result type with
    wrap-around, and wrapping arithmetic modulo 2**32 or 2**64 reduces to the same residue modulo
    2**bits, so the cast back to the result dtype reproduces scipy bit for bit — and large int64
    values never pass through float64 and lose precision."""
    if result_dtype.kind in "iu":
        return np.dtype(np.int32 if result_dtype.itemsize <= 4 else np.int64)
    return result_dtype


def signal_fill_value(fillvalue, result_dtype: np.dtype):
    """``fillvalue`` as a 0-d array of ``result_dtype``, with scipy's conversion rules and errors.

    scipy converts Python scalars by value (1.5 -> 1 for an integer output) but arrays and NumPy
    scalars only by safe casting; anything else is retried through complex and then refused.
    """
    try:
        if isinstance(fillvalue, (np.ndarray, np.generic)) and not np.can_cast(
            fillvalue.dtype, result_dtype, "safe"
        ):
            raise TypeError("unsafe cast")
        fill = np.array(fillvalue, dtype=result_dtype)
    except (TypeError, ValueError, OverflowError):
        np.array(fillvalue, dtype=np.complex128)  # scipy's retry; its own errors propagate
        raise ValueError(
            "could not cast `fillvalue` directly to the output type (it was first converted to "
            "complex)."
        ) from None
    if fill.size == 0:
        raise ValueError("`fillvalue` cannot be an empty array.")
    if fill.size != 1:
        raise ValueError("`fillvalue` must be scalar or an array with one element.")
    return fill.reshape(())


def signal_padding(mode: str, in_shape, kernel_shape, flip: bool) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding of ``in1`` that turns the scipy ``mode`` into a valid
    correlation with the (already flipped, for convolution) kernel.

    ``same`` is the centred part of ``full`` that scipy keeps: for correlation it starts R // 2 rows
    into ``full``, for convolution (R - 1) // 2 rows, which in padding terms is the split below.
    """
    (kernel_h, kernel_w) = kernel_shape
    if mode == "valid":
        return (0, 0, 0, 0)
    if mode == "full":
        return (kernel_h - 1, kernel_h - 1, kernel_w - 1, kernel_w - 1)
    if flip:
        top, left = kernel_h // 2, kernel_w // 2
    else:
        top, left = (kernel_h - 1) // 2, (kernel_w - 1) // 2
    return (top, kernel_h - 1 - top, left, kernel_w - 1 - left)


def make_signal_params(in_shape, kernel_shape, pads, dtype) -> ConvParams:
    """The single-plane problem (N = C = K = 1) of one correlate2d / convolve2d call, in
    zero-padding form with implicit padding ``pads`` = (top, bottom, left, right)."""
    top, bottom, left, right = pads
    params = ConvParams(
        batch=1, in_channels=1, in_h=in_shape[0], in_w=in_shape[1],
        out_channels=1, kernel_h=kernel_shape[0], kernel_w=kernel_shape[1],
        pad_top=top, pad_bottom=bottom, pad_left=left, pad_right=right,
        dtype=np.dtype(dtype),
    )
    # check_fits' conditions in plain integer arithmetic: this runs on every call of a function
    # whose small problems take tens of microseconds.
    if kernel_shape[0] > params.padded_h or kernel_shape[1] > params.padded_w:
        raise ValueError(
            f"kernel of shape {tuple(kernel_shape)} is larger than the padded input "
            f"({params.padded_h}, {params.padded_w})"
        )
    if params.out_h * params.out_w > _MAX_ELEMENTS:
        raise ValueError(f"output of shape {(params.out_h, params.out_w)} is too large to allocate")
    check_memory(params.out_h * params.out_w * params.dtype.itemsize,
                 f"the output of shape {(params.out_h, params.out_w)}")
    return params


# --- conv3d ---------------------------------------------------------------------------------------
def refuse_complex(op: str, **arrays) -> None:
    """A TypeError naming ``op`` and the argument for complex data (``as_array``'s own message
    speaks of conv2d); the N-d signal API is where complex correlation lives."""
    for name, value in arrays.items():
        if value is not None and np.asarray(value).dtype.kind == "c":
            raise TypeError(
                f"{op}: {name} is complex ({np.asarray(value).dtype}); {op} works on real data — "
                "use fastconv.correlate / convolve (N-d) for complex signals"
            )


def as_triple(value, name: str, *, minimum: int) -> tuple[int, int, int]:
    """An int or a 3-tuple of ints as a validated ``(d, h, w)`` tuple (conv3d's stride, padding,
    dilation)."""
    items = value if isinstance(value, (tuple, list)) else (value, value, value)
    if len(items) != 3:
        raise ValueError(f"{name} must be an int or a 3-tuple of ints, got {value!r}")
    triple = []
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not hasattr(item, "__index__"):
            raise TypeError(f"{name} must be an int or a 3-tuple of ints, got {value!r}")
        item = operator.index(item)
        if item < minimum:
            qualifier = "positive" if minimum == 1 else f">= {minimum}"
            raise ValueError(f"{name} must be {qualifier}, got {value!r}")
        triple.append(item)
    return triple[0], triple[1], triple[2]


@dataclass(frozen=True)
class Conv3dParams:
    """Everything about one conv3d call except the data.  Sizes are (depth, height, width) tuples;
    ``pads`` is (front, back, top, bottom, left, right), the total padding (zeros or a mode)."""

    batch: int
    in_channels: int
    in_size: tuple
    out_channels: int
    kernel: tuple
    stride: tuple = (1, 1, 1)
    dilation: tuple = (1, 1, 1)
    pads: tuple = (0, 0, 0, 0, 0, 0)
    groups: int = 1
    padding_mode: str = "zeros"
    dtype: np.dtype = np.dtype(np.float64)

    @property
    def in_channels_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def padded_size(self) -> tuple:
        return tuple(size + self.pads[2 * axis] + self.pads[2 * axis + 1]
                     for axis, size in enumerate(self.in_size))

    @property
    def dilated_kernel(self) -> tuple:
        return tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel))

    @property
    def out_size(self) -> tuple:
        return tuple((p - k) // s + 1
                     for p, k, s in zip(self.padded_size, self.dilated_kernel, self.stride))

    @property
    def input_shape(self) -> tuple:
        return (self.batch, self.in_channels) + tuple(self.in_size)

    @property
    def weight_shape(self) -> tuple:
        return (self.out_channels, self.in_channels_per_group) + tuple(self.kernel)

    @property
    def output_shape(self) -> tuple:
        return (self.batch, self.out_channels) + self.out_size


def resolve_padding_3d(padding, kernel, dilation, stride) -> tuple:
    """``padding`` as (front, back, top, bottom, left, right); ``"same"`` puts an odd extra plane /
    row / column at the back / bottom / right, as PyTorch does."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * 6
        if padding == "same":
            if stride != (1, 1, 1):
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions (stride={stride})"
                )
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        raise ValueError(f"padding must be an int, a 3-tuple, 'valid' or 'same', got {padding!r}")
    pad_d, pad_h, pad_w = as_triple(padding, "padding", minimum=0)
    return (pad_d, pad_d, pad_h, pad_h, pad_w, pad_w)


def describe_conv3d(input_shape, weight_shape, bias_shape, dtype, stride=1, padding=0, dilation=1,
                    groups=1, padding_mode="zeros", *, input_name="input",
                    weight_name="weight") -> tuple[Conv3dParams, bool]:
    """Validate a conv3d problem given by shapes alone; return ``(Conv3dParams, batched)``."""
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    if len(input_shape) not in (4, 5):
        raise ValueError(
            f"conv3d: {input_name} must be 5-D (N, C, D, H, W) or 4-D (C, D, H, W), got shape "
            f"{input_shape}"
        )
    batched = len(input_shape) == 5
    if len(weight_shape) != 5:
        raise ValueError(
            f"conv3d: {weight_name} must be 5-D (K, C/groups, T, R, S), got shape {weight_shape}"
        )
    check_not_empty(input_shape, input_name, batched, "conv3d")
    if 0 in weight_shape:
        raise ValueError(f"conv3d: {weight_name} must not be empty, got shape {weight_shape}")
    if isinstance(groups, (bool, np.bool_)) or not hasattr(groups, "__index__"):
        raise TypeError(f"groups must be a positive int, got {groups!r}")
    groups = operator.index(groups)
    if groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups}")
    batch, in_channels = input_shape[:2] if batched else (1, input_shape[0])
    in_size = input_shape[-3:]
    out_channels, channels_per_group = weight_shape[:2]
    kernel = weight_shape[2:]
    if in_channels % groups:
        raise ValueError(
            f"groups={groups} must divide the input channels: {input_name} has {in_channels} "
            f"(shape {input_shape})"
        )
    if out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide the output channels: {weight_name} has {out_channels} "
            f"(shape {weight_shape})"
        )
    if channels_per_group * groups != in_channels:
        raise ValueError(
            f"{weight_name} of shape {weight_shape} expects {channels_per_group * groups} input "
            f"channels (C/groups={channels_per_group}, groups={groups}), but {input_name} of shape "
            f"{input_shape} has {in_channels}"
        )
    if bias_shape is not None and tuple(bias_shape) != (out_channels,):
        raise ValueError(
            f"bias must have shape ({out_channels},) to match {weight_name} {weight_shape}, "
            f"got {tuple(bias_shape)}"
        )
    stride = as_triple(stride, "stride", minimum=1)
    dilation = as_triple(dilation, "dilation", minimum=1)
    pads = resolve_padding_3d(padding, kernel, dilation, stride)
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    largest_pad = [max(pads[2 * axis], pads[2 * axis + 1]) for axis in range(3)]
    if padding_mode == "reflect" and any(p >= n for p, n in zip(largest_pad, in_size)):
        raise ValueError(
            f"padding_mode='reflect' needs padding smaller than the input: padding {pads} "
            f"(front, back, top, bottom, left, right) vs input {in_size}"
        )
    if padding_mode == "circular" and any(p > n for p, n in zip(largest_pad, in_size)):
        raise ValueError(
            f"padding_mode='circular' needs padding no larger than the input: padding {pads} "
            f"(front, back, top, bottom, left, right) vs input {in_size}"
        )
    params = Conv3dParams(
        batch=batch, in_channels=in_channels, in_size=in_size, out_channels=out_channels,
        kernel=kernel, stride=stride, dilation=dilation, pads=pads, groups=groups,
        padding_mode=padding_mode, dtype=np.dtype(dtype),
    )
    if any(k > p for k, p in zip(params.dilated_kernel, params.padded_size)):
        raise ValueError(
            f"conv3d: kernel of size {kernel} with dilation {dilation} spans "
            f"{params.dilated_kernel}, larger than the padded input {params.padded_size}"
        )
    if np.prod(params.output_shape, dtype=np.float64) > _MAX_ELEMENTS:
        raise ValueError(f"conv3d: output of shape {params.output_shape} is too large to allocate")
    itemsize = params.dtype.itemsize
    check_memory(math.prod(params.output_shape) * itemsize,
                 f"conv3d: the output of shape {params.output_shape}")
    check_memory(batch * in_channels * math.prod(params.padded_size) * itemsize,
                 f"conv3d: the padded input of shape {(batch, in_channels) + params.padded_size}")
    return params, batched


def make_conv3d_params(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                       padding_mode="zeros"):
    """Validate conv3d arguments and return ``(params, x, w, b, batched)``: ``x`` (N, C, D, H, W),
    ``w`` and ``b`` C-contiguous in ``params.dtype`` (copies only where needed)."""
    refuse_complex("conv3d", input=input, weight=weight, bias=bias)
    x = as_array(input, "input")
    w = as_array(weight, "weight")
    b = None if bias is None else as_array(bias, "bias")
    params, batched = describe_conv3d(
        x.shape, w.shape, None if b is None else b.shape, compute_dtype(x, w, b),
        stride, padding, dilation, groups, padding_mode,
    )
    x5 = x if batched else x[np.newaxis]
    check_copy(x5, params.dtype, "input")
    check_copy(w, params.dtype, "weight")
    return (params, contiguous(x5, params.dtype), contiguous(w, params.dtype),
            None if b is None else contiguous(b, params.dtype), batched)


# --- 3-D pooling ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pool3dParams:
    """Everything about one 3-D pooling call except the data; sizes are (depth, height, width)."""

    batch: int
    channels: int
    in_size: tuple
    kernel: tuple
    stride: tuple
    padding: tuple = (0, 0, 0)
    dilation: tuple = (1, 1, 1)
    ceil_mode: bool = False
    dtype: np.dtype = np.dtype(np.float64)

    @property
    def out_size(self) -> tuple:
        return tuple(pooled_size(*axis, self.ceil_mode) for axis in
                     zip(self.in_size, self.kernel, self.stride, self.padding, self.dilation))

    @property
    def input_shape(self) -> tuple:
        return (self.batch, self.channels) + tuple(self.in_size)

    @property
    def output_shape(self) -> tuple:
        return (self.batch, self.channels) + self.out_size


def make_pool3d_params(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                       *, op="pool3d"):
    """Validate 3-D pooling arguments as PyTorch does; return ``(params, x, batched)`` with ``x``
    the (N, C, D, H, W) C-contiguous input in the compute dtype.  ``stride=None`` means
    ``kernel_size``; padding may be at most half the kernel; every output axis must be >= 1."""
    refuse_complex(op, input=input)
    x = as_array(input, "input")
    if x.ndim not in (4, 5):
        raise ValueError(
            f"{op}: input must be 5-D (N, C, D, H, W) or 4-D (C, D, H, W), got shape {x.shape}"
        )
    batched = x.ndim == 5
    check_not_empty(x.shape, "input", batched, op)
    kernel = as_triple(kernel_size, "kernel_size", minimum=1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        stride = kernel
    else:
        stride = as_triple(stride, "stride", minimum=1)
    padding = as_triple(padding, "padding", minimum=0)
    dilation = as_triple(dilation, "dilation", minimum=1)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"{op}: padding {padding} must be at most half of kernel_size {kernel}")
    batch, channels = x.shape[:2] if batched else (1, x.shape[0])
    params = Pool3dParams(batch=batch, channels=channels, in_size=x.shape[-3:], kernel=kernel,
                          stride=stride, padding=padding, dilation=dilation,
                          ceil_mode=bool(ceil_mode), dtype=compute_dtype(x))
    if min(params.out_size) < 1:
        raise ValueError(
            f"{op}: input of shape {x.shape} is too small for kernel_size {kernel} with padding "
            f"{padding} and dilation {dilation}: output would be {params.out_size}"
        )
    x5 = x if batched else x[np.newaxis]
    check_copy(x5, params.dtype, "input")
    return params, contiguous(x5, params.dtype), batched
