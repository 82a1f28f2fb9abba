import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# --- hypothesis profiles ---------------------------------------------------------------------------
# "ci" (the default) runs 200 examples per property, derandomised so that a CI failure reproduces
# bit for bit; "thorough" runs 10,000 fresh random examples per property.  Select with
# FASTCONV_HYPOTHESIS_PROFILE=thorough, or pytest's --hypothesis-profile=thorough (hypothesis' plugin
# applies that after this file has loaded, so the option wins over the variable).
# too_slow is suppressed because a property's first examples include loading Numba's kernel cache;
# the data generation itself is a few integer draws and a seed.
_SLOW_OK = [HealthCheck.too_slow]
settings.register_profile(
    "ci", max_examples=200, deadline=None, derandomize=True, suppress_health_check=_SLOW_OK,
    print_blob=True,
)
settings.register_profile(
    "thorough", max_examples=10_000, deadline=None, suppress_health_check=_SLOW_OK,
    print_blob=True,
)
settings.load_profile(os.environ.get("FASTCONV_HYPOTHESIS_PROFILE", "ci"))
