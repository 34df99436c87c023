"""Training data: learnable synthetic regression and FashionMNIST-shaped batches, FashionMNIST through
torchvision (its dataset class and a DataLoader, as the classic loop reads it), and shuffled mini-batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn


def teacher(in_features: int, out_features: int, seed: int = 0, hidden: int = 32) -> nn.Module:
    """A fixed random network whose outputs are the learnable regression targets."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, out_features))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(max(p.shape[-1], 1)))
    return net


def regression_data(n: int, in_features: int, out_features: int, learnable: bool = True,
                    seed: int = 0, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random regression data like the classic notebook.

    ``learnable=False`` is the classic: random X, independent random y (nothing
    to learn, the loss can only fall towards the variance of y).
    ``learnable=True``: y = teacher(X) for a fixed random teacher, so a
    training loop visibly learns.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_features, generator=gen)
    if learnable:
        with torch.no_grad():
            y = teacher(in_features, out_features, seed + 1)(x)
    else:
        y = torch.randn(n, out_features, generator=gen)
    return x.to(device), y.to(device)


def classification_data(n: int, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10,
                        seed: int = 0, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """FashionMNIST-shaped random images in [0, 1) and integer labels."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *image_shape, generator=gen)
    y = torch.randint(0, num_classes, (n,), generator=gen)
    return x.to(device), y.to(device)


def torchvision_status() -> str | None:
    """None when ``torchvision`` imports here, else the one-line reason it does not.

    torchvision's PyPI wheel is built against CUDA torch: with a CPU-only torch the
    import itself raises (not only ImportError), so everything that needs it asks first.
    """
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable here"
        first = (str(exc).strip().splitlines() or [""])[0]  # an exception may carry no message at all
        return f"torchvision does not import with this torch ({type(exc).__name__}: {first[:120]})"
    return None


def fashion_mnist_data(root: str, train: bool = True, device: torch.device | str = "cpu",
                       download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The real FashionMNIST split as tensors: images (n, 1, 28, 28) in [0, 1] and int64 labels.

    Reads torchvision's layout under ``root`` (``FashionMNIST/raw/*-ubyte``); imports
    torchvision only when called. ``download`` is off by default: benchmark machines
    often have no network, and a silent download inside a benchmark is a surprise.
    """
    dataset = fashion_mnist_dataset(root, train, download)
    x = dataset.data.unsqueeze(1).to(torch.float32) / 255.0  # (n, 28, 28) uint8 -> (n, 1, 28, 28) float
    return x.to(device), dataset.targets.to(torch.int64).to(device)


def fashion_mnist_dataset(root: str, train: bool = True, download: bool = False):
    """``torchvision.datasets.FashionMNIST(root, train, download, transform=ToTensor())``: the classic's dataset.

    Each item is a (1, 28, 28) float tensor in [0, 1] and an int label; torchvision itself parses the
    IDX files under ``root`` (``mlp.fashion_mnist_files`` writes random-content ones). Downloads only when
    asked (``fashion_mnist_data``'s option); the benchmark and the demo never ask.
    """
    reason = torchvision_status()
    if reason:
        raise RuntimeError(f"FashionMNIST needs torchvision: {reason}")
    from torchvision.datasets import FashionMNIST
    from torchvision.transforms import ToTensor

    return FashionMNIST(str(root), train=train, download=download, transform=ToTensor())


def fashion_mnist_loader(dataset, batch_size: int, num_workers: int = 0, pin_memory: bool = False,
                         persistent_workers: bool = False, shuffle: bool = True,
                         seed: int | None = None) -> torch.utils.data.DataLoader:
    """The classic loop's ``DataLoader``; ``persistent_workers`` only where there are workers (torch refuses it
    with none). ``seed`` fixes the shuffle order."""
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                                       pin_memory=pin_memory, persistent_workers=persistent_workers and num_workers > 0,
                                       generator=generator)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = True,
            drop_last: bool = False, seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches that cover every example exactly once per epoch.

    The last partial batch is kept unless ``drop_last=True`` says otherwise
    (the classic ``create_dummy_dataloader`` dropped it silently).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
    n = len(x)
    if shuffle:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        order = torch.randperm(n, generator=gen).to(x.device)
    else:
        order = torch.arange(n, device=x.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
