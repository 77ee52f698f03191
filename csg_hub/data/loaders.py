"""Image-classification datasets (Hub ids, local folders, `save_to_disk` folders) as PyTorch loaders of
`(pixel_values, labels)` batches, with errors that name the row or column at fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .transforms import AugmentedCollate, RandomCropFlip, image_transform, to_mode

IMAGE_COLUMNS = ("image", "img", "pixel_values", "picture")


def load_image_dataset(name_or_path: str, split: str, revision: str | None = None, limit: int | None = None):
    """One split of an image-classification dataset: a Hub id or local folder for `datasets.load_dataset`,
    or a folder written by `DatasetDict.save_to_disk`; with `limit` (a positive int), its first `limit` rows.
    `limit=None` takes every row; 0 or a negative limit is refused (it would otherwise mean "all of them")."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit must be a positive number of rows (or None for all), got {limit!r}.")
    dataset = _load_split(name_or_path, split, revision)
    return dataset.select(range(min(limit, len(dataset)))) if limit is not None else dataset


def _load_split(name_or_path: str, split: str, revision: str | None):
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

    def __init__(self, dataset, data_config, num_classes, columns, label_map) -> None:
        self.dataset = dataset
        self.image_col, self.label_col = image_label_columns(dataset, *columns)
        self.transform = image_transform(data_config)
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

    `train=True` shuffles, drops the last partial batch and applies `RandomCropFlip` (seeded by `seed`).
    Labels must be class indices below `num_classes` (default: the label column's ClassLabel size); a row
    with another label, or with an image that cannot be decoded, raises a ValueError naming the row.
    `columns` names the `(image, label)` columns (default: detected); `label_map` turns dataset class
    indices into the model's (`label_mapping`).
    """
    return torch.utils.data.DataLoader(
        _LabelledImages(dataset, data_config, num_classes, columns, label_map),
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed) if train else None,
        collate_fn=AugmentedCollate(RandomCropFlip(data_config, seed)) if train else None,
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
    `num_workers` processes), and training batches are augmented on the device. The same batches as
    `classification_loader` with the same arguments, bit for bit: the same images in the same order (the same
    sampler, seeded alike) with the same augmentation draws. One process only: data-parallel launches shard
    through `classification_loader`.
    """

    def __init__(self, dataset, data_config, batch_size, train=False, seed=0, num_workers=0, num_classes=None,
                 columns=(None, None), label_map=None, device="cpu") -> None:  # fmt: skip
        source = classification_loader(dataset, data_config, 512, False, num_workers=num_workers,
                                       num_classes=num_classes, columns=columns, label_map=label_map)  # fmt: skip
        pixels, labels = zip(*source)
        self.device = torch.device(device)
        self.pixels = torch.cat(pixels).to(self.device)
        self.labels = torch.cat(labels).to(self.device)
        self.train = train
        # the per-image loader's own sampler over indices, so both draw the same order from the same seed
        self.batches = torch.utils.data.DataLoader(
            range(len(self.labels)), batch_size=batch_size, shuffle=train, drop_last=train,
            generator=torch.Generator().manual_seed(seed) if train else None,
        )  # fmt: skip
        self.augment = RandomCropFlip(data_config, seed) if train else None

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for index in self.batches:
            index = index.to(self.device)
            pixels = self.pixels[index]
            yield (pixels if self.augment is None else self.augment(pixels)), self.labels[index]
