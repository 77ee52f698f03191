"""Fashion-MNIST from the Debian package `dataset-fashion-mnist` (IDX files), as tensors."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from .transforms import AugmentedCollate, RandomCropFlip

FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = [
    "T - shirt / top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# Per-pixel statistics of the 60k training images, in [0, 1] units.
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
_FILES = {"train": "train", "test": "t10k"}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file.")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {body.size}.")
    return body.reshape(dims)


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(images, labels)` of a Fashion-MNIST split: uint8 `(N, 28, 28)` and int64 `(N,)`."""
    if split not in _FILES:
        raise ValueError(f"Unknown Fashion-MNIST split {split!r}; choose one of {sorted(_FILES)}.")
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    stem = _FILES[split]
    images, labels = (root / f"{stem}-{kind}-idx{n}-ubyte.gz" for kind, n in (("images", 3), ("labels", 1)))
    for path in (images, labels):
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found. Install it with `apt-get install -y dataset-fashion-mnist` "
                "or set FASHION_MNIST_DIR to a folder holding the IDX files."
            )
    return torch.from_numpy(_read_idx(images).copy()), torch.from_numpy(_read_idx(labels).astype(np.int64))


def normalize_images(images: torch.Tensor, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD) -> torch.Tensor:
    """uint8 `(N, H, W)` or `(N, C, H, W)` -> float `(N, C, H, W)` normalised per channel."""
    x = images.float().div_(255)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def fashion_mnist_loader(
    split: str, batch_size: int = 128, train: bool = False, limit: int | None = None, seed: int = 0
) -> torch.utils.data.DataLoader:
    """A DataLoader of normalised `(1, 28, 28)` Fashion-MNIST images; `train=True` shuffles and flips (the
    training augmentation without its crop)."""
    images, labels = load_fashion_mnist(split)
    data_config = {"input_size": (1, 28, 28), "mean": FASHION_MNIST_MEAN, "std": FASHION_MNIST_STD}
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    dataset = torch.utils.data.TensorDataset(normalize_images(images), labels)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        collate_fn=AugmentedCollate(RandomCropFlip(data_config, seed, padding=0)) if train else None,
        generator=torch.Generator().manual_seed(seed) if train else None,
    )


def fashion_mnist_dataset_dict(root: str | os.PathLike | None = None, limit: int | None = None):
    """Fashion-MNIST as a `datasets.DatasetDict` with the schema of the Hub's `zalando-datasets/fashion_mnist`:
    `image` (Image) and `label` (ClassLabel with the 10 class names), splits `train` and `test`."""
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=FASHION_MNIST_CLASSES)})
    splits = {}
    for split in ("train", "test"):
        images, labels = load_fashion_mnist(split, root)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        splits[split] = datasets.Dataset.from_dict(
            {"image": list(images.numpy()), "label": labels.tolist()}, features=features, split=split
        )
    return datasets.DatasetDict(splits)
