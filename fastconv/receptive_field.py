"""Receptive field arithmetic of a stack of conv / pool layers, as the course notes teach it.

For each layer with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` (effective kernel
``k_eff = d (k - 1) + 1``), going from the layer's input to its output, per spatial axis:

    jump   j_out     = j_in * s                              (input pixels between adjacent outputs)
    size   r_out     = r_in + (k_eff - 1) * j_in             (input pixels one output sees)
    start  start_out = start_in + ((k_eff - 1) / 2 - p) * j_in  (centre of the first output's field)
    output n_out     = floor((n_in + 2 p - k_eff) / s) + 1  (only when an input size is given)

starting from the input image with ``j = 1``, ``r = 1`` and ``start = input_start`` (default 0.5:
pixel ``i`` covers ``[i, i + 1)``, so the first pixel's centre is at 0.5; pass 0 to count in pixel
indices).  Pooling layers obey the same formulas as convolutions.  Padding only moves ``start``: a
negative start (or one past the image) means the field of an edge output is centred in the padding.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from ._params import as_pair

_FIELDS = ("kernel_size", "stride", "padding", "dilation")
_ALIASES = {"kernel": "kernel_size", "k": "kernel_size", "s": "stride", "p": "padding", "d": "dilation"}


class LayerField(NamedTuple):
    """Receptive field after one layer.  Values are ints / floats when every layer was described with
    scalars, and ``(h, w)`` pairs as soon as one layer used a pair."""

    index: int
    name: str
    kernel_size: int | tuple
    stride: int | tuple
    padding: int | tuple
    dilation: int | tuple
    jump: int | tuple
    size: int | tuple
    start: float | tuple
    out_size: int | tuple | None


def _layer_spec(layer, index):
    """``{kernel_size, stride, padding, dilation, name}`` from a dict or a tuple."""
    if isinstance(layer, dict):
        spec = {}
        for key, value in layer.items():
            field = _ALIASES.get(key, key)
            if field not in _FIELDS + ("name",):
                raise ValueError(
                    f"layers[{index}]: unknown key {key!r}; use kernel_size (or kernel), stride, "
                    "padding, dilation, name"
                )
            spec[field] = value
        if "kernel_size" not in spec:
            raise ValueError(f"layers[{index}] must give a kernel_size, got {layer!r}")
    elif isinstance(layer, (tuple, list)):
        if not 1 <= len(layer) <= 4:
            raise ValueError(
                f"layers[{index}] as a tuple is (kernel_size[, stride[, padding[, dilation]]]), "
                f"got {layer!r}"
            )
        spec = dict(zip(_FIELDS, layer))
    else:
        raise TypeError(f"layers[{index}] must be a dict or a tuple, got {type(layer).__name__}")
    spec.setdefault("stride", 1)
    spec.setdefault("padding", 0)
    spec.setdefault("dilation", 1)
    name = spec.pop("name", f"layer{index + 1}")
    pairs = {
        field: as_pair(spec[field], f"layers[{index}].{field}", minimum=0 if field == "padding" else 1)
        for field in _FIELDS
    }
    scalar = all(not isinstance(spec[field], (tuple, list)) for field in _FIELDS)
    return str(name), pairs, scalar


def receptive_field(layers, input_size=None, input_start=0.5):
    """Jump, receptive field size and start of every layer of a conv / pool stack.

    Parameters
    ----------
    layers : sequence of dicts or tuples, input to output
        A dict has ``kernel_size`` (or ``kernel``) and optional ``stride``, ``padding``,
        ``dilation`` (defaults 1, 0, 1) and ``name``; a tuple is
        ``(kernel_size[, stride[, padding[, dilation]]])``.  Every value is an int or an ``(h, w)``
        pair.  Pooling layers are described the same way.
    input_size : int or (int, int), optional
        Image size; when given, each record also carries the layer's output size (and a layer whose
        kernel does not fit raises ValueError).
    input_start : float
        Centre of the first input pixel (0.5 by default; see the module docstring).

    Returns
    -------
    list of :class:`LayerField`, one per layer, with ``jump``, ``size`` (receptive field),
    ``start`` and ``out_size`` computed by the formulas in this module's docstring.

    Examples
    --------
    >>> [(f.jump, f.size, f.start) for f in receptive_field([(3, 2, 1), (3, 2, 1)])]
    [(2, 3, 0.5), (4, 7, 0.5)]
    """
    if isinstance(layers, (dict, str)) or not hasattr(layers, "__iter__"):
        raise TypeError("layers must be a sequence of dicts or tuples, one per layer")
    layers = list(layers)
    if not layers:
        raise ValueError("layers must describe at least one layer")
    if isinstance(input_start, bool) or not isinstance(input_start, (int, float)) or not math.isfinite(input_start):
        raise TypeError(f"input_start must be a finite number, got {input_start!r}")
    specs = [_layer_spec(layer, index) for index, layer in enumerate(layers)]
    all_scalar = all(scalar for _, _, scalar in specs)
    sizes = None if input_size is None else list(as_pair(input_size, "input_size", minimum=1))

    jump, field, start = [1, 1], [1, 1], [float(input_start)] * 2
    records = []
    for index, (name, pairs, _) in enumerate(specs):
        for axis in (0, 1):
            kernel, stride, pad, dilation = (pairs[f][axis] for f in _FIELDS)
            effective = dilation * (kernel - 1) + 1
            if sizes is not None:
                span = sizes[axis] + 2 * pad - effective
                if span < 0:
                    raise ValueError(
                        f"layers[{index}] ({name}): effective kernel {effective} does not fit its "
                        f"input of size {sizes[axis]} with padding {pad}"
                    )
                sizes[axis] = span // stride + 1
            start[axis] = start[axis] + ((effective - 1) / 2 - pad) * jump[axis]
            field[axis] = field[axis] + (effective - 1) * jump[axis]
            jump[axis] = jump[axis] * stride

        def shown(values):
            return values[0] if all_scalar else tuple(values)
        records.append(LayerField(
            index=index, name=name,
            kernel_size=shown([pairs["kernel_size"][0], pairs["kernel_size"][1]]),
            stride=shown(list(pairs["stride"])), padding=shown(list(pairs["padding"])),
            dilation=shown(list(pairs["dilation"])),
            jump=shown(jump), size=shown(field), start=shown(start),
            out_size=None if sizes is None else shown(sizes),
        ))
    return records


def format_receptive_field(records) -> str:
    """The records of :func:`receptive_field` as a plain-text table."""
    header = f"{'layer':<12} {'k':>8} {'s':>8} {'p':>8} {'d':>8} {'jump':>8} {'size':>10} {'start':>12} {'out':>10}"
    lines = [header, "-" * len(header)]
    for record in records:
        cells = [record.kernel_size, record.stride, record.padding, record.dilation, record.jump]
        lines.append(
            f"{record.name:<12} " + " ".join(f"{str(c):>8}" for c in cells)
            + f" {str(record.size):>10} {str(record.start):>12} {str(record.out_size):>10}"
        )
    return "\n".join(lines)
