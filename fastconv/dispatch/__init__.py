"""The one place where a convolution algorithm is chosen.

``algorithm="auto"`` ranks the backends that support a problem by a cost model (:mod:`.model`:
each backend's cost features times per-ISA coefficients) and then applies the data-dependent rules
that protect correctness (:mod:`.eligibility`: no transform on NaN/Inf data, separable only for
rank-1 kernels).  ``algorithm="measure"`` and autotuning time the candidates instead
(:mod:`.measure`).  :mod:`.forward`, :mod:`.backward` and :mod:`.signal` decide for conv2d's
forward, its gradients and the scipy.signal API; :mod:`.explain` reports a decision.

Shape-only work (eligibility, estimates, ranking) is memoised per problem, so a repeated shape costs
a dictionary lookup; every memo is cleared by the model's one reset.
"""
from ..backends import BACKENDS
from .._wisdom import wisdom_path
from .backward import (BACKWARD_ALGORITHMS, choose_backward, choose_gradients,
                       estimate_backward_seconds)
from .decisions import ALGORITHMS, Decision, Plan, algorithms, check_algorithm
from .explain import Explanation, explain
from .forward import choose_forward, measure_forward, plan
from .measure import forget_measurements, get_autotune, set_autotune, wisdom_key
from .model import (FEATURE_NAMES, MODEL, SHIPPED_COEFFICIENTS, cost_features, estimate_seconds,
                    on_model_change, set_cost_coefficients)
from .signal import (choose_signal, estimate_signal_seconds, integer_fft_is_exact,
                     signal_ranking)

__all__ = [
    "ALGORITHMS", "BACKENDS", "BACKWARD_ALGORITHMS", "Decision", "Explanation", "FEATURE_NAMES",
    "MODEL", "Plan", "SHIPPED_COEFFICIENTS", "algorithms", "check_algorithm", "choose_backward",
    "choose_forward", "choose_gradients", "choose_signal", "cost_features",
    "estimate_backward_seconds", "estimate_seconds", "estimate_signal_seconds", "explain",
    "forget_measurements", "get_autotune", "integer_fft_is_exact", "measure_forward",
    "on_model_change", "plan", "set_autotune", "set_cost_coefficients", "signal_ranking",
    "wisdom_key", "wisdom_path",
]
