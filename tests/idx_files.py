"""Write tiny Fashion-MNIST-shaped IDX .gz files for tests."""
import gzip
import struct

import numpy as np

from fastconv import datasets


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_split(directory, split, images, labels):
    image_name, label_name = datasets.FILES[split]
    with gzip.open(directory / image_name, "wb") as handle:
        handle.write(idx_bytes(images))
    with gzip.open(directory / label_name, "wb") as handle:
        handle.write(idx_bytes(labels))


def write_tiny_dataset(directory, rng, train=64, test=32):
    """Both splits with a learnable pattern: class k lights up row block k."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("test", test)):
        labels = rng.integers(0, 10, count).astype(np.uint8)
        images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label + 3: 2 * label + 6, 4:24] = 250
        write_split(directory, split, images, labels)
    return directory
