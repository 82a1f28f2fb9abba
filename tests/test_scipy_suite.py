"""scipy's own tests of ``convolve2d`` / ``correlate2d``, run against fastconv.

The test classes come from the installed scipy (``scipy/signal/tests/test_signaltools.py``, shipped in
scipy's wheels), whatever its version.  While each of their tests runs:

* ``scipy.signal.convolve2d`` / ``correlate2d``, and the names the test module bound to them, are
  fastconv's functions; a test parametrised with scipy's function objects gets fastconv's instead;
* scipy's C kernel, ``scipy.signal._sigtools._convolve2d``, raises: work handed back to scipy fails
  the test instead of passing it;
* a test that never calls fastconv fails too, so a test of scipy-only behaviour cannot pass as ours
  (those are listed in ``SCIPY_ONLY`` with the reason, and skipped with it).

``SUITES`` names the scipy classes that run here.  When fastconv has the N-d signal API (issue 15),
the same mechanism runs ``TestConvolve``, ``TestCorrelate``, ``TestFFTConvolve`` and
``TestOAConvolve``: add their functions to ``FASTCONV_FUNCTIONS`` and the classes to ``SUITES``.

scipy's ``slow`` tests are skipped unless ``FASTCONV_SCIPY_SLOW=1`` (scipy's default test run
deselects them too); ``TestConvolve2d.test_large_array`` is one: it needs about 7 GiB.

``python -m pytest tests/test_scipy_suite.py -v -rs`` lists every test that ran and every skip with
its reason.
"""
from __future__ import annotations

import functools
import importlib
import os
import warnings

import numpy as np
import pytest
import scipy.signal

import fastconv

try:
    with warnings.catch_warnings():
        # scipy's module uses markers its own conftest.py registers (skip_xp_backends, slow, ...);
        # the ones that affect which of our tests run are handled below
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        scipy_tests = importlib.import_module("scipy.signal.tests.test_signaltools")
except ModuleNotFoundError as error:
    pytest.skip(
        f"scipy's test modules are not installed ({error}); they ship in scipy's wheels",
        allow_module_level=True,
    )

# scipy name -> fastconv's implementation
FASTCONV_FUNCTIONS = {
    "convolve2d": fastconv.convolve2d,
    "correlate2d": fastconv.correlate2d,
}
SUITES = ("TestConvolve2d", "TestCorrelate2d")

# "Class.test" -> why it does not test fastconv (it is skipped with that reason).
SCIPY_ONLY = {
    "TestCorrelate2d.test_consistency_correlate_funcs":
        "compares scipy.signal.correlate (1-D) with np.correlate; no correlate2d call",
}

RUN_SLOW = os.environ.get("FASTCONV_SCIPY_SLOW", "") == "1"

_SCIPY_FUNCTIONS = {name: getattr(scipy.signal, name) for name in FASTCONV_FUNCTIONS}
_fastconv_calls = [0]


def _counted(name):
    function = FASTCONV_FUNCTIONS[name]

    @functools.wraps(function)
    def call(*args, **kwargs):
        _fastconv_calls[0] += 1
        return function(*args, **kwargs)

    return call


_COUNTED = {name: _counted(name) for name in FASTCONV_FUNCTIONS}


def _handed_back_to_scipy(*args, **kwargs):
    raise AssertionError(
        "scipy.signal._sigtools._convolve2d was called: the work went to scipy's C kernel, not "
        "fastconv's"
    )


@pytest.fixture(autouse=True)
def fastconv_in_place_of_scipy(monkeypatch):
    for name, function in _COUNTED.items():
        monkeypatch.setattr(scipy.signal, name, function)
        if hasattr(scipy_tests, name):
            monkeypatch.setattr(scipy_tests, name, function)
    monkeypatch.setattr(scipy.signal._sigtools, "_convolve2d", _handed_back_to_scipy)


@pytest.fixture
def xp(request):
    """scipy's array-namespace fixture, for NumPy only (fastconv takes NumPy arrays): honours the
    skip/xfail markers that name NumPy."""
    for action in ("skip", "xfail"):
        for marker in request.node.iter_markers(f"{action}_xp_backends"):
            if "numpy" in marker.args:
                getattr(pytest, action)(marker.kwargs.get("reason") or f"scipy: {action} on NumPy")
    try:
        from scipy._lib._array_api import array_namespace
    except ImportError:  # a scipy without array-API support
        return np
    return array_namespace(np.empty(0))


def _as_fastconv(value):
    for name, function in _SCIPY_FUNCTIONS.items():
        if value is function:
            return _COUNTED[name]
    return value


def _on_fastconv(test, qualified_name):
    """``test`` with scipy's functions among its arguments replaced by fastconv's, failing if it
    never reaches fastconv.  ``functools.wraps`` keeps its signature and markers for pytest."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        if qualified_name in SCIPY_ONLY:
            pytest.skip(f"scipy-only: {SCIPY_ONLY[qualified_name]}")
        if not RUN_SLOW and (any(True for _ in _markers(run, "slow"))):
            pytest.skip("scipy marks it slow; FASTCONV_SCIPY_SLOW=1 runs it")
        args = [_as_fastconv(value) for value in args]
        kwargs = {key: _as_fastconv(value) for key, value in kwargs.items()}
        calls_before = _fastconv_calls[0]
        result = test(*args, **kwargs)
        if _fastconv_calls[0] == calls_before:
            pytest.fail(
                f"scipy's {qualified_name} never called fastconv's "
                f"{' / '.join(FASTCONV_FUNCTIONS)}: list it in SCIPY_ONLY with the reason"
            )
        return result

    return run


def _markers(function, name):
    return (mark for mark in getattr(function, "pytestmark", []) if mark.name == name)


def _fastconv_suite(scipy_class):
    """A subclass of scipy's test class (its class markers and setup kept) whose every test runs
    through :func:`_on_fastconv`."""
    tests = {
        name: _on_fastconv(getattr(scipy_class, name), f"{scipy_class.__name__}.{name}")
        for name in dir(scipy_class)
        if name.startswith("test") and callable(getattr(scipy_class, name))
    }
    return type(scipy_class.__name__, (scipy_class,), dict(tests, __module__=__name__))


for _name in SUITES:
    if hasattr(scipy_tests, _name):  # a class this scipy version does not have is not run
        globals()[_name] = _fastconv_suite(getattr(scipy_tests, _name))
del _name


def test_the_patch_reaches_fastconv_and_blocks_scipys_kernel(fastconv_in_place_of_scipy):
    """The mechanism itself: the names scipy's tests call are fastconv's, and scipy's own path to
    its C kernel fails."""
    for name in FASTCONV_FUNCTIONS:
        assert getattr(scipy.signal, name) is _COUNTED[name]
        if hasattr(scipy_tests, name):
            assert getattr(scipy_tests, name) is _COUNTED[name]
        with pytest.raises(AssertionError, match="scipy's C kernel"):
            _SCIPY_FUNCTIONS[name]([[1.0, 2.0]], [[3.0]])
    calls_before = _fastconv_calls[0]
    scipy.signal.convolve2d([[1.0, 2.0]], [[3.0]])
    assert _fastconv_calls[0] == calls_before + 1


def test_the_suites_exist_in_this_scipy():
    """A renamed class would silently run nothing."""
    missing = [name for name in SUITES if not hasattr(scipy_tests, name)]
    assert not missing, f"scipy {scipy.__version__} has no {missing} in its test_signaltools"
