"""The data-dependent rules that protect correctness, each stated once.

* **Non-finite data**: ``fft`` and ``winograd`` never run when an operand holds NaN or Inf: a
  transform spreads one non-finite value over the whole output (fft) or its whole tile (winograd),
  while the direct definition confines it to the windows that touch it.
* **Rank**: ``separable`` runs only when every (k, c) kernel is numerically rank 1 (an SVD per
  kernel, ``separable.factorize``), checked only when separable would otherwise be chosen.
* **Framing zeros**: ``direct``'s input gradient is a correlation of the output gradient framed by
  zeros with the flipped weights; with a NaN or Inf among the operands, 0 * Inf puts NaN where
  the definition has no product at all.  im2col's gradient scatters only real products.

Shape-only rules (what a backend supports at all) live in each backend's ``supports``.
"""
from __future__ import annotations

import numpy as np

from ..backends import separable
from ..backends._common import all_finite

SPREADS_NON_FINITE = ("fft", "winograd")
NOT_RANK_ONE = "some kernel is not numerically rank 1"


def non_finite_reason(name: str) -> str:
    return f"the data holds NaN or Inf, which {name} would spread beyond the windows touching it"


def rank_one_factors(weight, dtype):
    """The (column, row) factors of every (k, c) kernel of ``weight``, or None if one is not rank 1."""
    return separable.factorize(np.asarray(weight), dtype)


class DataChecks:
    """Data-dependent eligibility on one call's operands, each check computed at most once and only
    when a decision needs it.  ``operands`` are the arrays whose values reach the output (input and
    weight; for a gradient, the output gradient and the other operand); ``weight`` is the kernel
    the separable rule factorises, if any."""

    def __init__(self, *operands, weight=None, dtype=None, known=None):
        self.operands = operands
        self.weight, self.dtype = weight, dtype
        # ``known``: id(array) -> finite, shared by the checks of one call (a backward pass's two
        # gradients read the output gradient both; each array is scanned once)
        self._known = {} if known is None else known
        self._finite = None
        self._factors = False  # False: not computed yet; None: not rank 1

    def finite(self) -> bool:
        if self._finite is None:
            self._finite = True
            for operand in self.operands:
                if operand is None:
                    continue
                if id(operand) not in self._known:
                    self._known[id(operand)] = all_finite(operand)
                if not self._known[id(operand)]:
                    self._finite = False
                    break
        return self._finite

    def factors(self):
        if self._factors is False:
            self._factors = rank_one_factors(self.weight, self.dtype)
        return self._factors

    def rejects(self, name: str, operation: str = "forward") -> str | None:
        """Why backend ``name`` must not run ``operation`` (``"forward"``, ``"backward:input"``,
        ``"backward:weight"``) on this data (None if it may)."""
        if name == "separable" and self.factors() is None:
            return NOT_RANK_ONE
        if name in SPREADS_NON_FINITE and not self.finite():
            return non_finite_reason(name)
        if name == "direct" and operation == "backward:input" and not self.finite():
            return ("the data holds NaN or Inf, which direct's input gradient would multiply by the "
                    "zeros framing the output gradient")
        if name == "direct" and operation == "backward:weight" and not self.finite():
            return ("the data holds NaN or Inf, which direct's weight gradient would multiply by the "
                    "zeros that widen the output gradient over the discarded columns")
        return None
