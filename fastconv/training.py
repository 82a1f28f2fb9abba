"""Train LeNet-5 on Fashion-MNIST with fastconv.nn: ``python -m fastconv train lenet ...``.

The lead's ``fastconv.__main__`` wires the ``train`` subcommand through :func:`add_train_parser` and
:func:`run_train`; :func:`main` runs it directly::

    python -c "from fastconv.training import main; main(['lenet', '--limit', '512', '--epochs', '1'])"
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import datasets, nn
from .dispatch import algorithms

DEFAULT_LR = {"sgd": 0.1, "adam": 2e-3}
EVAL_BATCH = 1000


# --- progress display ---------------------------------------------------------------------------
class _LinePrinter:
    """Minimal stand-in for tqdm: one status line rewritten in place, at most ~5 times a second."""

    def __init__(self, total: int, desc: str, stream=None):
        self.total, self.desc, self.count = total, desc, 0
        self.stream = stream or sys.stderr
        self._postfix, self._last_draw, self._start = "", 0.0, time.perf_counter()

    def set_postfix_str(self, text: str) -> None:
        self._postfix = text

    def update(self, n: int) -> None:
        self.count += n
        now = time.perf_counter()
        if now - self._last_draw > 0.2 or self.count >= self.total:
            self._last_draw = now
            width = 30
            filled = int(width * self.count / max(self.total, 1))
            self.stream.write(
                f"\r{self.desc} [{'#' * filled}{'.' * (width - filled)}] {self.count}/{self.total} "
                f"{now - self._start:5.1f}s {self._postfix}"
            )
            self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return _LinePrinter(total, desc)
    return tqdm(total=total, desc=desc, unit="img", leave=True, dynamic_ncols=True)


# --- data ---------------------------------------------------------------------------------------
def load_data(limit: int | None, dtype):
    """Fashion-MNIST as (N, 1, 28, 28) arrays scaled to [0, 1] and int64 labels; ``limit`` keeps
    the first ``limit`` images of each split (smoke runs)."""
    splits = []
    for split in ("train", "test"):
        images, labels = datasets.fashion_mnist(split)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        scaled = (images.astype(dtype) / dtype.type(255))[:, None]
        splits.append((np.ascontiguousarray(scaled), labels.astype(np.int64)))
    return splits


# --- training loop ------------------------------------------------------------------------------
def evaluate(model, images, labels, batch_size: int = EVAL_BATCH) -> float:
    """Accuracy of ``model`` (in eval mode) on a labelled set."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model.forward(images[start:start + batch_size])
        correct += int((logits.argmax(axis=1) == labels[start:start + batch_size]).sum())
    model.train()
    return correct / max(len(images), 1)


def train_epoch(model, criterion, optimizer, images, labels, batch_size, rng, bar=None):
    """One pass over shuffled data; returns (mean loss, training accuracy)."""
    model.train()
    order = rng.permutation(len(images))
    loss_sum, correct, seen = 0.0, 0, 0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        x, y = images[batch], labels[batch]
        logits = model.forward(x)
        loss = criterion.forward(logits, y)
        model.backward(criterion.backward())
        optimizer.step()
        loss_sum += loss * len(batch)
        correct += int((logits.argmax(axis=1) == y).sum())
        seen += len(batch)
        if bar is not None:
            bar.set_postfix_str(f"loss {loss_sum / seen:.4f} acc {correct / seen:.4f}")
            bar.update(len(batch))
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def make_optimizer(name: str, model, lr: float, momentum: float, weight_decay: float):
    if name == "sgd":
        return nn.SGD(model, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return nn.Adam(model, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


# --- checkpoints --------------------------------------------------------------------------------
_META_KEYS = ("activation", "pool", "dtype", "init")


def save_checkpoint(path, model, config: dict, history: dict) -> None:
    """Weights, running statistics, architecture and history in one ``.npz``."""
    arrays = {f"param.{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"meta.{k}": np.array(config[k]) for k in _META_KEYS})
    arrays.update({f"history.{k}": np.asarray(v, dtype=np.float64) for k, v in history.items()})
    np.savez(path, **arrays)


def load_checkpoint(path):
    """(state, config, history) from :func:`save_checkpoint`'s file; ValueError if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"--load {path}: not a readable .npz checkpoint ({exc})") from exc
    missing = [k for k in _META_KEYS if f"meta.{k}" not in contents]
    if missing:
        raise ValueError(f"--load {path}: not a fastconv training checkpoint (no {missing})")
    state = {k[len("param."):]: v for k, v in contents.items() if k.startswith("param.")}
    config = {k: str(contents[f"meta.{k}"]) for k in _META_KEYS}
    history = {k[len("history."):]: list(v) for k, v in contents.items() if k.startswith("history.")}
    return state, config, history


def plot_curves(history: dict, path) -> None:
    """Loss and accuracy per epoch, written to ``path`` (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ValueError("--plot needs matplotlib: pip install matplotlib") from exc
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, history["train_loss"], marker="o", label="train loss")
    loss_axes.set_xlabel("epoch")
    loss_axes.legend()
    accuracy_axes.plot(epochs, history["train_acc"], marker="o", label="train accuracy")
    accuracy_axes.plot(epochs, history["test_acc"], marker="o", label="test accuracy")
    accuracy_axes.set_xlabel("epoch")
    accuracy_axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


# --- command line -------------------------------------------------------------------------------
def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an argparse ``subparsers`` object; returns its parser."""
    parser = subparsers.add_parser(
        "train", help="train LeNet-5 on Fashion-MNIST with fastconv.nn",
        description="Train LeNet-5 (conv 6@5x5 pad 2 -> pool -> conv 16@5x5 -> pool -> 120 -> 84 -> 10) "
                    "on Fashion-MNIST with fastconv's kernels.",
    )
    configure_parser(parser)
    parser.set_defaults(func=run_train)
    return parser


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=["lenet"], help="the network to train")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=None,
                        help=f"learning rate (default {DEFAULT_LR['sgd']} for sgd, {DEFAULT_LR['adam']} for adam)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="adam")
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0)")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--activation", choices=sorted(nn.models.ACTIVATIONS), default=None,
                        help="default relu (or the checkpoint's with --load)")
    parser.add_argument("--pool", choices=sorted(nn.models.POOLS), default=None,
                        help="default max (or the checkpoint's with --load)")
    parser.add_argument("--init", choices=nn.models.INITS, default=None,
                        help="weight init: pytorch (Kaiming-uniform, default) or xavier")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None, help="default float32")
    parser.add_argument("--conv-algorithm", choices=list(algorithms()), default="auto",
                        help="conv backend for forward and backward (default: fastconv's dispatcher)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images of each split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="fastconv/BLAS threads (default: all)")
    parser.add_argument("--save", metavar="FILE.npz", default=None, help="write weights after every epoch")
    parser.add_argument("--load", metavar="FILE.npz", default=None, help="resume from a --save file")
    parser.add_argument("--plot", metavar="FILE.png", default=None, help="write loss/accuracy curves")
    parser.add_argument("--no-progress", action="store_true", help="no per-batch progress bar")


def _check_args(args) -> None:
    for name in ("epochs", "batch_size", "limit", "threads"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "epochs" else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be {'>= 0' if name == 'epochs' else 'positive'}, got {value}")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")


def run_train(args) -> dict:
    """Run the ``train`` subcommand for parsed ``args``; returns the history
    (``train_loss``, ``train_acc``, ``test_acc``, ``seconds`` per epoch)."""
    _check_args(args)
    if args.threads is not None:
        from ._config import set_num_threads

        set_num_threads(args.threads)
    state, history = None, {"train_loss": [], "train_acc": [], "test_acc": [], "seconds": []}
    config = {"activation": "relu", "pool": "max", "dtype": "float32", "init": "pytorch"}
    if args.load:
        state, saved_config, saved_history = load_checkpoint(args.load)
        for key in _META_KEYS:
            requested = getattr(args, key)
            if requested is not None and requested != saved_config[key]:
                raise ValueError(f"--{key} {requested} disagrees with the checkpoint {args.load} ({saved_config[key]})")
        config, history = saved_config, {**history, **saved_history}
    else:
        config.update({k: getattr(args, k) for k in _META_KEYS if getattr(args, k) is not None})
    dtype = np.dtype(config["dtype"])
    rng = np.random.default_rng(args.seed)
    model = nn.lenet5(config["activation"], config["pool"], dtype=dtype, init=config["init"], rng=rng,
                      conv_algorithm=args.conv_algorithm)
    if state is not None:
        model.load_state_dict(state)
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    optimizer = make_optimizer(args.optimizer, model, lr, args.momentum, args.weight_decay)
    criterion = nn.SoftmaxCrossEntropy()
    (train_x, train_y), (test_x, test_y) = load_data(args.limit, dtype)
    print(f"LeNet-5 ({config['activation']}, {config['pool']}-pool, {config['dtype']}, init {config['init']}), "
          f"{args.optimizer} lr {lr}, batch {args.batch_size}, conv {args.conv_algorithm}; {len(train_x)} training / {len(test_x)} test images")
    first_epoch = len(history["train_loss"]) + 1
    for epoch in range(first_epoch, first_epoch + args.epochs):
        bar = _progress(len(train_x), f"epoch {epoch}", not args.no_progress)
        start = time.perf_counter()
        loss, train_acc = train_epoch(model, criterion, optimizer, train_x, train_y, args.batch_size, rng, bar)
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        test_acc = evaluate(model, test_x, test_y)
        for key, value in zip(("train_loss", "train_acc", "test_acc", "seconds"), (loss, train_acc, test_acc, seconds)):
            history[key].append(value)
        print(f"epoch {epoch}: loss {loss:.4f}  train acc {train_acc:.4f}  test acc {test_acc:.4f}  "
              f"{seconds:.1f} s", flush=True)
        if args.save:
            save_checkpoint(args.save, model, config, history)
    if args.plot:
        plot_curves(history, args.plot)
    return history


def main(argv=None) -> dict:
    """``train`` without the ``python -m fastconv`` prefix: ``main(["lenet", "--epochs", "1"])``."""
    parser = argparse.ArgumentParser(prog="python -m fastconv train")
    configure_parser(parser)
    return run_train(parser.parse_args(argv))


if __name__ == "__main__":
    main()
