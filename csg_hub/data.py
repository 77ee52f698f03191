"""Fashion-MNIST from the Debian package `dataset-fashion-mnist` (IDX files), as tensors."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from .image_processing import crop_padding, image_transform, to_mode

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


def _random_hflip(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([b[0] for b in batch])
    labels = torch.stack([b[1] for b in batch])
    flip = torch.rand(len(batch)) < 0.5
    images[flip] = images[flip].flip(-1)
    return images, labels


def fashion_mnist_loader(
    split: str, batch_size: int = 128, train: bool = False, limit: int | None = None, seed: int = 0
) -> torch.utils.data.DataLoader:
    """A DataLoader of normalised `(1, 28, 28)` Fashion-MNIST images; `train=True` shuffles and flips."""
    images, labels = load_fashion_mnist(split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    dataset = torch.utils.data.TensorDataset(normalize_images(images), labels)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        collate_fn=_random_hflip if train else None,
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


# --- Hub / local image-classification datasets ----------------------------------------------------

IMAGE_COLUMNS = ("image", "img", "pixel_values", "picture")


def load_image_dataset(name_or_path: str, split: str, revision: str | None = None):
    """One split of an image-classification dataset: a Hub id or local folder for `datasets.load_dataset`,
    or a folder written by `DatasetDict.save_to_disk`."""
    import datasets

    path = Path(name_or_path)
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        try:
            loaded = datasets.load_from_disk(str(path))
        except (IndexError, KeyError, ValueError, OSError) as err:  # datasets fails deep inside on these
            raise ValueError(
                f"Could not read the dataset saved at {path} ({type(err).__name__}: {err}): is it empty or damaged?"
            ) from err
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"Unknown split {split!r} in {name_or_path}; it has {sorted(loaded)}.")
            return loaded[split]
        return loaded
    try:
        return datasets.load_dataset(name_or_path, split=split, revision=revision)
    except ValueError as err:
        if "split" in str(err).lower():
            raise ValueError(f"Unknown split {split!r} for dataset {name_or_path}: {err}") from err
        raise


def image_label_columns(dataset, image_column: str | None = None, label_column: str | None = None) -> tuple[str, str]:
    """The image column (`image`/`img`/... of type Image) and the label column (a ClassLabel) of `dataset`,
    or the ones named (checked to exist)."""
    import datasets

    features = dataset.features
    for name, what in ((image_column, "image"), (label_column, "label")):
        if name is not None and name not in features:
            raise ValueError(f"The dataset has no {what} column {name!r}; its columns are {list(features)}.")
    if image_column is not None and label_column is not None:
        return image_column, label_column
    images = [c for c, f in features.items() if isinstance(f, datasets.Image)]
    images += [c for c in IMAGE_COLUMNS if c in features and c not in images]
    labels = [c for c, f in features.items() if isinstance(f, datasets.ClassLabel)]
    labels += [c for c in ("label", "labels", "fine_label") if c in features and c not in labels]
    if not images:
        raise ValueError(f"No image column in the dataset (columns: {list(features)}); expected an Image feature.")
    if not labels:
        raise ValueError(
            f"No label column in the dataset (columns: {list(features)}); expected a ClassLabel, or name it."
        )
    return image_column or images[0], label_column or labels[0]


def _normalized(name: str) -> str:
    return "".join(str(name).split()).lower()


def label_mapping(dataset_names: list[str] | None, model_names: list[str] | None) -> list[int] | None:
    """Dataset class index -> model class index, matching classes by name (case and spaces ignored).

    None when the orders already agree or either side has no names; a ValueError listing both sides when
    the names differ (another label set, which no reordering can fix).
    """
    if not dataset_names or not model_names:
        return None
    data, model = [_normalized(n) for n in dataset_names], [_normalized(n) for n in model_names]
    if data == model:
        return None
    if sorted(data) != sorted(model) or len(set(model)) != len(model):
        raise ValueError(
            f"The dataset's classes {list(dataset_names)} are not the model's {list(model_names)}: "
            "evaluate on a dataset with the model's label set."
        )
    return [model.index(name) for name in data]


class _LabelledImages(torch.utils.data.Dataset):
    """`(pixel_values, label)` per row, with errors that name the row: an image that cannot be decoded, a
    label that is not a class index of the model."""

    def __init__(self, dataset, data_config, train, num_classes, columns, label_map) -> None:
        self.dataset = dataset
        self.image_col, self.label_col = image_label_columns(dataset, *columns)
        self.transform = image_transform(data_config, train=train)
        feature = dataset.features[self.label_col]
        self.num_classes = num_classes if num_classes is not None else getattr(feature, "num_classes", None)
        self.label_map = label_map

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            row = self.dataset[index]
            pixel_values = self.transform(row[self.image_col])
        except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for unreadable or truncated data
            raise ValueError(
                f"Row {index} of the dataset: its {self.image_col!r} image cannot be decoded ({type(err).__name__}: "
                f"{err}). Fix or drop that row."
            ) from err
        label = row[self.label_col]
        valid = isinstance(label, (int, np.integer)) and not isinstance(label, bool)
        if not valid or label < 0 or (self.num_classes is not None and label >= self.num_classes):
            classes = f"0..{self.num_classes - 1}" if self.num_classes is not None else "a non-negative integer"
            raise ValueError(
                f"Row {index} of the dataset: label {label!r} in column {self.label_col!r} is not a class index of "
                f"the model ({classes})."
            )
        return pixel_values, int(label) if self.label_map is None else self.label_map[label]


def classification_loader(
    dataset,
    data_config: dict,
    batch_size: int,
    train: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    num_classes: int | None = None,
    columns: tuple[str | None, str | None] = (None, None),
    label_map: list[int] | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader of `(pixel_values, labels)` batches from an image-classification `datasets.Dataset`.

    Labels must be class indices below `num_classes` (default: the label column's ClassLabel size); a row
    with another label, or with an image that cannot be decoded, raises a ValueError naming the row.
    `columns` names the `(image, label)` columns (default: detected); `label_map` turns dataset class
    indices into the model's (`label_mapping`).
    """
    return torch.utils.data.DataLoader(
        _LabelledImages(dataset, data_config, train, num_classes, columns, label_map),
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed) if train else None,
    )


def pixel_statistics(dataset, in_chans: int, max_images: int = 2000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (in [0, 1] units) of up to `max_images` images of `dataset`."""
    image_col, _ = image_label_columns(dataset)
    mode = "L" if in_chans == 1 else "RGB"
    sample = dataset.select(range(min(max_images, len(dataset))))
    pixels = (
        torch.cat(
            [
                torch.from_numpy(np.asarray(to_mode(img, mode), dtype=np.float32)).reshape(-1, in_chans)
                for img in sample[image_col]
            ]
        )
        / 255.0
    )
    return tuple(round(v, 4) for v in pixels.mean(0).tolist()), tuple(round(v, 4) for v in pixels.std(0).tolist())


class PreloadedLoader:
    """`classification_loader`'s batches from a split decoded once into one tensor on `device`.

    A GPU outruns per-image decoding: every image goes through the model's eval transform once (in
    `num_workers` processes), and training batches get the training augmentation (random crop with
    `height // 8` padding, horizontal flip) on the device. Same images and labels as `classification_loader`
    (bit-equal for evaluation; training batches follow the same augmentation distribution, not the same
    random draws). One process only: data-parallel launches shard through `classification_loader`.
    """

    def __init__(self, dataset, data_config, batch_size, train=False, seed=0, num_workers=0, num_classes=None,
                 columns=(None, None), label_map=None, device="cpu") -> None:  # fmt: skip
        source = classification_loader(dataset, data_config, 512, False, num_workers=num_workers,
                                       num_classes=num_classes, columns=columns, label_map=label_map)  # fmt: skip
        pixels, labels = zip(*source)
        self.device = torch.device(device)
        self.pixels = torch.cat(pixels).to(self.device)
        self.labels = torch.cat(labels).to(self.device)
        self.batch_size, self.train = batch_size, train
        # padding is black (pixel 0) before normalisation, as in image_transform's RandomCrop
        mean, std = (torch.tensor(v, device=self.device).view(1, -1, 1, 1) for v in (data_config["mean"], data_config["std"]))
        self.fill = -mean / std
        self.padding = crop_padding(data_config["input_size"][1])
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator, device=self.device) if self.train else None
        for i in range(len(self)):
            index = slice(i * self.batch_size, (i + 1) * self.batch_size)
            if order is None:
                yield self.pixels[index], self.labels[index]
            else:
                chosen = order[index]
                yield self._augment(self.pixels[chosen]), self.labels[chosen]

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.padding
        padded = self.fill.expand(b, c, h + 2 * p, w + 2 * p).clone()
        padded[:, :, p : p + h, p : p + w] = x
        rows = torch.randint(0, 2 * p + 1, (b, 1), generator=self.generator, device=self.device)
        cols = torch.randint(0, 2 * p + 1, (b, 1), generator=self.generator, device=self.device)
        flip = torch.rand(b, 1, generator=self.generator, device=self.device) < 0.5
        ys = rows + torch.arange(h, device=self.device)
        xs = torch.arange(w, device=self.device)
        xs = cols + torch.where(flip, xs.flip(0), xs)
        batch = torch.arange(b, device=self.device)[:, None, None]
        return padded[batch, :, ys[:, :, None], xs[:, None, :]].permute(0, 3, 1, 2).contiguous()
