"""What model a weight-VAE artifact rebuilds (`model_config.json`): a CSG config, a timm config or one of
the paper's small models, described from a live model and built back from JSON alone."""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

from ..configuration import CSGConfig
from ..modeling import CSGForImageClassification, CSGPreTrainedModel
from ..timm_utils import model_facts
from .small_models import SMALL_MODELS, build_small_model


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
    if timm.is_model((getattr(model, "pretrained_cfg", None) or {}).get("architecture", "")):
        facts = model_facts(model)
        # the preprocessing the weights were trained with; timm's defaults are ImageNet's
        return {
            "architecture": facts["architecture"],
            "num_classes": facts["num_classes"],
            "model_args": {"in_chans": facts["in_chans"]},
            "data_config": facts["data_config"],
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
