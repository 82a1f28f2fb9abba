import atexit
import os
import shutil
import tempfile

# --- an isolated fastconv cache for the whole run ------------------------------------------------
# Tests that pin what ``auto`` chooses must see the shipped cost model, not the calibration or the
# wisdom a developer's `python -m fastconv calibrate` / autotuning left in their cache directory;
# and the run must not write wisdom there.  Set before anything imports fastconv (the calibration is
# read lazily, on the first decision); child processes started by tests inherit it.  Tests of the
# cache mechanisms point these variables at their own temporary paths.
_ISOLATED_CACHE = tempfile.mkdtemp(prefix="fastconv-test-cache-")
os.environ["FASTCONV_CACHE_DIR"] = _ISOLATED_CACHE
os.environ["FASTCONV_WISDOM"] = os.path.join(_ISOLATED_CACHE, "wisdom.json")
atexit.register(shutil.rmtree, _ISOLATED_CACHE, ignore_errors=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402


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

