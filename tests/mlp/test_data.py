"""Real FashionMNIST loading through torchvision, on tiny IDX files the test writes itself.

torchvision is pinned with torch (constraints.txt) and imported at the top: where it cannot be
imported these tests fail, they never skip.
"""

from __future__ import annotations

import builtins
import gzip
import struct
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision  # noqa: F401 - a failing import fails this module, on purpose

import mlp

pytestmark = pytest.mark.torchvision  # the GPU kit runs these with the CUDA tests (-m "cuda or torchvision")
IDX_UBYTE = 0x08  # IDX type code for unsigned bytes


def _write_idx(path: Path, array: torch.Tensor) -> None:
    header = struct.pack(">HBB", 0, IDX_UBYTE, array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(header + array.to(torch.uint8).numpy().tobytes())


def _fake_fashion_mnist(root: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), dtype=torch.uint8)
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
        for name in (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"):  # torchvision checks the .gz too
            (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
    return images, labels


def test_torchvision_imports_with_the_pinned_torch():
    assert mlp.torchvision_status() is None


def test_real_data_without_torchvision_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # what a failing import looks like to Python
    reason = mlp.torchvision_status()
    assert reason is not None and "\n" not in reason and "torchvision" in reason
    with pytest.raises(RuntimeError, match="needs torchvision"):
        mlp.fashion_mnist_data(str(tmp_path))
    with pytest.raises(RuntimeError, match="needs torchvision"):
        mlp.fashion_mnist_dataset(str(tmp_path))


def test_an_import_failure_with_no_message_is_still_one_line(monkeypatch):
    real_import = builtins.__import__

    def failing_import(name, *args, **kwargs):
        if name == "torchvision":
            raise RuntimeError()  # what a broken extension can raise: no message at all
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "torchvision")
    monkeypatch.setattr(builtins, "__import__", failing_import)
    assert mlp.torchvision_status() == "torchvision does not import with this torch (RuntimeError: )"


def test_fashion_mnist_data_reads_torchvision_layout(tmp_path):
    images, labels = _fake_fashion_mnist(tmp_path, n=12)
    x, y = mlp.fashion_mnist_data(str(tmp_path), train=True)
    assert x.shape == (12, 1, 28, 28) and x.dtype == torch.float32
    torch.testing.assert_close(x, images.unsqueeze(1).float() / 255)
    assert torch.equal(y, labels.long())


def test_real_data_trains_the_fashion_net(tmp_path):
    _fake_fashion_mnist(tmp_path, n=64)
    x, y = mlp.fashion_mnist_data(str(tmp_path))
    step = mlp.TrainStep(mlp.fashion_mnist_mlp(), loss="cross_entropy", optimizer="adam")
    before = F.cross_entropy(step.model(x), y).item()
    for _ in range(30):
        step.step(x, y)
    assert F.cross_entropy(step.model(x), y).item() < before
