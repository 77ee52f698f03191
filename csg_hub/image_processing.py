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
    the model; a folder without one gets the processor its `config.json` describes, and one whose file
    disagrees with its `config.json` is refused (config.json is the one source of truth).

    16-bit greyscale (PIL "I;16" images, uint16 arrays) is scaled to 8 bits, as in `scripts/eval.py`. But
    transformers' image-classification pipeline converts a PIL image or file path to RGB (`load_image`) before
    any processor runs, and PIL clips 16-bit values at 255 there: hand the pipeline `np.asarray(image)` or
    `csg_hub.data.to_mode(image, "L")` instead (`csg_hub.evaluation.pipeline_predictions` does the latter).
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
        config_data_config: dict[str, Any] | None = None,
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
        # the data config of the config.json this processor was made from (`from_config`): a processor file
        # edited since is refused however transformers loads it (5.25's AutoImageProcessor builds it from the
        # file alone, without the folder's config.json)
        self.config_data_config = config_data_config
        if config_data_config is not None:
            missing = [k for k, _ in _AGREEMENT if not isinstance(config_data_config, dict) or k not in config_data_config]
            if missing:
                raise ValueError(
                    f"The processor's config_data_config (the config.json settings it was saved from) lacks "
                    f"{missing}: preprocessor_config.json is corrupt; delete it (it is rebuilt from config.json)."
                )
            own = {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()}
            check_processor_agrees(own, config_data_config, "this processor")
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
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in config.data_config.items()}
        return cls(**data, config_data_config=data)

    @classmethod
    def get_image_processor_dict(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """The processor settings of a model folder or repo. config.json is the one source of truth: a
        `preprocessor_config.json` that describes other preprocessing (size, channels, mean, std, interpolation,
        crop) than the model's `config.json` is refused with a ValueError naming both files, since the pipeline
        would then feed the model other pixels than `scripts/eval.py` and training do."""
        from .configuration import CSGConfig

        hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only", "subfolder")
                      if k in kwargs}  # fmt: skip
        try:
            processor, rest = super().get_image_processor_dict(pretrained_model_name_or_path, **kwargs)
        except OSError:
            # a model saved before csg-hub wrote processors: its config.json holds the same facts
            config = CSGConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
            processor = cls.from_config(config).to_dict()
            return processor, {k: v for k, v in kwargs.items() if k not in hub_kwargs and not k.startswith("_")}
        config = _csg_config(pretrained_model_name_or_path, hub_kwargs)
        if config is not None:
            check_processor_agrees(processor, config.data_config, pretrained_model_name_or_path)
        return processor, rest

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


def _csg_config(pretrained_model_name_or_path, hub_kwargs: dict):
    # the CSGConfig of the model next to a preprocessor_config.json; None where there is no CSG config.json
    # (a processor saved on its own, or one used with another model)
    from transformers import PretrainedConfig

    from .configuration import CSGConfig

    try:
        raw, _ = PretrainedConfig.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
    except OSError:
        return None
    if raw.get("model_type") != CSGConfig.model_type:
        return None
    return CSGConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)


_AGREEMENT = (("input_size", "in_chans/image_size"), ("mean", "image_mean"), ("std", "image_std"),
              ("interpolation", "interpolation"), ("crop_pct", "crop_pct"), ("crop_mode", "crop_mode"))  # fmt: skip


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(_same(x, y) for x, y in zip(a, b)))  # fmt: skip
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)), abs(float(b)))
    return a == b


def check_processor_agrees(processor: dict, data_config: dict, source) -> None:
    """Refuse (ValueError) a processor dict whose preprocessing differs from a config's `data_config`."""
    defaults = CSGImageProcessor.__init__.__defaults__
    names = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")
    fallback = dict(zip(names, defaults))  # a field left out of the file takes the processor's default
    diffs = [
        f"{key} {processor.get(key, fallback[key])} vs {field} {list(data_config[key]) if isinstance(data_config[key], tuple) else data_config[key]}"
        for key, field in _AGREEMENT
        if not _same(processor.get(key, fallback[key]), data_config[key])
    ]
    if diffs:
        raise ValueError(
            f"preprocessor_config.json of {source} disagrees with its config.json ({'; '.join(diffs)}): the "
            "pipeline would feed the model other pixels than eval.py and training. config.json is the source of "
            "truth: delete preprocessor_config.json (it is rebuilt from config.json) or save the model again."
        )


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
    if image.dtype == np.uint16:  # 16-bit: scaled to 8 bits as `to_mode` scales a 16-bit PIL image
        image = np.round(image.astype(np.float64) / 257.0).clip(0, 255).astype(np.uint8)
    if image.dtype != np.uint8:
        raise ValueError(
            f"CSGImageProcessor takes uint8 or uint16 arrays or PIL images, got a {image.dtype} array: "
            "convert float images with (x * 255).round().astype('uint8') first."
        )
    if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
        image = image.transpose(1, 2, 0)  # channels first -> last
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return Image.fromarray(np.ascontiguousarray(image))
