"""The Fashion-MNIST loader: tiny IDX files written here, corrupt files, the checked download."""
import gzip

import numpy as np
import pytest

from fastconv import datasets
from idx_files import idx_bytes, write_split, write_tiny_dataset


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real dataset anywhere: empty $FASTCONV_DATA, a fresh cache dir, no system directory."""
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "SYSTEM_DIR", tmp_path / "system")
    (tmp_path / "data").mkdir()
    return tmp_path


def test_reads_tiny_idx_files(isolated, rng):
    images = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
    labels = np.array([0, 9, 3, 3, 1], dtype=np.uint8)
    write_split(isolated / "data", "test", images, labels)
    got_images, got_labels = datasets.fashion_mnist("test", download=False)
    assert got_images.dtype == np.uint8 and got_images.shape == (5, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_fashion_mnist_subdirectory_of_fastconv_data(isolated, rng):
    write_tiny_dataset(isolated / "data" / "fashion-mnist", rng, train=7, test=3)
    images, labels = datasets.fashion_mnist("train", download=False)
    assert images.shape == (7, 28, 28) and labels.shape == (7,)


def test_truncated_gzip_is_reported(isolated, rng):
    write_tiny_dataset(isolated / "data", rng, train=20, test=4)
    path = isolated / "data" / datasets.FILES["train"][0]
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(datasets.DatasetError, match="corrupt or truncated"):
        datasets.fashion_mnist("train", download=False)


def test_truncated_payload_is_reported(isolated, rng):
    write_tiny_dataset(isolated / "data", rng, train=6, test=4)
    path = isolated / "data" / datasets.FILES["train"][0]
    with gzip.open(path, "wb") as handle:  # a valid gzip whose IDX body stops short of its header
        handle.write(idx_bytes(np.zeros((6, 28, 28), np.uint8))[:-100])
    with pytest.raises(datasets.DatasetError, match="truncated"):
        datasets.fashion_mnist("train", download=False)


def test_bad_magic_number_is_reported(isolated, rng):
    write_tiny_dataset(isolated / "data", rng, train=6, test=4)
    path = isolated / "data" / datasets.FILES["test"][1]
    with gzip.open(path, "wb") as handle:  # an image file where the labels should be
        handle.write(idx_bytes(np.zeros((4, 2, 2), np.uint8)))
    with pytest.raises(datasets.DatasetError, match="bad IDX magic number"):
        datasets.fashion_mnist("test", download=False)


def test_label_count_mismatch_is_reported(isolated, rng):
    write_split(isolated / "data", "test", np.zeros((3, 28, 28), np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(datasets.DatasetError, match="3 images but 2 labels"):
        datasets.fashion_mnist("test", download=False)


def test_offline_error_says_what_to_install(isolated):
    def offline(url):
        raise OSError("Temporary failure in name resolution")

    with pytest.raises(datasets.DatasetError) as info:
        datasets.fashion_mnist("train", fetch=offline)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(datasets.user_cache_dir()) in message and "FASTCONV_DATA" in message


def test_download_verifies_checksums_and_caches(isolated, rng, monkeypatch):
    payloads = {}
    write_tiny_dataset(isolated / "made", rng, train=5, test=3)
    for name in datasets.FILES["test"]:
        payloads[datasets.BASE_URL + name] = (isolated / "made" / name).read_bytes()
    # The published MD5s are of the real files; pretend these tiny ones are the published ones.
    monkeypatch.setattr(datasets, "MD5", {**datasets.MD5, **{
        name: datasets._md5(payloads[datasets.BASE_URL + name]) for name in datasets.FILES["test"]}})
    fetched = []

    def fake_fetch(url):
        fetched.append(url)
        return payloads[url]

    images, labels = datasets.fashion_mnist("test", fetch=fake_fetch)
    assert images.shape == (3, 28, 28) and len(fetched) == 2
    assert all((datasets.user_cache_dir() / name).is_file() for name in datasets.FILES["test"])
    datasets.fashion_mnist("test", fetch=fake_fetch)  # second call reads the cache
    assert len(fetched) == 2


def test_download_with_wrong_checksum_is_rejected(isolated):
    with pytest.raises(datasets.DatasetError, match="MD5"):
        datasets.fashion_mnist("train", fetch=lambda url: b"not the dataset")
    assert not any(datasets.user_cache_dir().glob("*.gz"))


def test_bad_split_name():
    with pytest.raises(ValueError, match="split"):
        datasets.fashion_mnist("validation")


@pytest.mark.skipif(not (datasets.SYSTEM_DIR / datasets.FILES["test"][0]).is_file(),
                    reason="dataset-fashion-mnist package not installed")
def test_system_package_test_split(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    images, labels = datasets.fashion_mnist("test", download=False)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.bincount(labels).tolist() == [1000] * 10
