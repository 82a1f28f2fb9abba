"""The reference for issue 7's accuracy figures: the same LeNet-5 trained in PyTorch.

Sigmoid + average pooling, Xavier-uniform weights, SGD lr 0.9, batch 256, 10 epochs — the notes'
configuration, exactly as ``python -m fastconv train lenet --activation sigmoid --pool avg
--optimizer sgd --lr 0.9 --batch-size 256 --init xavier --seed N`` trains it with fastconv.  Prints
training and test accuracy per epoch.

    python bench/torch_lenet_accuracy.py --seed 0 [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fastconv import datasets  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    def load(split):
        images, labels = datasets.fashion_mnist(split)
        return (torch.from_numpy((images.astype(np.float32) / 255)[:, None]),
                torch.from_numpy(labels.astype(np.int64)))

    x_train, y_train = load("train")
    x_test, y_test = load("test")
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
        nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10),
    )
    for layer in model:
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(layer.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.9)
    for epoch in range(1, args.epochs + 1):
        order, correct = torch.randperm(len(x_train)), 0
        for start in range(0, len(x_train), 256):
            batch = order[start:start + 256]
            out = model(x_train[batch])
            loss = nn.functional.cross_entropy(out, y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            correct += (out.argmax(1) == y_train[batch]).sum().item()
        with torch.no_grad():
            test = (model(x_test).argmax(1) == y_test).float().mean().item()
        print(f"epoch {epoch}: train acc {correct / len(x_train):.4f}  test acc {test:.4f}", flush=True)


if __name__ == "__main__":
    main()
