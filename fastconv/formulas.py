"""The arithmetic of convolution layers the course notes teach: output size, FLOPs, parameters.

Receptive fields live in :mod:`fastconv.receptive_field`."""
from __future__ import annotations

from ._params import as_pair


def conv_output_shape(input_size, kernel_size, stride=1, padding=0, dilation=1):
    """Spatial output size ``floor((H + 2p - d(R - 1) - 1) / s) + 1`` per axis.

    Each argument is an int or an (h, w) pair; returns an (out_h, out_w) tuple.  ``padding`` may
    also be ``"valid"`` or ``"same"``.
    """
    in_h, in_w = as_pair(input_size, "input_size", minimum=1)
    kernel_h, kernel_w = as_pair(kernel_size, "kernel_size", minimum=1)
    stride_h, stride_w = as_pair(stride, "stride", minimum=1)
    dilation_h, dilation_w = as_pair(dilation, "dilation", minimum=1)
    if padding == "valid":
        pad_h = pad_w = 0
        totals = (0, 0)
    elif padding == "same":
        if (stride_h, stride_w) != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions")
        return (in_h, in_w)
    else:
        pad_h, pad_w = as_pair(padding, "padding", minimum=0)
        totals = (2 * pad_h, 2 * pad_w)
    sizes = []
    for size, total_pad, kernel, stride_, dilation_ in (
        (in_h, totals[0], kernel_h, stride_h, dilation_h),
        (in_w, totals[1], kernel_w, stride_w, dilation_w),
    ):
        span = size + total_pad - dilation_ * (kernel - 1) - 1
        if span < 0:
            raise ValueError(
                f"kernel {kernel_size} (dilation {dilation}) does not fit input {input_size} "
                f"with padding {padding}"
            )
        sizes.append(span // stride_ + 1)
    return tuple(sizes)


def conv_flops(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """FLOPs of a conv2d forward (a multiply-add counts 2): 2 N K H' W' (C/groups) R S.

    ``input_shape`` is (N, C, H, W) or (C, H, W); ``weight_shape`` is (K, C/groups, R, S), or the
    6-D (tH, tW, K, C, R, S) of ``tiled_conv2d`` / ``local_conv2d`` (tiles change which kernel an
    output uses, not how much arithmetic it costs, so the count is conv2d's with groups = 1).
    ``weighted_avg_pool2d`` costs what a depthwise conv does: weight (C, 1, R, S), groups = C.
    """
    input_shape = tuple(input_shape)
    weight_shape = tuple(weight_shape)
    if len(weight_shape) == 6:
        if groups != 1:
            raise ValueError(f"tiled/local convolution has no groups, got groups={groups}")
        weight_shape = weight_shape[2:]
    batch = input_shape[0] if len(input_shape) == 4 else 1
    out_channels, channels_per_group, kernel_h, kernel_w = weight_shape
    out_h, out_w = conv_output_shape(input_shape[-2:], (kernel_h, kernel_w), stride, padding, dilation)
    return 2 * batch * out_channels * out_h * out_w * channels_per_group * kernel_h * kernel_w


def conv_params(in_channels, out_channels, kernel_size, groups=1, bias=True, *, tiles=None,
                tiled_bias=False):
    """Learnable parameters of a conv layer: K (C/groups) R S weights, plus K biases.

    ``tiles=(tH, tW)`` counts a tiled convolution (one kernel bank per tile: tH tW times the
    weights); a locally connected layer is ``tiles=(out_h, out_w)``.  ``tiled_bias=True`` gives
    every tile its own K biases (the layers' default), else the K biases are shared.
    """
    kernel_h, kernel_w = as_pair(kernel_size, "kernel_size", minimum=1)
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
        )
    tile_h, tile_w = (1, 1) if tiles is None else as_pair(tiles, "tiles", minimum=1)
    if tiles is not None and groups != 1:
        raise ValueError(f"tiled/local convolution has no groups, got groups={groups}")
    banks = tile_h * tile_w
    biases = (out_channels * (banks if tiled_bias else 1)) if bias else 0
    return banks * out_channels * (in_channels // groups) * kernel_h * kernel_w + biases
