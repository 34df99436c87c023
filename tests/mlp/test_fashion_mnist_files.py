"""mlp.fashion_mnist_files: FashionMNIST-format IDX files, checked against the IDX spec read byte by byte
and against torchvision's own parser and dataset class. No network is touched."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torchvision.datasets import FashionMNIST
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.transforms import ToTensor

import mlp
from mlp import fashion_mnist_files as files

IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801  # LeCun's MNIST page: ubyte type, 3 or 1 dimensions
SMALL_TRAIN, SMALL_TEST = 50, 20


@pytest.fixture(scope="module")
def full_root(tmp_path_factory) -> Path:
    """The real sizes, written once for the module (about 55 MB, a second or two)."""
    root = tmp_path_factory.mktemp("fashion")
    files.write_random_fashion_mnist(root)
    return root


def _spec_read(path: Path) -> tuple[int, tuple[int, ...], bytes]:
    """An IDX file read by its spec: big-endian 32-bit magic, big-endian 32-bit dimensions, the data."""
    raw = path.read_bytes()
    magic = struct.unpack(">I", raw[:4])[0]
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return magic, dims, raw[4 + 4 * ndim:]


def test_full_size_files_follow_the_idx_spec(full_root):
    raw = full_root / "FashionMNIST" / "raw"
    expected = {"train-images-idx3-ubyte": (IMAGES_MAGIC, (60_000, 28, 28)),
                "train-labels-idx1-ubyte": (LABELS_MAGIC, (60_000,)),
                "t10k-images-idx3-ubyte": (IMAGES_MAGIC, (10_000, 28, 28)),
                "t10k-labels-idx1-ubyte": (LABELS_MAGIC, (10_000,))}
    for name, (magic, dims) in expected.items():
        got_magic, got_dims, data = _spec_read(raw / name)
        assert (got_magic, got_dims) == (magic, dims), name
        assert len(data) == int(np.prod(dims)), name
    labels = np.frombuffer(_spec_read(raw / "train-labels-idx1-ubyte")[2], dtype=np.uint8)
    assert labels.max() == 9 and labels.min() == 0 and len(np.unique(labels)) == 10


def test_torchvision_fashion_mnist_parses_the_files(full_root):
    raw = full_root / "FashionMNIST" / "raw"
    for train, n in ((True, 60_000), (False, 10_000)):
        dataset = FashionMNIST(str(full_root), train=train, download=False, transform=ToTensor())
        assert len(dataset) == n
        assert dataset.data.shape == (n, 28, 28) and dataset.data.dtype == torch.uint8
        prefix = "train" if train else "t10k"
        spec_images = np.frombuffer(_spec_read(raw / f"{prefix}-images-idx3-ubyte")[2], dtype=np.uint8)
        spec_labels = np.frombuffer(_spec_read(raw / f"{prefix}-labels-idx1-ubyte")[2], dtype=np.uint8)
        assert np.array_equal(dataset.data.numpy().reshape(-1), spec_images)
        assert np.array_equal(dataset.targets.numpy(), spec_labels.astype(np.int64))
        image, label = dataset[n - 1]
        assert image.shape == (1, 28, 28) and image.dtype == torch.float32
        torch.testing.assert_close(image[0], dataset.data[n - 1].float() / 255)
        assert label == int(spec_labels[-1])


def test_mlp_dataset_is_torchvisions_class_with_to_tensor(full_root):
    dataset = mlp.fashion_mnist_dataset(str(full_root), train=False)
    assert isinstance(dataset, FashionMNIST) and isinstance(dataset.transform, ToTensor)
    loader = mlp.fashion_mnist_loader(dataset, batch_size=32, num_workers=0, seed=0)
    x, y = next(iter(loader))
    assert x.shape == (32, 1, 28, 28) and y.shape == (32,) and y.dtype == torch.int64


def test_content_is_learnable_per_class(full_root):
    """The random images carry a class pattern: class means differ far more than noise would allow."""
    dataset = FashionMNIST(str(full_root), train=True, download=False)
    x, y = dataset.data.float(), dataset.targets
    means = torch.stack([x[y == c].mean(0) for c in range(10)])  # (10, 28, 28)
    assert (means[0] - means[1]).abs().mean() > 20  # patterns are uniform 0..255 halves: ~42 apart on average


def test_small_files_round_trip_through_torchvisions_readers(tmp_path):
    files.write_random_fashion_mnist(tmp_path, seed=3, train_count=SMALL_TRAIN, test_count=SMALL_TEST)
    raw = tmp_path / "FashionMNIST" / "raw"
    images = read_image_file(str(raw / "train-images-idx3-ubyte"))
    labels = read_label_file(str(raw / "t10k-labels-idx1-ubyte"))
    assert images.shape == (SMALL_TRAIN, 28, 28) and labels.shape == (SMALL_TEST,)
    again = tmp_path / "again"
    files.write_random_fashion_mnist(again, seed=3, train_count=SMALL_TRAIN, test_count=SMALL_TEST)
    assert (again / "FashionMNIST/raw/train-images-idx3-ubyte").read_bytes() == \
        (raw / "train-images-idx3-ubyte").read_bytes()  # the seed fixes the content


def test_idx_bytes_matches_a_struct_packed_header():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert files.idx_bytes(array) == struct.pack(">HBB3I", 0, 0x08, 3, 2, 3, 4) + array.tobytes()


def test_a_given_root_without_the_files_is_an_error_and_stays_untouched(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte is missing"):
        files.resolve_root(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_file_is_not_a_dataset(tmp_path):
    files.write_random_fashion_mnist(tmp_path, train_count=SMALL_TRAIN, test_count=SMALL_TEST)
    path = tmp_path / "FashionMNIST/raw/t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    assert not files.has_fashion_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        files.resolve_root(tmp_path)


def test_a_users_real_root_is_used_as_it_is(tmp_path):
    files.write_random_fashion_mnist(tmp_path, train_count=SMALL_TRAIN, test_count=SMALL_TEST)
    (tmp_path / "FashionMNIST/raw" / files.RANDOM_MARKER).unlink()  # as a downloaded copy would be
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "FashionMNIST/raw").iterdir()}
    found = files.resolve_root(tmp_path)
    assert found == files.FashionMNISTRoot(tmp_path, random_content=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "FashionMNIST/raw").iterdir()} == before
    assert len(mlp.fashion_mnist_dataset(str(tmp_path))) == SMALL_TRAIN


def test_without_a_root_the_cache_is_written_once_and_nothing_is_downloaded(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a socket was opened: nothing may be downloaded")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", no_network)
    monkeypatch.setenv("MLPBENCH_DATA", str(tmp_path / "cache"))
    first = files.resolve_root()
    assert first == files.FashionMNISTRoot(tmp_path / "cache", random_content=True)
    assert files.full_size(first.root)
    stamp = (files.raw_folder(first.root) / "train-images-idx3-ubyte").stat().st_mtime_ns
    assert files.resolve_root() == first
    assert (files.raw_folder(first.root) / "train-images-idx3-ubyte").stat().st_mtime_ns == stamp  # reused
    assert len(mlp.fashion_mnist_dataset(str(first.root))) == 60_000


def test_a_real_copy_in_the_cache_folder_is_read_never_overwritten(tmp_path, monkeypatch):
    files.write_random_fashion_mnist(tmp_path, train_count=SMALL_TRAIN, test_count=SMALL_TEST)
    (files.raw_folder(tmp_path) / files.RANDOM_MARKER).unlink()  # now it looks like a user's download
    before = (files.raw_folder(tmp_path) / "train-images-idx3-ubyte").read_bytes()
    monkeypatch.setenv("MLPBENCH_DATA", str(tmp_path))
    assert files.resolve_root() == files.FashionMNISTRoot(tmp_path, random_content=False)
    assert (files.raw_folder(tmp_path) / "train-images-idx3-ubyte").read_bytes() == before
