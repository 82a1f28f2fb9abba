"""Seconds per training epoch of LeNet-5 on Fashion-MNIST: fastconv.nn vs PyTorch CPU, same run.

Both frameworks train the same network (same layers, batch size, optimiser, data order) with the same
thread count; the JIT warm-up (a few batches, excluded from the timed epoch) is reported separately.

    python bench/bench_lenet_epoch.py --threads 2                       # ReLU + max pool, full epoch
    python bench/bench_lenet_epoch.py --activation sigmoid --pool avg --lr 0.9
    python bench/bench_lenet_epoch.py --limit 6000                      # quicker, a tenth of an epoch
    python bench/bench_lenet_epoch.py --conv-algorithm im2col           # bypass the dispatcher
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
import fastconv  # noqa: E402
from fastconv import datasets, nn  # noqa: E402
from fastconv.training import train_epoch  # noqa: E402


def load_images(limit, dtype):
    images, labels = datasets.fashion_mnist("train")
    if limit:
        images, labels = images[:limit], labels[:limit]
    return np.ascontiguousarray((images.astype(dtype) / 255)[:, None]), labels.astype(np.int64)


def fastconv_trainer(args, images, labels):
    """Returns ``epoch(x, y, seed) -> mean training loss`` training a fastconv.nn LeNet-5."""
    model = nn.lenet5(args.activation, args.pool, dtype=np.float32, rng=0, conv_algorithm=args.conv_algorithm)
    optimizer = nn.SGD(model, lr=args.lr, momentum=args.momentum)
    criterion = nn.SoftmaxCrossEntropy()

    def epoch(x, y, seed):
        loss, _accuracy = train_epoch(model, criterion, optimizer, x, y, args.batch_size,
                                      np.random.default_rng(seed))
        return loss

    return epoch


def torch_trainer(args, images, labels):
    """The same network, optimiser and data order in PyTorch."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    act = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh}[args.activation]
    pool = {"max": torch.nn.MaxPool2d, "avg": torch.nn.AvgPool2d}[args.pool]
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), act(), pool(2, 2),
        torch.nn.Conv2d(6, 16, 5), act(), pool(2, 2), torch.nn.Flatten(),
        torch.nn.Linear(400, 120), act(), torch.nn.Linear(120, 84), act(), torch.nn.Linear(84, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)

    def epoch(x, y, seed):
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        order = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
        loss_sum = 0.0
        for start in range(0, len(x), args.batch_size):
            batch = order[start:start + args.batch_size]
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(batch)
        return loss_sum / len(x)

    return epoch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--activation", choices=["relu", "sigmoid", "tanh"], default="relu")
    parser.add_argument("--pool", choices=["max", "avg"], default="max")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per framework")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--conv-algorithm", default="auto", help="fastconv conv backend (default auto)")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)

    fastconv.set_num_threads(args.threads)
    images, labels = load_images(args.limit, np.float32)
    print(f"LeNet-5 {args.activation}/{args.pool}-pool, float32, batch {args.batch_size}, SGD lr {args.lr}, "
          f"{len(images)} images per epoch, {args.threads} threads, fastconv conv algorithm {args.conv_algorithm}")
    trainers = {"fastconv": fastconv_trainer(args, images, labels)}
    if not args.no_torch:
        try:
            trainers["pytorch"] = torch_trainer(args, images, labels)
        except ImportError:
            print("PyTorch not installed: fastconv only")
    warm = args.batch_size * 2
    results = {}
    for name, epoch in trainers.items():
        # Warm-up: compiles (or loads from Numba's cache) every kernel at this batch size.
        start = time.perf_counter()
        epoch(images[:warm], labels[:warm], 0)
        results[name] = [time.perf_counter() - start, [], None]
    # Frameworks alternate epoch by epoch, so a busy machine slows both alike.
    for index in range(args.epochs):
        for name, epoch in trainers.items():
            start = time.perf_counter()
            loss = epoch(images, labels, index)
            results[name][1].append(time.perf_counter() - start)
            results[name][2] = loss
    print(f"{'framework':10s} {'warm-up s':>10s} {'s/epoch (best)':>15s} {'s/epoch (mean)':>15s} {'mean loss':>10s}")
    for name, (warmup, seconds, loss) in results.items():
        print(f"{name:10s} {warmup:10.2f} {min(seconds):15.2f} {np.mean(seconds):15.2f} {loss:10.4f}")
    if len(results) == 2:
        ratio = min(results["fastconv"][1]) / min(results["pytorch"][1])
        print(f"fastconv / pytorch epoch time (best of each): {ratio:.2f}")
    return results


if __name__ == "__main__":
    main()
