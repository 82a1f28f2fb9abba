"""The ``train`` command end to end on tiny IDX files written by the test."""
import argparse
import sys

import numpy as np
import pytest

from fastconv import training
from idx_files import write_tiny_dataset


@pytest.fixture
def tiny_data(tmp_path, monkeypatch, rng):
    monkeypatch.setenv("FASTCONV_DATA", str(write_tiny_dataset(tmp_path / "data", rng, train=96, test=40)))
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_train_save_resume_and_plot(tiny_data, capsys):
    checkpoint = tiny_data / "lenet.npz"
    history = training.main(["lenet", "--epochs", "2", "--batch-size", "16", "--optimizer", "adam",
                             "--lr", "0.003", "--save", str(checkpoint), "--no-progress"])
    assert len(history["test_acc"]) == 2 and all(s > 0 for s in history["seconds"])
    assert history["train_loss"][1] < history["train_loss"][0]
    out = capsys.readouterr().out
    assert "epoch 2: loss" in out and "test acc" in out

    pytest.importorskip("matplotlib")
    resumed = training.main(["lenet", "--epochs", "1", "--batch-size", "16", "--load", str(checkpoint),
                             "--save", str(checkpoint), "--plot", str(tiny_data / "curves.png"),
                             "--no-progress"])
    assert len(resumed["test_acc"]) == 3 and resumed["train_loss"][:2] == history["train_loss"]
    assert (tiny_data / "curves.png").stat().st_size > 1000
    assert "epoch 3: loss" in capsys.readouterr().out


def test_notes_configuration_float64_with_builtin_progress(tiny_data, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if tqdm were not installed
    history = training.main(["lenet", "--epochs", "1", "--batch-size", "32", "--activation", "sigmoid",
                             "--pool", "avg", "--optimizer", "sgd", "--lr", "0.9", "--dtype", "float64", "--limit", "64"])
    assert len(history["train_acc"]) == 1
    progress = capsys.readouterr().err
    assert "epoch 1 [" in progress and "64/64" in progress and "loss" in progress


def test_add_train_parser_wires_run_train():
    parser = argparse.ArgumentParser(prog="fastconv")
    training.add_train_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "lenet", "--epochs", "3", "--optimizer", "adam", "--pool", "avg"])
    assert args.func is training.run_train
    assert (args.epochs, args.optimizer, args.pool, args.batch_size) == (3, "adam", "avg", 256)
    defaults = parser.parse_args(["train", "lenet"])
    assert (defaults.optimizer, defaults.lr, defaults.activation, defaults.epochs) == ("adam", None, None, 10)


@pytest.mark.parametrize("argv, message", [
    (["lenet", "--batch-size", "0"], "--batch-size must be positive"),
    (["lenet", "--lr", "-1"], "--lr must be positive"),
])
def test_bad_arguments(argv, message):
    with pytest.raises(ValueError, match=message):
        training.main(argv)


def test_load_rejects_a_non_checkpoint(tmp_path):
    bogus = tmp_path / "weights.npz"
    np.savez(bogus, something=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastconv training checkpoint"):
        training.main(["lenet", "--load", str(bogus)])


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    history = {"train_loss": [1.0], "train_acc": [0.5], "test_acc": [0.5]}
    with pytest.raises(ValueError, match="pip install matplotlib"):
        training.plot_curves(history, tmp_path / "x.png")
