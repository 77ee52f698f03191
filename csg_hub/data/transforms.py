"""Images to model inputs: the eval transform (`image_transform`, shared by training, `scripts/eval.py` and the
image processor that `pipeline` loads) and the one training augmentation (`RandomCropFlip`), applied to
normalised batches by every loader."""

from __future__ import annotations

import numpy as np
import torch

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def is_16_bit(image) -> bool:
    """Whether a PIL image holds 16-bit greyscale values, which PIL's own `convert("L")` / `convert("RGB")`
    clip at 255 (a mostly white image) instead of scaling."""
    return image.mode in ("I;16", "I;16L", "I;16B", "I;16N") or (image.mode == "I" and image.getextrema()[1] > 255)


def to_mode(image, mode: str):
    """A PIL image in mode "L" or "RGB". 16-bit greyscale is scaled to 8 bits (PIL's own conversion clips
    it at 255); palette and other modes go through PIL's conversion (RGB -> L with PIL's luma weights)."""
    from PIL import Image

    if is_16_bit(image):
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.round(values / 257.0).clip(0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image if image.mode == mode else image.convert(mode)


def crop_padding(height: int) -> int:
    """Padding of the training augmentation's random crop (black borders, as in the paper's recipe)."""
    return max(1, height // 8)


def image_transform(data_config: dict):
    """PIL image -> normalised tensor for a model's timm-style data config (`input_size`, `mean`, `std`,
    `interpolation`, `crop_pct`).

    Images are converted to the model's channel count (grey <-> RGB) and resized to its input size (with
    `crop_pct < 1`, resized larger and centre-cropped, as timm's eval transform does). Training batches then
    get `RandomCropFlip`.
    """
    from torchvision.transforms import v2

    channels, height, width = data_config["input_size"]
    if channels not in (1, 3):
        raise ValueError(f"Only 1- or 3-channel models can take PIL images, this one wants {channels}.")
    interpolation = data_config.get("interpolation", "bilinear")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"Unsupported interpolation {interpolation!r}; choose one of {_INTERPOLATIONS}.")
    crop_pct = float(data_config.get("crop_pct", 1.0))
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}.")
    mode = "L" if channels == 1 else "RGB"
    scaled = (height, width) if crop_pct == 1 else (int(height / crop_pct), int(width / crop_pct))
    steps = [
        v2.Lambda(lambda img: to_mode(img, mode)),
        v2.PILToTensor(),
        v2.Resize(scaled, interpolation=v2.InterpolationMode(interpolation), antialias=True),
    ]
    if scaled != (height, width):
        steps.append(v2.CenterCrop((height, width)))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(data_config["mean"]), list(data_config["std"]))]
    return v2.Compose(steps)


class RandomCropFlip:
    """The paper's training augmentation on normalised `(N, C, H, W)` batches: a random `H x W` window of each
    image padded by `padding` black pixels (default `crop_padding(H)`), flipped horizontally with probability 1/2.

    Its random draws come from a CPU generator seeded with `seed`, whatever device the batch is on, so that the
    same batches get the same augmentation in the per-image and the preloaded loaders. In a DataLoader worker
    it reseeds from the worker's seed, so workers do not repeat each other's draws.
    """

    def __init__(self, data_config: dict, seed: int = 0, padding: int | None = None) -> None:
        _, height, _ = data_config["input_size"]
        self.padding = crop_padding(height) if padding is None else padding
        # black (pixel 0) after normalisation, as a crop of the padded uint8 image would give
        self.fill = -torch.tensor(data_config["mean"]) / torch.tensor(data_config["std"])
        self.generator = torch.Generator().manual_seed(seed)
        self._worker: int | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        worker = torch.utils.data.get_worker_info()
        if worker is not None and worker.id != self._worker:
            self.generator.manual_seed(worker.seed)
            self._worker = worker.id
        b, c, h, w = x.shape
        p = self.padding
        rows = torch.randint(0, 2 * p + 1, (b, 1), generator=self.generator).to(x.device)
        cols = torch.randint(0, 2 * p + 1, (b, 1), generator=self.generator).to(x.device)
        flip = (torch.rand(b, 1, generator=self.generator) < 0.5).to(x.device)
        padded = self.fill.to(x.device, x.dtype).view(1, c, 1, 1).expand(b, c, h + 2 * p, w + 2 * p).clone()
        padded[:, :, p : p + h, p : p + w] = x
        ys = rows + torch.arange(h, device=x.device)
        xs = torch.arange(w, device=x.device)
        xs = cols + torch.where(flip, xs.flip(0), xs)
        batch = torch.arange(b, device=x.device)[:, None, None]
        return padded[batch, :, ys[:, :, None], xs[:, None, :]].permute(0, 3, 1, 2).contiguous()


class AugmentedCollate:
    """A DataLoader `collate_fn`: the default collation, then `augment` on the batch's images."""

    def __init__(self, augment: RandomCropFlip) -> None:
        self.augment = augment

    def __call__(self, rows):
        pixel_values, labels = torch.utils.data.default_collate(rows)
        return self.augment(pixel_values), labels
