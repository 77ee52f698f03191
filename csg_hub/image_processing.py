"""`CSGImageProcessor`: a model's preprocessing (channels, size, normalization) for transformers' clients.

One transform serves training, `scripts/eval.py` and the image processor that `pipeline` and
`AutoImageProcessor` load, so all three see bit-identical pixel values for the same image.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np
import torch
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from .data.transforms import image_transform


class CSGImageProcessor(BaseImageProcessor):
    """The preprocessing of a csg-hub model, as a transformers image processor.

    Holds the model's timm-style data config. Every image (PIL, numpy or tensor; the image-classification
    pipeline hands over RGB) is converted to the model's channel count the way `scripts/eval.py` converts
    dataset images, resized and normalised by `image_transform`. Saved as `preprocessor_config.json` next to
    the model; a folder without one gets the processor its `config.json` describes.
    """

    model_input_names: ClassVar[list[str]] = ["pixel_values"]

    def __init__(
        self,
        input_size: list[int] | tuple[int, int, int] = (3, 224, 224),
        mean: list[float] | tuple[float, ...] = (0.485, 0.456, 0.406),
        std: list[float] | tuple[float, ...] = (0.229, 0.224, 0.225),
        interpolation: str = "bilinear",
        crop_pct: float = 1.0,
        crop_mode: str = "center",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        input_size = [int(v) for v in input_size]
        if len(input_size) != 3 or min(input_size) <= 0:
            raise ValueError(f"input_size must be [channels, height, width] of positive ints, got {input_size}.")
        for name, values in (("mean", mean), ("std", std)):
            if len(values) != input_size[0]:
                raise ValueError(f"{name} has {len(values)} values for a {input_size[0]}-channel input.")
        if crop_mode != "center":
            raise ValueError(f"Only crop_mode 'center' is supported, got {crop_mode!r}.")
        self.input_size = input_size
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.interpolation = interpolation
        self.crop_pct = float(crop_pct)
        self.crop_mode = crop_mode
        self._transform = image_transform(self.data_config)

    @property
    def data_config(self) -> dict[str, Any]:
        """timm-style data config, as `CSGConfig.data_config`."""
        return {
            "input_size": tuple(self.input_size),
            "interpolation": self.interpolation,
            "mean": tuple(self.mean),
            "std": tuple(self.std),
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
        }

    @classmethod
    def from_config(cls, config) -> CSGImageProcessor:
        """The processor a `CSGConfig` describes."""
        data = config.data_config
        return cls(**{**data, "input_size": list(data["input_size"]), "mean": list(data["mean"]),
                      "std": list(data["std"])})  # fmt: skip

    @classmethod
    def get_image_processor_dict(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        try:
            return super().get_image_processor_dict(pretrained_model_name_or_path, **kwargs)
        except OSError:
            # a model saved before csg-hub wrote processors: its config.json holds the same facts
            from .configuration import CSGConfig

            hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only", "subfolder")
                          if k in kwargs}  # fmt: skip
            config = CSGConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
            processor = cls.from_config(config).to_dict()
            return processor, {k: v for k, v in kwargs.items() if k not in hub_kwargs and not k.startswith("_")}

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("_transform", None)
        return output

    def preprocess(self, images, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        """`pixel_values` `(N, C, H, W)` for an image or a list of images (PIL, numpy HWC/CHW or tensors)."""
        if kwargs:
            raise TypeError(f"CSGImageProcessor takes no preprocessing options, got {sorted(kwargs)}.")
        if return_tensors not in ("pt", None):
            raise ValueError(
                f"CSGImageProcessor returns PyTorch tensors (return_tensors='pt'), not {return_tensors!r}."
            )
        pixels = torch.stack([self._transform(_to_pil(image)) for image in _image_list(images)])
        return BatchFeature({"pixel_values": pixels}, tensor_type="pt")


def _image_list(images) -> list:
    # transformers' make_flat_list_of_images refuses 2-D (grey H x W) arrays
    if isinstance(images, (list, tuple)):
        return [image for item in images for image in _image_list(item)]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        if images.ndim == 4:
            return list(images)
        if images.ndim not in (2, 3):
            raise ValueError(
                f"Expected an image of 2 or 3 dimensions or a batch of 4, got shape {tuple(images.shape)}."
            )
    return [images]


def _to_pil(image):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        image = image.cpu().numpy()
    if image.dtype != np.uint8:
        raise ValueError(
            f"CSGImageProcessor takes uint8 arrays (0..255) or PIL images, got a {image.dtype} array: "
            "convert float images with (x * 255).round().astype('uint8') first."
        )
    if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
        image = image.transpose(1, 2, 0)  # channels first -> last
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return Image.fromarray(np.ascontiguousarray(image))
