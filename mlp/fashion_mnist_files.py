"""FashionMNIST's files without a network: torchvision's folder layout and the IDX format, random content.

``torchvision.datasets.FashionMNIST(root, train, download=False)`` reads four uncompressed files::

    ROOT/FashionMNIST/raw/train-images-idx3-ubyte   60,000 images, 28 x 28, uint8
    ROOT/FashionMNIST/raw/train-labels-idx1-ubyte   60,000 labels, uint8 in 0..9
    ROOT/FashionMNIST/raw/t10k-images-idx3-ubyte    10,000 images
    ROOT/FashionMNIST/raw/t10k-labels-idx1-ubyte    10,000 labels

The IDX format (LeCun's MNIST page; torchvision's ``read_sn3_pascalvincent_tensor``): a 4-byte magic
number, two zero bytes, a type byte (0x08: unsigned byte) and the number of dimensions; then each
dimension as a big-endian unsigned 32-bit integer; then the values, row-major. Images are magic
0x00000803 (3 dimensions), labels 0x00000801 (1 dimension).

``write_random_fashion_mnist`` writes files of exactly that format and those shapes whose **content is
random**: labels uniform over the 10 classes, and each image a fixed random 28 x 28 pattern of its
class averaged with per-image noise, so a classifier can learn something, but no image is a garment.
Parsing, PIL conversion and ``ToTensor`` cost the same for any uint8 image, so loader timings on these
files are those of the real dataset; accuracy on them means nothing. A marker file beside them says so,
and ``is_random_content`` reads it. Nothing is ever downloaded: a user's real copy (torchvision's
layout, e.g. from an earlier ``download=True``) is used where one is given.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAIN_IMAGES, TEST_IMAGES = 60_000, 10_000  # FashionMNIST's split sizes
IMAGE_SIDE = 28
CLASSES = 10
IDX_UBYTE = 0x08  # IDX type code: unsigned byte
IDX_HEADER_DIM_BYTES = 4  # each dimension: big-endian uint32
DATASET_FOLDER, RAW_FOLDER = "FashionMNIST", "raw"  # torchvision: root / class name / "raw"
SPLIT_PREFIXES = {"train": "train", "test": "t10k"}
RANDOM_MARKER = "MLPBENCH_RANDOM_CONTENT.txt"  # beside the files: they are random, not FashionMNIST
DEFAULT_SEED = 0


@dataclass(frozen=True)
class FashionMNISTRoot:
    """A folder torchvision's FashionMNIST class reads, and whether its content is random (ours)."""

    root: Path
    random_content: bool

    @property
    def description(self) -> str:
        kind = "random content written by mlpbench (IDX format and shapes of FashionMNIST; not real images)" \
            if self.random_content else "FashionMNIST files found under the given root"
        return f"{self.root}: {kind}"


def raw_folder(root: str | Path) -> Path:
    return Path(root) / DATASET_FOLDER / RAW_FOLDER


def file_names(split: str) -> tuple[str, str]:
    """(images, labels) file names of a split ('train' or 'test'), as torchvision names them."""
    prefix = SPLIT_PREFIXES[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def idx_bytes(array: np.ndarray) -> bytes:
    """One IDX file: magic (0, 0, 0x08, ndim), each dimension big-endian uint32, then the bytes row-major."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes((0, 0, IDX_UBYTE, array.ndim)) + b"".join(
        int(d).to_bytes(IDX_HEADER_DIM_BYTES, "big") for d in array.shape)
    return header + array.tobytes()


def idx_shape(path: str | Path) -> tuple[int, ...] | None:
    """The dimensions an IDX file of unsigned bytes declares, or None when it is not one (or is cut short)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            magic = f.read(4)
            if len(magic) != 4 or magic[:3] != bytes((0, 0, IDX_UBYTE)):
                return None
            dims = f.read(IDX_HEADER_DIM_BYTES * magic[3])
        size = path.stat().st_size
    except OSError:
        return None
    if len(dims) != IDX_HEADER_DIM_BYTES * magic[3]:
        return None
    shape = tuple(int.from_bytes(dims[i:i + 4], "big") for i in range(0, len(dims), 4))
    return shape if size == 4 + len(dims) + int(np.prod(shape, dtype=np.int64)) else None


def split_complete(root: str | Path, split: str) -> bool:
    """Both files of a split are whole IDX files: n x 28 x 28 images and n labels."""
    images, labels = (idx_shape(raw_folder(root) / name) for name in file_names(split))
    return (images is not None and labels is not None and len(images) == 3
            and images[1:] == (IMAGE_SIDE, IMAGE_SIDE) and labels == images[:1])


def has_fashion_mnist(root: str | Path) -> bool:
    """Both splits are there in torchvision's layout (what ``FashionMNIST(root, download=False)`` needs)."""
    return all(split_complete(root, split) for split in SPLIT_PREFIXES)


def full_size(root: str | Path) -> bool:
    """The splits have FashionMNIST's own sizes (60,000 and 10,000 images)."""
    return [idx_shape(raw_folder(root) / file_names(s)[0]) for s in SPLIT_PREFIXES] == [
        (TRAIN_IMAGES, IMAGE_SIDE, IMAGE_SIDE), (TEST_IMAGES, IMAGE_SIDE, IMAGE_SIDE)]


def is_random_content(root: str | Path) -> bool:
    return (raw_folder(root) / RANDOM_MARKER).is_file()


def random_split(count: int, generator: np.random.Generator, templates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(images (count, 28, 28) uint8, labels (count,) uint8): class pattern and noise, averaged."""
    labels = generator.integers(0, CLASSES, size=count, dtype=np.uint8)
    noise = generator.integers(0, 256, size=(count, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    mixed = (templates[labels].astype(np.uint16) + noise) // 2  # (count, 28, 28): the mean of pattern and noise
    return mixed.astype(np.uint8), labels


def write_random_fashion_mnist(root: str | Path, seed: int = DEFAULT_SEED, train_count: int = TRAIN_IMAGES,
                               test_count: int = TEST_IMAGES) -> FashionMNISTRoot:
    """Write FashionMNIST-format IDX files of random content under ``root`` (torchvision's layout).

    The defaults are the real sizes (60,000 and 10,000 images, about 55 MB); smaller counts are for
    tests. Each file is written to a temporary name and renamed, and the marker comes last, so an
    interrupted write never leaves a folder that looks complete.
    """
    if train_count < 1 or test_count < 1:
        raise ValueError(f"image counts must be >= 1, got {train_count} and {test_count}")
    folder = raw_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    templates = generator.integers(0, 256, size=(CLASSES, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    for split, count in (("train", train_count), ("test", test_count)):
        images, labels = random_split(count, generator, templates)
        image_name, label_name = file_names(split)
        _write_atomic(folder / image_name, idx_bytes(images))
        _write_atomic(folder / label_name, idx_bytes(labels))
    (folder / RANDOM_MARKER).write_text(
        f"Random content written by mlpbench (seed {seed}): FashionMNIST's IDX format and shapes "
        f"({train_count:,} training and {test_count:,} test images, 28 x 28 uint8), not its images.\n")
    return FashionMNISTRoot(Path(root), random_content=True)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_cache_root() -> Path:
    """Where the random files live between runs: $MLPBENCH_DATA, else $XDG_CACHE_HOME (or ~/.cache)/mlpbench/."""
    if os.environ.get("MLPBENCH_DATA"):
        return Path(os.environ["MLPBENCH_DATA"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mlpbench" / "random-fashion-mnist"


def resolve_root(root: str | Path | None = None, seed: int = DEFAULT_SEED) -> FashionMNISTRoot:
    """The dataset folder to read: the user's ``root`` if given (it must hold the files), else the cache.

    A given root without the four files is an error (``FileNotFoundError`` naming the missing file):
    nothing is downloaded and nothing is written into a user's folder. Without a root, the cache
    folder (``default_cache_root``) is read when it holds a real copy (no marker), and otherwise gets
    random-content files the first time and keeps them.
    """
    if root is not None:
        if not has_fashion_mnist(root):
            split = next(s for s in SPLIT_PREFIXES if not split_complete(root, s))
            names = file_names(split)
            missing = next((n for n in names if idx_shape(raw_folder(root) / n) is None), names[0])
            raise FileNotFoundError(f"no FashionMNIST under {root}: {raw_folder(root) / missing} is missing or not "
                                    "an IDX file of the right shape (torchvision's layout; nothing is downloaded)")
        return FashionMNISTRoot(Path(root), random_content=is_random_content(root))
    cache = default_cache_root()
    if has_fashion_mnist(cache) and not is_random_content(cache):  # a real copy put there: read, never overwrite
        return FashionMNISTRoot(cache, random_content=False)
    if has_fashion_mnist(cache) and full_size(cache):
        return FashionMNISTRoot(cache, random_content=True)
    return write_random_fashion_mnist(cache, seed)
