"""scipy's own tests of ``convolve2d`` / ``correlate2d``, run against fastconv.

The test classes come from the installed scipy (``scipy/signal/tests/test_signaltools.py``, shipped in
scipy's wheels), whatever its version.  While each of their tests runs:

* ``scipy.signal.convolve2d`` / ``correlate2d``, and the names the test module bound to them, are
  fastconv's functions; a test parametrised with scipy's function objects gets fastconv's instead;
* scipy's C kernel, ``scipy.signal._sigtools._convolve2d``, raises: work handed back to scipy fails
  the test instead of passing it;
* a test that never calls fastconv fails too, so a test of scipy-only behaviour cannot pass as ours
  (those are listed in ``SCIPY_ONLY`` with the reason, and skipped with it).

``SUITES`` names the scipy classes that run here: the 2-D ones and, for the N-d API (issue 19),
``TestConvolve``, ``TestCorrelate``, ``TestCorrelateReal``, ``TestCorrelateComplex``,
``TestFFTConvolve``, ``TestOAConvolve`` and ``TestAllFreqConvolves``.  For those, scipy's own N-d
paths are trapped as well: its C kernel ``_sigtools._correlateND``, its frequency-domain core
``_signaltools._freq_domain_conv`` and the check that sends its 1-D direct path to NumPy
(``_signaltools._np_conv_ok``) raise.

Tests fastconv does not pass because it leaves a feature out are listed in ``EXPECTED_FAILURES``
with the reason, and run as strict xfails (a fixed one fails, to be removed from the list).

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
from scipy.signal import _signaltools

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
    "convolve": fastconv.convolve,
    "correlate": fastconv.correlate,
    "fftconvolve": fastconv.fftconvolve,
    "oaconvolve": fastconv.oaconvolve,
    "choose_conv_method": fastconv.choose_conv_method,
}
SUITES = (
    "TestConvolve2d", "TestCorrelate2d",
    "TestConvolve", "TestCorrelate", "TestCorrelateReal", "TestCorrelateComplex",
    "TestFFTConvolve", "TestOAConvolve", "TestAllFreqConvolves",
)

# "Class.test" -> why fastconv fails it: a feature it leaves out.  Run as strict xfails.
EXPECTED_FAILURES = {
}

# "Class.test" -> why it does not test fastconv (it is skipped with that reason).
SCIPY_ONLY: dict[str, str] = {}

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
        "one of scipy's kernels (_sigtools._convolve2d / _correlateND, _freq_domain_conv, or the "
        "NumPy path of its 1-D convolve) was called: the work went to scipy's C kernel, not "
        "fastconv's"
    )


@pytest.fixture(autouse=True)
def fastconv_in_place_of_scipy(monkeypatch):
    for name, function in _COUNTED.items():
        monkeypatch.setattr(scipy.signal, name, function)
        if hasattr(scipy_tests, name):
            monkeypatch.setattr(scipy_tests, name, function)
    monkeypatch.setattr(scipy.signal._sigtools, "_convolve2d", _handed_back_to_scipy)
    monkeypatch.setattr(scipy.signal._sigtools, "_correlateND", _handed_back_to_scipy)
    monkeypatch.setattr(_signaltools, "_freq_domain_conv", _handed_back_to_scipy)
    monkeypatch.setattr(_signaltools, "_np_conv_ok", _handed_back_to_scipy)


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
        if qualified_name in EXPECTED_FAILURES:
            _expect_failure(test, args, kwargs, EXPECTED_FAILURES[qualified_name])
        result = test(*args, **kwargs)
        if _fastconv_calls[0] == calls_before:
            pytest.fail(
                f"scipy's {qualified_name} never called fastconv's "
                f"{' / '.join(FASTCONV_FUNCTIONS)}: list it in SCIPY_ONLY with the reason"
            )
        return result

    return run


def _expect_failure(test, args, kwargs, reason):
    """A strict xfail: the test must fail (any exception) and is then reported as xfailed with
    ``reason``; passing is an error, so a fixed feature is noticed and taken off the list."""
    try:
        test(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - any failure is the expected one; the reason says why
        pytest.xfail(f"{reason} [{type(error).__name__}: {str(error)[:120]}]")
    pytest.fail(f"listed in EXPECTED_FAILURES ({reason}) but passes: take it off the list")


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
        if name == "choose_conv_method":
            continue  # computes no convolution without measure=True
        for method in (("direct", "fft") if name in ("convolve", "correlate") else (None,)):
            kwargs = {} if method is None else {"method": method}
            for in1, in2 in (([[1.0, 2.0, 4.0]], [[3.0, 5.0]]), ([1.0, 2.0, 4.0], [3.0, 5.0])):
                if name.endswith("2d") and np.ndim(in1) != 2:
                    continue
                with pytest.raises(AssertionError, match="scipy's C kernel"):
                    _SCIPY_FUNCTIONS[name](in1, in2, **kwargs)
    calls_before = _fastconv_calls[0]
    scipy.signal.convolve2d([[1.0, 2.0]], [[3.0]])
    assert _fastconv_calls[0] == calls_before + 1


def test_the_suites_exist_in_this_scipy():
    """A renamed class would silently run nothing."""
    missing = [name for name in SUITES if not hasattr(scipy_tests, name)]
    assert not missing, f"scipy {scipy.__version__} has no {missing} in its test_signaltools"
