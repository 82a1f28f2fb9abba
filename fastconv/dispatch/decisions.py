"""What a decision is: the names ``algorithm=`` accepts, a shape-only plan, and a choice."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..backends import BACKENDS

ALGORITHMS = ("auto", "measure") + tuple(BACKENDS)


def algorithms() -> tuple[str, ...]:
    """Names accepted by ``algorithm=``: ``"auto"`` (cost model), ``"measure"`` (time the
    eligible backends once per problem) and every backend."""
    return ALGORITHMS


def check_algorithm(algorithm) -> str:
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return algorithm


def refuse_requested(algorithm: str, reason: str | None) -> None:
    """ValueError for an explicitly requested backend that cannot run the problem."""
    if reason is not None:
        raise ValueError(f"algorithm={algorithm!r} cannot run this problem: {reason}")


@dataclass
class Plan:
    """Shape-only part of a decision: eligible backends ranked by predicted time."""

    ranking: list[tuple[str, float]]
    ineligible: dict[str, str] = field(default_factory=dict)


@dataclass
class Decision:
    algorithm: str
    reason: str
    factors: tuple | None = None  # the separable factors, when the separable backend was chosen
    # signal API only: run the FFT in 64-bit floats and round to the nearest integer, because the
    # data are integer-valued and the rounding bound proves the rounded result exact
    round_to_integers: bool = False
