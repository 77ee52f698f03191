"""What model a weight-VAE artifact rebuilds (`model_config.json`): a CSG config, a timm config or one of
the paper's small models, described from a live model and built back from JSON alone."""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

from ..configuration import CSGConfig
from ..modeling import CSGForImageClassification, CSGPreTrainedModel
from .small_models import SMALL_MODELS, build_small_model

DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def describe_model(model: nn.Module) -> dict[str, Any]:
    """The JSON that `build_model` rebuilds `model`'s architecture from (`model_config.json`).

    A CSG classifier gives its `CSGConfig` (model_type "csg"), a timm model a timm config
    (`architecture`, `num_classes`, `model_args`), a `csg_hub.vae.small_models` model its name and arguments.
    """
    if isinstance(model, CSGForImageClassification):
        return model.config.to_dict()
    if isinstance(model, CSGPreTrainedModel):
        raise TypeError(f"Only CSGForImageClassification can be rebuilt, not {type(model).__name__}.")
    spec = getattr(model, "spec", None)
    if isinstance(spec, dict) and spec.get("name") in SMALL_MODELS:
        return {"small_model": spec["name"], "kwargs": spec["kwargs"]}
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if timm.is_model(cfg.get("architecture", "")):
        first = cfg.get("first_conv")
        stem = model.get_submodule(first if isinstance(first, str) else first[0]) if first else None
        model_args = {"in_chans": stem.in_channels} if stem is not None else {}
        # the preprocessing the weights were trained with; timm's defaults are ImageNet's
        data_config = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items() if k in DATA_CONFIG_KEYS}
        return {
            "architecture": cfg["architecture"],
            "num_classes": model.num_classes,
            "model_args": model_args,
            "data_config": data_config,
        }
    raise ValueError(
        f"Cannot tell how to rebuild a {type(model).__name__}: pass model_config= (a CSGConfig dict, a timm config "
        "{'architecture': ..., 'num_classes': ..., 'model_args': {...}}, or {'small_model': name, 'kwargs': {...}})."
    )


def build_model(model_config: dict[str, Any]) -> nn.Module:
    """A randomly initialised model of the architecture `model_config` (from `describe_model`) names."""
    if model_config.get("model_type") == CSGConfig.model_type:
        return CSGForImageClassification(CSGConfig.from_dict(model_config))
    if "small_model" in model_config:
        return build_small_model(model_config["small_model"], model_config.get("kwargs"))
    if "architecture" in model_config:
        model = timm.create_model(
            model_config["architecture"],
            pretrained=False,
            num_classes=model_config.get("num_classes", 1000),
            **(model_config.get("model_args") or {}),
        )
        data_config = {
            k: tuple(v) if isinstance(v, list) else v for k, v in model_config.get("data_config", {}).items()
        }
        model.pretrained_cfg = {**model.pretrained_cfg, **data_config}
        return model
    raise ValueError(
        "model_config.json names no model: expected model_type 'csg', a timm 'architecture' or a 'small_model'."
    )


def model_kind(model_config: dict[str, Any]) -> str:
    """A short `family/architecture` label for cards and configs."""
    if model_config.get("model_type") == CSGConfig.model_type:
        return f"csg/{model_config['architecture']}"
    if "small_model" in model_config:
        return f"small/{model_config['small_model']}"
    return f"timm/{model_config.get('architecture')}"
