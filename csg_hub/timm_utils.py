"""Everything csg-hub knows about timm models and repos, in one place: where a model comes from (a Hub repo id,
`repo@revision`, a local folder, timm's `hf-hub:` / `local-dir:` names), what a timm config says about it (the
`CSGConfig` arguments: architecture, channels, size, normalization, labels), which modules are its stem and
classifier, and the logits of any model's output."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from timm.models._hub import _parse_model_cfg, hf_split
from torch import nn

from .configuration import CSGConfig

# pretrained_cfg entries that describe the preprocessing the weights expect (timm's data config)
DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
# pretrained_cfg entries that describe exported weights; the rest (tag, paper_ids, origin_url, pool_size,
# hf_hub_id...) describe the ImageNet checkpoint the architecture's defaults came from, not ours
EXPORTED_CFG_KEYS = (*DATA_CONFIG_KEYS, "architecture", "num_classes", "first_conv", "classifier", "license")
_PREFIXES = ("hf-hub:", "local-dir:")


@dataclass(frozen=True)
class ModelSource:
    """A model's location: a local folder, or a Hub repo id at an optional revision."""

    name: str
    revision: str | None = None

    @classmethod
    def parse(cls, source: str | os.PathLike, revision: str | None = None) -> ModelSource:
        """A source from a folder, a repo id, `repo@revision` or timm's `hf-hub:` / `local-dir:` names.

        A revision given both in the name and as `revision` must agree."""
        text = str(source)
        for prefix in _PREFIXES:
            if text.startswith(prefix):
                text = text[len(prefix) :]
                if prefix == "local-dir:":
                    return cls(text, None)
        if Path(text).is_dir():
            return cls(text, None)
        repo_id, pinned = hf_split(text) if "@" in text else (text, None)
        if pinned is not None and revision is not None and pinned != revision:
            raise ValueError(f"{source!r} names revision {pinned!r} but revision={revision!r} was also given.")
        return cls(repo_id, pinned or revision)

    @property
    def is_local(self) -> bool:
        return Path(self.name).is_dir()

    @property
    def timm_name(self) -> str:
        """The name `timm.create_model` loads this source by."""
        if self.is_local:
            return f"local-dir:{self.name}"
        return f"hf-hub:{self.name}" + (f"@{self.revision}" if self.revision else "")

    def file(self, filename: str) -> Path:
        """A file of the source: the folder's own, or downloaded into the huggingface_hub cache."""
        if self.is_local:
            path = Path(self.name) / filename
            if not path.exists():
                raise FileNotFoundError(f"{self.name} holds no {filename}; is it a model folder?")
            return path
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(self.name, filename, revision=self.revision))

    def config_json(self) -> dict[str, Any]:
        """The source's `config.json`."""
        return json.loads(self.file("config.json").read_text())


def read_config_json(source: str | os.PathLike, revision: str | None = None) -> dict[str, Any]:
    """The `config.json` of a Hub model repo (optionally `repo@revision`) or of a local model folder."""
    return ModelSource.parse(source, revision).config_json()


def names_in_cfg(model: nn.Module, key: str) -> set[str]:
    """Module names a timm model's `pretrained_cfg` lists under `key` (`"classifier"`, `"first_conv"`)."""
    value = (getattr(model, "pretrained_cfg", None) or {}).get(key) or ()
    return {value} if isinstance(value, str) else set(value)


def classifier_names(model: nn.Module) -> set[str]:
    """Module names of a timm model's classifier head(s)."""
    return names_in_cfg(model, "classifier")


def stem_names(model: nn.Module) -> set[str]:
    """Module names of a timm model's first convolution(s)."""
    return names_in_cfg(model, "first_conv")


def is_under(module_name: str, roots: set[str]) -> bool:
    """Whether `module_name` is one of `roots` or inside one of them."""
    return any(module_name == r or module_name.startswith(r + ".") for r in roots)


def logits(output: Any) -> torch.Tensor:
    """The logits of a classifier's output: a tensor (timm), or a transformers output's `.logits`."""
    return output if isinstance(output, torch.Tensor) else output.logits


def csg_kwargs(pretrained_cfg: dict[str, Any], architecture: str, in_chans: int, num_classes: int | None,
               model_args: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """`CSGConfig` arguments for a timm model: architecture, channels, size, normalization (when it has one value
    per channel), labels (names when the config has them, else their number), extra model arguments."""
    kwargs: dict[str, Any] = {
        "architecture": architecture,
        "in_chans": in_chans,
        "image_size": pretrained_cfg.get("input_size", (3, 224, 224))[-1],
    }
    if model_args:
        kwargs["model_args"] = dict(model_args)
    if len(pretrained_cfg.get("mean", ())) == in_chans:
        kwargs.update(image_mean=list(pretrained_cfg["mean"]), image_std=list(pretrained_cfg["std"]))
    labels = pretrained_cfg.get("label_names")
    if labels:
        kwargs["id2label"] = {int(k): v for k, v in labels.items()} if isinstance(labels, dict) else dict(enumerate(labels))
    elif num_classes is not None:
        kwargs["num_labels"] = num_classes
    return kwargs


def csg_kwargs_from_config_json(config: dict[str, Any]) -> dict[str, Any]:
    """`CSGConfig` arguments from a timm `config.json` (timm's own parser, legacy layouts included)."""
    if "architecture" not in config:
        raise ValueError(f"Not a timm config: its config.json has no 'architecture' (model_type {config.get('model_type')!r}).")
    pretrained_cfg, architecture, model_args = _parse_model_cfg(copy.deepcopy(config), {})
    model_args = dict(model_args or {})
    model_args.pop("num_classes", None)
    in_chans = model_args.pop("in_chans", pretrained_cfg.get("input_size", (3,))[0])
    num_classes = pretrained_cfg.get("num_classes", 1000)
    return csg_kwargs(pretrained_cfg, architecture, in_chans, num_classes, model_args)


def config_from_timm(repo_or_dir: str | os.PathLike, revision: str | None = None, **overrides: Any) -> CSGConfig:
    """A `CSGConfig` for the architecture, labels, channels and preprocessing of a timm Hub repo (`repo@revision`
    works) or local folder holding a timm `config.json`; `overrides` set CSG hyper-parameters."""
    config = read_config_json(repo_or_dir, revision)
    if "architecture" not in config:
        raise ValueError(f"{repo_or_dir} is not a timm repo: its config.json has no 'architecture'.")
    return CSGConfig(**{**csg_kwargs_from_config_json(config), **overrides})


def model_facts(model: nn.Module) -> dict[str, Any]:
    """What a live timm model says about itself: `architecture`, `in_chans` (its stem's), `num_classes` and its
    `data_config` (the `DATA_CONFIG_KEYS` of its pretrained_cfg, as JSON lists)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if "architecture" not in cfg:
        raise ValueError(
            f"Expected a timm model (with a pretrained_cfg naming its architecture), got {type(model).__name__}: "
            "build it with timm.create_model."
        )
    stems = sorted(stem_names(model))
    stem = model.get_submodule(stems[0]) if stems else None
    in_chans = stem.in_channels if isinstance(stem, nn.Conv2d) else cfg.get("input_size", (3,))[0]
    data_config = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items() if k in DATA_CONFIG_KEYS}
    return {"architecture": cfg["architecture"], "in_chans": in_chans, "num_classes": model.num_classes,
            "data_config": data_config}  # fmt: skip


def csg_kwargs_from_model(model: nn.Module) -> dict[str, Any]:
    """`CSGConfig` arguments for a live timm model."""
    facts = model_facts(model)
    return csg_kwargs(facts["data_config"], facts["architecture"], facts["in_chans"], facts["num_classes"])


def create_pretrained(source: ModelSource) -> nn.Module:
    """The timm model of a timm repo or folder with its safetensors weights (never a pickle)."""
    import timm
    from huggingface_hub.errors import EntryNotFoundError

    try:
        source.file("model.safetensors")
    except (FileNotFoundError, EntryNotFoundError) as err:
        raise FileNotFoundError(
            f"{source.name} has no model.safetensors (csg-hub reads safetensors weights, never pickles)."
        ) from err
    return timm.create_model(source.timm_name, pretrained=True)
