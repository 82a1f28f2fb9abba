"""``fastconv.explain``: what ``auto`` would do for a conv2d problem, and why."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import measure
from .eligibility import NOT_RANK_ONE, rank_one_factors
from .forward import plan
from .model import MODEL


@dataclass
class Explanation:
    """What ``auto`` would do for a problem, and why.  ``str()`` gives the readable report;
    :meth:`as_dict` the same for programs."""

    problem: str
    candidates: list[dict]
    choice: str
    reason: str
    mode: str

    def as_dict(self) -> dict:
        return {"problem": self.problem, "mode": self.mode, "choice": self.choice,
                "reason": self.reason, "candidates": self.candidates}

    def __str__(self) -> str:
        lines = [f"conv2d {self.problem}", f"mode: {self.mode}", ""]
        width = max((len(c["algorithm"]) for c in self.candidates), default=0)
        for c in self.candidates:
            if c["eligible"]:
                timing = f"{c['seconds'] * 1e3:10.3f} ms {c['source']}"
            else:
                timing = f"{'-':>10}    ineligible: {c['reason']}"
            marker = "->" if c["algorithm"] == self.choice else "  "
            lines.append(f"{marker} {c['algorithm']:<{width}}  {timing}")
        lines += ["", f"choice: {self.choice} ({self.reason})"]
        return "\n".join(lines)


def _model_mode() -> str:
    if measure.get_autotune():
        return "measure (autotune)"
    source = "calibrated" if MODEL.calibrated else f"shipped {MODEL.shipped_set} coefficients"
    return f"model (cost model, {source})"


def explain(input_shape, weight_shape, dtype=None, *, bias=False, stride=1, padding=0,
            dilation=1, groups=1, padding_mode="zeros", weight=None) -> Explanation:
    """Report which backend ``algorithm="auto"`` picks for a conv2d problem, with every backend's
    predicted (or, if measured before, measured) time and the reason others are ineligible.

    Only shapes are needed (``dtype`` defaults to float32); the arrays ``conv2d`` would get work
    too (their shapes, the input's dtype, and the weight's values for the separable rule).  Pass
    ``weight`` (an array of ``weight_shape``) to include the data-dependent rule for the separable
    backend; without it, separable is reported as depending on the kernels' rank.  NaN/Inf in the
    data would additionally exclude ``fft`` at call time.
    """
    from .._params import as_array, compute_dtype, describe_conv

    if isinstance(input_shape, np.ndarray):
        dtype = input_shape.dtype if dtype is None else dtype
        input_shape = input_shape.shape
    if isinstance(weight_shape, np.ndarray):
        weight = weight_shape if weight is None else weight
        weight_shape = weight_shape.shape
    dtype = "float32" if dtype is None else dtype
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy dtype or its name, got {dtype!r}") from None
    # the dtype conv2d would compute in (integers in float64; complex refused, naming ``dtype``)
    dtype = compute_dtype(as_array(np.empty(0, dtype), "dtype"))
    bias_shape = tuple(weight_shape)[:1] if bias else None
    params, _ = describe_conv(input_shape, weight_shape, bias_shape, dtype, stride, padding,
                              dilation, groups, padding_mode)
    if params.batch == 0:
        return Explanation(problem=params.describe(), candidates=[], choice="none",
                           reason="a batch of zero samples: the empty output is returned without "
                           "running a backend", mode="no computation")
    zero_form = params.explicitly_padded() if params.padding_mode != "zeros" else params
    ranking = plan(zero_form)
    # times measured in this process; with autotuning on, also those in the wisdom file (the
    # next call would use them)
    measured = measure.remembered_times(measure.wisdom_key(zero_form),
                                        include_file=measure.get_autotune())
    rank_one = None
    if weight is not None:
        rank_one = rank_one_factors(weight, params.dtype) is not None
    candidates = []
    for name, seconds in ranking.ranking:
        entry = {"algorithm": name, "eligible": True, "seconds": seconds, "source": "(predicted)"}
        if measured and name in measured:
            entry.update(seconds=measured[name], source="(measured)")
        if name == "separable" and rank_one is False:
            entry.update(eligible=False, reason=NOT_RANK_ONE)
        elif name == "separable" and rank_one is None:
            entry["source"] += " if every kernel is rank 1"
        candidates.append(entry)
    for name, reason in ranking.ineligible.items():
        candidates.append({"algorithm": name, "eligible": False, "reason": reason})
    eligible = sorted((c for c in candidates if c["eligible"]), key=lambda c: c["seconds"])
    # without the weights, separable's rank is unknown: report the choice for a full-rank weight
    runnable = [c for c in eligible if not (c["algorithm"] == "separable" and rank_one is None)]
    best = runnable[0]
    reason = "fastest when measured" if best["source"] == "(measured)" else "lowest predicted time"
    if eligible[0] is not best:
        reason += "; separable would win if every kernel were rank 1"
    return Explanation(problem=params.describe(), candidates=candidates, choice=best["algorithm"],
                       reason=reason, mode=_model_mode())
