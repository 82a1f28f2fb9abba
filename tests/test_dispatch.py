"""The dispatcher: eligibility rules, measured autotuning with persisted wisdom, explain(), calibration."""
import json
import multiprocessing
import os
import stat

import numpy as np
import pytest

import fastconv
from fastconv import calibration, dispatch
from fastconv._params import make_conv_params
from fastconv._wisdom import load_calibration
from tests import naive


@pytest.fixture
def wisdom_file(tmp_path, monkeypatch):
    path = tmp_path / "wisdom.json"
    monkeypatch.setenv("FASTCONV_WISDOM", str(path))
    dispatch.forget_measurements()
    yield path
    dispatch.forget_measurements()
    dispatch.set_autotune(False)


def _decision(x, w, algorithm="auto", **kwargs):
    params, x, w, _, _ = make_conv_params(x, w, None, **kwargs)
    return dispatch.choose_forward(params, x, w, algorithm)


def test_algorithms_lists_every_backend_and_the_modes():
    assert set(fastconv.algorithms()) == {
        "auto", "measure", "direct", "im2col", "fft", "separable", "winograd"}


def test_auto_picks_fft_for_a_large_kernel_but_never_on_nan(rng):
    x = rng.standard_normal((1, 1, 256, 256))
    w = rng.standard_normal((1, 1, 31, 31))
    assert _decision(x, w).algorithm == "fft"
    x[0, 0, 100, 100] = np.nan
    assert _decision(x, w).algorithm != "fft"
    got = fastconv.conv2d(x, w)
    expected = naive.conv2d(x, w)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(got).sum() == 31 * 31  # only the windows that touch the NaN
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], rtol=1e-9)


def test_auto_never_picks_fft_when_the_weight_is_infinite(rng):
    x = rng.standard_normal((1, 1, 256, 256))
    w = rng.standard_normal((1, 1, 31, 31))
    w[0, 0, 3, 3] = np.inf
    assert _decision(x, w).algorithm != "fft"


@pytest.fixture
def separable_favoured():
    """A cost model under which separable always ranks first, to test the eligibility rule."""
    dispatch.set_cost_coefficients({"separable": [0.0, 0.0, 0.0]})
    yield
    dispatch.set_cost_coefficients(None)


def test_auto_uses_separable_only_for_rank_one_kernels(rng, separable_favoured):
    x = rng.standard_normal((1, 2, 64, 64)).astype(np.float32)
    rank_one = (rng.standard_normal((3, 2, 9, 1)) * rng.standard_normal((3, 2, 1, 9))).astype(np.float32)
    full_rank = rng.standard_normal((3, 2, 9, 9)).astype(np.float32)
    assert _decision(x, rank_one).algorithm == "separable"
    assert _decision(x, full_rank).algorithm != "separable"
    got = fastconv.conv2d(x, rank_one)
    magnitude = naive.conv2d(np.abs(x), np.abs(rank_one))
    assert np.all(np.abs(got - naive.conv2d(x, rank_one)) <= 5e-6 * magnitude)


def test_requested_backend_is_honoured(rng):
    x = rng.standard_normal((1, 2, 16, 16))
    w = rng.standard_normal((3, 2, 3, 3))
    for name in ("direct", "im2col", "fft"):
        assert _decision(x, w, name).algorithm == name


def test_plans_are_memoised(rng):
    params, *_ = make_conv_params(rng.standard_normal((2, 3, 20, 20)), rng.standard_normal((4, 3, 3, 3)))
    assert dispatch.plan(params) is dispatch.plan(params)


def test_measure_mode_times_backends_and_persists_the_winner(wisdom_file, rng):
    x = rng.standard_normal((1, 2, 24, 24))
    w = rng.standard_normal((3, 2, 5, 5))
    got = fastconv.conv2d(x, w, algorithm="measure")
    np.testing.assert_allclose(got, naive.conv2d(x, w), rtol=1e-9, atol=1e-9)
    stored = json.loads(wisdom_file.read_text())["entries"]
    assert len(stored) == 1
    (record,) = stored.values()
    assert set(record["times"]) == {"direct", "im2col", "fft"}  # separable: weight not rank 1
    # a fresh process (simulated: memory dropped) reuses the file instead of measuring again
    dispatch.forget_measurements()
    params, xc, wc, _, _ = make_conv_params(x, w)
    decision = dispatch.choose_forward(params, xc, wc, "measure")
    fastest = min(record["times"], key=record["times"].get)
    assert decision.algorithm == fastest
    assert "measured" in decision.reason


def test_set_autotune_makes_auto_measure(wisdom_file, rng):
    fastconv.set_autotune(True)
    assert fastconv.get_autotune()
    x = rng.standard_normal((1, 1, 20, 20))
    w = rng.standard_normal((2, 1, 3, 3))
    fastconv.conv2d(x, w)
    assert wisdom_file.exists()
    report = fastconv.explain(x.shape, w.shape, dtype="float64")
    assert "(measured)" in str(report)


def test_measured_winner_is_skipped_when_this_call_has_nan(wisdom_file, rng):
    x = rng.standard_normal((1, 1, 128, 128))
    w = rng.standard_normal((1, 1, 31, 31))
    params, xc, wc, _, _ = make_conv_params(x, w)
    key = dispatch.wisdom_key(params)
    dispatch.measure.wisdom().update({key: {"times": {"fft": 1e-6, "direct": 1.0, "im2col": 2.0}}})
    assert dispatch.choose_forward(params, xc, wc, "measure").algorithm == "fft"
    x[0, 0, 5, 5] = np.nan
    params, xc, wc, _, _ = make_conv_params(x, w)
    assert dispatch.choose_forward(params, xc, wc, "measure").algorithm == "direct"


def test_corrupt_wisdom_file_warns_once_and_is_ignored(wisdom_file, rng):
    wisdom_file.write_text("{ this is not json")
    x = rng.standard_normal((1, 1, 12, 12))
    w = rng.standard_normal((1, 1, 3, 3))
    with pytest.warns(RuntimeWarning, match="corrupt"):
        got = fastconv.conv2d(x, w, algorithm="measure")
    np.testing.assert_allclose(got, naive.conv2d(x, w), rtol=1e-9, atol=1e-12)
    # the next write replaces the corrupt file with a valid one
    assert json.loads(wisdom_file.read_text())["format"] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_wisdom_location_works_in_memory(tmp_path, monkeypatch, rng):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("FASTCONV_WISDOM", str(locked / "wisdom.json"))
    dispatch.forget_measurements()
    x = rng.standard_normal((1, 1, 12, 12))
    w = rng.standard_normal((1, 1, 3, 3))
    with pytest.warns(RuntimeWarning, match="in memory only"):
        fastconv.conv2d(x, w, algorithm="measure")
    assert not (locked / "wisdom.json").exists()
    dispatch.forget_measurements()


def test_unwritable_wisdom_path_works_in_memory(tmp_path, monkeypatch, rng):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FASTCONV_WISDOM", str(blocker / "wisdom.json"))
    dispatch.forget_measurements()
    x = rng.standard_normal((1, 1, 12, 12))
    w = rng.standard_normal((1, 1, 3, 3))
    with pytest.warns(RuntimeWarning, match="in memory only"):
        got = fastconv.conv2d(x, w, algorithm="measure")
    np.testing.assert_allclose(got, naive.conv2d(x, w), rtol=1e-9, atol=1e-12)
    dispatch.forget_measurements()


def _write_entries(path, prefix, count):
    from fastconv._wisdom import JsonStore

    store = JsonStore(path, "wisdom")
    for index in range(count):
        store.update({f"{prefix}-{index}": {"times": {"direct": float(index)}}})


def test_two_processes_writing_wisdom_never_corrupt_it(tmp_path):
    path = tmp_path / "wisdom.json"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_entries, args=(path, name, 30)) for name in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    entries = json.loads(path.read_text())["entries"]
    assert len(entries) == 60  # merged, nothing lost


def test_explain_reports_every_backend_and_the_choice():
    report = fastconv.explain((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
    data = report.as_dict()
    assert data["choice"] in {"direct", "im2col", "fft", "winograd"}
    assert {c["algorithm"] for c in data["candidates"]} == {
        "direct", "im2col", "fft", "separable", "winograd"}
    text = str(report)
    assert "choice: " + data["choice"] in text and "(predicted)" in text


def test_explain_with_weights_applies_the_rank_rule(rng):
    full_rank = rng.standard_normal((1, 1, 9, 9))
    report = fastconv.explain((1, 1, 512, 512), full_rank.shape, weight=full_rank)
    separable_entry = next(c for c in report.candidates if c["algorithm"] == "separable")
    assert not separable_entry["eligible"] and "rank 1" in separable_entry["reason"]


def test_explain_validates_like_conv2d():
    with pytest.raises(ValueError, match="groups"):
        fastconv.explain((1, 3, 8, 8), (4, 1, 3, 3), groups=2)


def _synthetic_direct_rows(grid, truth):
    rows = []
    for input_shape, weight_shape, kwargs, dtype in grid:
        params, *_ = make_conv_params(np.zeros(input_shape, dtype), np.zeros(weight_shape, dtype),
                                      None, **kwargs)
        features = np.array(dispatch.cost_features("direct", params, 2))
        rows.append(("direct", params, float(truth @ features)))
    return rows


# call, waking the thread pool, one-accumulator flops, channel-blocked flops, channel-blocked passes,
# bytes of the padded copy, one-accumulator positions
DIRECT_TRUTH = np.array([2e-6, 8e-6, 1 / 90e9, 1 / 120e9, 5e-8, 1 / 20e9, 1 / 2e9])


def test_calibration_fit_recovers_known_coefficients(rng):
    rows = _synthetic_direct_rows(calibration.calibration_grid(quick=True), DIRECT_TRUTH)
    fitted = calibration.fit(rows, threads=2)["direct"]
    np.testing.assert_allclose(fitted, DIRECT_TRUTH, rtol=1e-6)


def test_calibration_keeps_the_default_of_a_coefficient_no_problem_exercises():
    # CNN layers only: no problem runs a one-accumulator kernel, so its coefficients cannot be fitted
    layers = [case for case in calibration.calibration_grid(quick=True)
              if case[1][0] // case[2].get("groups", 1) >= 2]
    rows = _synthetic_direct_rows(layers, DIRECT_TRUTH)
    fitted = np.array(calibration.fit(rows, threads=2)["direct"])
    names = dispatch.FEATURE_NAMES["direct"]
    unexercised = [names.index("one_channel_flops"), names.index("one_channel_positions")]
    for index in unexercised:
        assert fitted[index] == dispatch.MODEL.shipped["direct"][index]
    keep = np.isin(np.arange(len(DIRECT_TRUTH)), unexercised, invert=True)
    np.testing.assert_allclose(fitted[keep], DIRECT_TRUTH[keep], rtol=1e-6)


def test_the_test_run_has_its_own_cache_directory():
    """tests/conftest.py points the calibration and wisdom files at a fresh directory, so tests that
    pin auto's choices see the shipped cost model whatever the developer calibrated or measured."""
    from pathlib import Path

    from fastconv._config import cache_dir

    isolated = Path(os.environ["FASTCONV_CACHE_DIR"])
    assert isolated.name.startswith("fastconv-test-cache-")
    assert cache_dir() == isolated and dispatch.wisdom_path().parent == isolated
    assert load_calibration() is None
    assert not dispatch.MODEL.calibrated
    assert dispatch.MODEL.coefficients == dispatch.MODEL.shipped


def test_calibration_from_another_cpu_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    (tmp_path / "calibration.json").write_text(json.dumps({
        "format": 1,
        "entries": {"model": {"machine": "some-other-cpu", "coefficients": {"direct": [1.0, 1.0]}}},
    }))
    assert load_calibration() is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_finds_any_non_finite_value(dtype, bad, rng):
    from fastconv.backends._common import all_finite

    x = rng.standard_normal((3, 5, 7)).astype(dtype)
    assert all_finite(x, None, np.arange(4))
    x[2, 4, 6] = bad
    assert not all_finite(np.ones(3), x)
    if np.dtype(dtype).kind == "c":
        y = np.zeros(4, dtype)
        y[1] = complex(0, bad)
        assert not all_finite(y)


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
@pytest.mark.parametrize("where", [0, (1 << 16) - 1, 1 << 16, -1])
def test_all_finite_on_every_thread_finds_a_value_in_any_block(dtype, where):
    """Arrays of a few blocks and more are scanned block by block in parallel: a NaN in the first,
    a block's last or next block's first value, or the array's last value is found."""
    from fastconv.backends import _common

    x = np.ones(5 * _common._FINITE_BLOCK + 3, dtype)
    assert _common.all_finite(x)
    x[where] = np.nan
    assert not _common.all_finite(x)


def test_a_backward_pass_scans_each_operand_for_nan_once(monkeypatch, rng):
    """The input and weight gradients' data checks share the output gradient's scan (and the
    padding rule's scan of it, for a padded layer)."""
    from fastconv.dispatch import eligibility
    from fastconv import gradients

    scanned = []

    def counting(*arrays):
        scanned.extend(id(array) for array in arrays)
        return all_finite(*arrays)

    from fastconv.backends._common import all_finite
    monkeypatch.setattr(eligibility, "all_finite", counting)
    monkeypatch.setattr(gradients, "all_finite", counting)
    x = rng.standard_normal((2, 3, 12, 12))
    w = rng.standard_normal((4, 3, 3, 3))
    grad = rng.standard_normal((2, 4, 12, 12))
    fastconv.conv2d_backward(grad, x, w, padding=1)
    assert scanned and len(scanned) == len(set(scanned))


def test_measure_mode_covers_conv2d_backward(wisdom_file, rng):
    x = rng.standard_normal((2, 3, 12, 12))
    w = rng.standard_normal((4, 3, 3, 3))
    grad = rng.standard_normal((2, 4, 12, 12))
    got = fastconv.conv2d_backward(grad, x, w, padding=1, algorithm="measure")
    expected = naive.conv2d_backward(grad, x, w, padding=1)
    for part, reference in zip(got, expected):
        np.testing.assert_allclose(part, reference, rtol=1e-9, atol=1e-9)
    entries = json.loads(wisdom_file.read_text())["entries"]
    # each gradient is measured (and remembered) on its own: their best backends can differ
    assert sorted(key.split("|")[0] for key in entries) == ["backward:input", "backward:weight"]
    for entry in entries.values():
        assert set(entry["times"]) == {"direct", "im2col", "fft"}


# --- the model object: shipped sets per ISA, lazy calibration, one reset ----------------------------
@pytest.mark.parametrize("isa, full_width, expected", [
    ("avx512", False, "avx512"), ("avx512", True, "avx512-full-width"), ("avx2", None, "avx2"),
    ("neon", None, "avx2"), ("sse", None, "avx2"), ("generic", None, "avx2")])
def test_shipped_set_follows_the_target_isa(isa, full_width, expected, monkeypatch):
    from fastconv.dispatch.model import shipped_set_name

    monkeypatch.delenv("FASTCONV_COST_MODEL", raising=False)
    assert shipped_set_name(isa, full_width) == expected


def test_fma_width_probe_tells_split_from_full_width_units():
    """The probe's ratio of 64-byte to 32-byte multiply-add rates is about 1 (split) or 2 (full
    width) on x86; whichever this host is, the measured answer is stored and read back."""
    from fastconv import _fma_width
    from fastconv._wisdom import cpu_store, machine_fingerprint

    ratio = _fma_width.measure_width_ratio(iterations=20_000, repeats=3)
    # about 1 or 2; a short probe on a shared machine has been seen at 2.6 on a Zen 5
    assert 0.5 < ratio < 4
    _fma_width.full_width_fma.cache_clear()
    answer = _fma_width.full_width_fma()
    stored = cpu_store().get(f"fma_width_ratio_v2:{machine_fingerprint()}")
    assert isinstance(stored, float) and answer == (stored > _fma_width.FULL_WIDTH_RATIO)


def test_cost_model_override_names_the_variable(monkeypatch):
    from fastconv.dispatch.model import shipped_set_name

    monkeypatch.setenv("FASTCONV_COST_MODEL", "avx2")
    assert shipped_set_name("avx512") == "avx2"
    monkeypatch.setenv("FASTCONV_COST_MODEL", "pentium")
    with pytest.raises(ValueError, match="FASTCONV_COST_MODEL"):
        shipped_set_name()


@pytest.mark.parametrize("shipped_set", sorted(dispatch.SHIPPED_COEFFICIENTS))
def test_every_shipped_set_prices_every_backend_and_decides(shipped_set, rng, request):
    """Whatever the host, each ISA's set is complete, positive where it must be, and drives sane
    decisions: a 31x31 kernel on a large image goes to the FFT, a tiny problem to direct."""
    request.addfinalizer(lambda: dispatch.MODEL.use_shipped_set(None))
    dispatch.MODEL.use_shipped_set(shipped_set)
    shipped = dispatch.SHIPPED_COEFFICIENTS[shipped_set]
    assert set(shipped) == set(dispatch.FEATURE_NAMES)
    for name, values in shipped.items():
        assert len(values) == len(dispatch.FEATURE_NAMES[name]) and min(values) >= 0
    big = make_conv_params(rng.standard_normal((1, 1, 512, 512)), rng.standard_normal((1, 1, 31, 31)))[0]
    tiny = make_conv_params(rng.standard_normal((1, 1, 8, 8)), rng.standard_normal((1, 1, 3, 3)))[0]
    assert dispatch.plan(big).ranking[0][0] == "fft"
    assert dispatch.plan(tiny).ranking[0][0] == "direct"


def test_one_reset_clears_every_memo(rng):
    """Forward plans, signal rankings and the small-call fast paths were all decided with the old
    coefficients: changing them clears each."""
    from fastconv import _fast_paths

    x = rng.standard_normal((1, 1, 16, 16))
    w = rng.standard_normal((1, 1, 3, 3))
    fastconv.conv2d(x, w)
    fastconv.correlate2d(x[0, 0], w[0, 0], "valid")
    assert dispatch.forward._plans and dispatch.signal._signal_rankings
    dispatch.set_cost_coefficients(None)
    assert not dispatch.forward._plans and not dispatch.signal._signal_rankings
    assert not _fast_paths._signal_plans and not _fast_paths._conv_plans


def test_signal_api_and_gradients_use_the_calibration_without_a_forward_call(tmp_path):
    """The calibration file is read by the model on its first prediction, whichever operation makes
    it (it used to be read only by the forward planner)."""
    import subprocess
    import sys

    script = f"""
import json, os
os.environ["FASTCONV_CACHE_DIR"] = {str(tmp_path)!r}
from fastconv._wisdom import machine_fingerprint
coefficients = {{"direct": [1.0, 0.0, 0.0, 0.0], "fft": [0.0, 0.0, 0.0, 0.0, 0.0]}}
(open({str(tmp_path / 'calibration.json')!r}, "w")
 .write(json.dumps({{"format": 1, "entries": {{"model": {{"machine": machine_fingerprint(),
                                                       "coefficients": coefficients}}}}}})))
import numpy as np
from fastconv import dispatch
from fastconv._params import make_conv_params
params = make_conv_params(np.ones((1, 1, 9, 9)), np.ones((1, 1, 3, 3)))[0]
print(dispatch.signal_ranking(params)[0], dispatch.MODEL.calibrated)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["fft", "True"]


def test_dispatch_and_calibration_do_not_import_each_other_and_conv2d_needs_no_optimiser():
    import subprocess
    import sys

    script = """
import sys
import numpy as np
import fastconv
fastconv.conv2d(np.ones((1, 1, 6, 6)), np.ones((1, 1, 3, 3)))
fastconv.correlate2d(np.ones((6, 6)), np.ones((3, 3)))
print("fastconv.calibration" in sys.modules, "scipy.optimize" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["False", "False"]


def test_calibration_fits_median_times_and_reports_the_spread_of_separate_fits(rng):
    params = make_conv_params(np.ones((1, 1, 9, 9)), np.ones((1, 1, 3, 3)))[0]
    other = make_conv_params(np.ones((1, 1, 19, 19)), np.ones((1, 1, 3, 3)))[0]
    runs = [[("direct", params, 1.0), ("direct", other, 5.0)],
            [("direct", params, 3.0), ("direct", other, 4.0)],
            [("direct", params, 2.0), ("direct", other, 9.0)]]
    rows = calibration.median_rows(runs)
    assert [(name, p.key, seconds) for name, p, seconds in rows] == [
        ("direct", params.key, 2.0), ("direct", other.key, 5.0)]
    spread = calibration.coefficient_spread([{"direct": [1.0, 2.0, 0.0]}, {"direct": [3.0, 2.0, 0.0]},
                                             {}])
    assert spread == {"direct": [3.0, 1.0, 1.0]}


def test_im2col_prices_no_unfold_on_its_pointwise_path():
    """A 1x1 stride-1 unpadded layer multiplies the input itself: no bytes are unfolded; with
    padding or a stride the unfold (or shifted-tap) path moves data."""
    names = dispatch.FEATURE_NAMES["im2col"]
    pointwise = make_conv_params(np.ones((1, 8, 16, 16)), np.ones((4, 8, 1, 1)))[0]
    strided = make_conv_params(np.ones((1, 8, 16, 16)), np.ones((4, 8, 1, 1)), stride=2)[0]
    moved = names.index("bytes_moved")
    assert dispatch.cost_features("im2col", pointwise, 2)[moved] == 0
    assert dispatch.cost_features("im2col", strided, 2)[moved] > 0


@pytest.mark.parametrize("weight_shape, groups, left_out", [
    ((1, 1, 3, 3), 1, True), ((1, 1, 1, 1), 1, True), ((4, 1, 1, 1), 4, True),
    ((4, 4, 1, 1), 1, False), ((2, 1, 1, 1), 1, False)])
def test_auto_leaves_im2col_out_for_one_input_and_one_output_channel_per_group(
        weight_shape, groups, left_out):
    """Single images and depthwise layers, 1x1 kernels included (a 1 x 1 x positions GEMM only
    scales the plane); any layer with more channels per group keeps im2col as a candidate."""
    params = make_conv_params(np.ones((1, 4 if groups > 1 or weight_shape[1] == 4 else 1, 32, 32)),
                              np.ones(weight_shape), groups=groups)[0]
    ranking = dispatch.plan(params)
    assert ("im2col" in ranking.ineligible) == left_out
    assert ("im2col" in dict(ranking.ranking)) == (not left_out)


def test_auto_takes_im2col_for_a_pointwise_layers_weight_gradient(rng):
    """A 1x1 stride-1 unpadded layer's weight gradient is one GEMM per sample: auto leaves direct
    and fft out (asked for by name they still run); a 3x3 or strided 1x1 layer keeps every
    candidate, and the input gradient of a 1x1 layer too."""
    x = rng.standard_normal((2, 8, 6, 6))
    w = rng.standard_normal((4, 8, 1, 1))
    grad = rng.standard_normal((2, 4, 6, 6))
    params = make_conv_params(x, w)[0]
    weight_choice = dispatch.choose_backward(params, "auto", grad, x, operation="backward:weight",
                                             needs=(False, True))
    assert weight_choice.algorithm == "im2col"
    assert dispatch.backward.not_for_auto_backward("direct", params, "backward:weight")
    assert dispatch.backward.not_for_auto_backward("direct", params, "backward:input") is None
    strided = make_conv_params(x, w, stride=2)[0]
    assert dispatch.backward.not_for_auto_backward("direct", strided, "backward:weight") is None
    wide = make_conv_params(x, rng.standard_normal((4, 8, 3, 3)), padding=1)[0]
    assert dispatch.backward.not_for_auto_backward("direct", wide, "backward:weight") is None
    by_name = fastconv.conv2d_backward(grad, x, w, needs=("weight",), algorithm="direct")[1]
    np.testing.assert_allclose(by_name, fastconv.conv2d_backward(grad, x, w, needs=("weight",))[1],
                               rtol=1e-12, atol=1e-12)
