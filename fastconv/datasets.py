"""Fashion-MNIST, read from the four IDX ``.gz`` files its project publishes.

Where the files are looked for, first hit wins:

1. ``$FASTCONV_DATA`` (the files directly in it, or in a ``fashion-mnist/`` sub-directory);
2. the user cache directory, ``<fastconv cache dir>/datasets/fashion-mnist``;
3. ``/usr/share/datasets/fashion-mnist``, where the Debian/Ubuntu package ``dataset-fashion-mnist``
   installs them.

When none holds all four files they are downloaded from the Fashion-MNIST project's published
location into the cache directory and checked against the project's published MD5 sums.  Every file,
wherever it comes from, is checked structurally when read (IDX magic number, dimensions, exact
length), so a corrupt or truncated file raises a clear error instead of yielding garbage.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ._config import cache_dir

# As the Fashion-MNIST README publishes them (github.com/zalandoresearch/fashion-mnist, "Get the Data").
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# IDX type code 0x08 is unsigned byte, the only element type Fashion-MNIST uses.
_IDX_UBYTE = 0x08


class DatasetError(ValueError):
    """A dataset file is missing, corrupt or truncated, or could not be downloaded."""


def user_cache_dir() -> Path:
    """Where downloaded Fashion-MNIST files are kept."""
    return cache_dir() / "datasets" / "fashion-mnist"


def search_dirs() -> list[Path]:
    """Directories searched for the IDX files, in order."""
    dirs = []
    override = os.environ.get("FASTCONV_DATA")
    if override:
        root = Path(override).expanduser()
        dirs += [root, root / "fashion-mnist"]
    dirs += [user_cache_dir(), SYSTEM_DIR]
    return dirs


def _fetch_url(url: str) -> bytes:
    """Download ``url``; the one network call, replaceable in tests."""
    from urllib.request import urlopen

    with urlopen(url, timeout=60) as response:
        return response.read()


def read_idx(path, expected_ndim: int) -> np.ndarray:
    """Read one gzip-compressed IDX file of unsigned bytes into an array.

    Raises
    ------
    DatasetError
        if the file is not gzip, is truncated, has the wrong magic number or dimension count, or its
        length disagrees with its header.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path} is not a readable gzip file (corrupt or truncated): {exc}") from exc
    if len(raw) < 4:
        raise DatasetError(f"{path}: IDX header truncated ({len(raw)} bytes)")
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code != _IDX_UBYTE or ndim != expected_ndim:
        raise DatasetError(
            f"{path}: bad IDX magic number {raw[:4].hex()} (expected 0000{_IDX_UBYTE:02x}"
            f"{expected_ndim:02x}: unsigned bytes, {expected_ndim} dimensions)"
        )
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise DatasetError(f"{path}: IDX header truncated ({len(raw)} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header_end])
    expected = header_end + int(np.prod(shape))
    if len(raw) != expected:
        raise DatasetError(
            f"{path}: header says shape {shape} ({expected} bytes in all) but the file holds "
            f"{len(raw)} bytes — {'truncated' if len(raw) < expected else 'trailing data'}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_end).reshape(shape).copy()


def _find_dir(names) -> Path | None:
    for directory in search_dirs():
        if all((directory / name).is_file() for name in names):
            return directory
    return None


def _download(names, destination: Path, fetch) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = destination / name
        if target.is_file() and _md5(target.read_bytes()) == MD5[name]:
            continue
        try:
            payload = fetch(BASE_URL + name)
        except OSError as exc:  # URLError, timeouts, DNS: all OSError
            raise DatasetError(_offline_message(names, exc)) from exc
        digest = _md5(payload)
        if digest != MD5[name]:
            raise DatasetError(
                f"downloaded {BASE_URL + name} has MD5 {digest}, expected {MD5[name]}; "
                "not saved (interrupted or tampered download) — try again"
            )
        # Write then rename, so an interrupted write never leaves a half file under the real name.
        partial = target.with_suffix(target.suffix + ".part")
        partial.write_bytes(payload)
        partial.replace(target)


def _md5(payload: bytes) -> str:
    return hashlib.md5(payload).hexdigest()


def _offline_message(names, exc) -> str:
    return (
        f"Fashion-MNIST files {', '.join(names)} were not found and could not be downloaded "
        f"({exc}). Either install the Debian/Ubuntu package: `apt-get install dataset-fashion-mnist` "
        f"(puts them in {SYSTEM_DIR}), or download them from {BASE_URL} and put them in "
        f"{user_cache_dir()} or in the directory named by $FASTCONV_DATA."
    )


def fashion_mnist(split: str = "train", *, download: bool = True, fetch=None):
    """Fashion-MNIST images and labels.

    Parameters
    ----------
    split : ``"train"`` (60 000 images) or ``"test"`` (10 000 images)
    download : bool
        download the files into the cache directory when no search directory has them.
    fetch : callable(url) -> bytes, optional
        the download function (for tests and proxies); default ``urllib``.

    Returns
    -------
    images : uint8 array (N, 28, 28)
    labels : uint8 array (N,), class indices into :data:`CLASS_NAMES`

    Raises
    ------
    DatasetError (a ValueError)
        files missing and not downloadable, or corrupt / truncated / inconsistent.
    """
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    names = FILES[split]
    directory = _find_dir(names)
    if directory is None:
        if not download:
            raise DatasetError(_offline_message(names, "download=False"))
        directory = user_cache_dir()
        _download(names, directory, fetch or _fetch_url)
    images = read_idx(directory / names[0], expected_ndim=3)
    labels = read_idx(directory / names[1], expected_ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{directory}: {images.shape[0]} images but {labels.shape[0]} labels in the {split} split"
        )
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise DatasetError(f"{directory / names[1]}: label {labels.max()} out of range 0..9")
    return images, labels
