"""A model's dense export as a native timm folder or repo (`timm.create_model("hf-hub:...")`, TimmWrapper)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo

from ..atomic_write import atomic_folder
from ..timm_utils import EXPORTED_CFG_KEYS, stem_names
from .hub_mixin import push_to_hub

# PIL's RGB -> L weights (ITU-R 601-2 luma); they sum to 1, so grey RGB maps to the same grey
LUMA = (0.299, 0.587, 0.114)


def save_timm(
    model,
    folder: str | os.PathLike,
    *,
    label_names: list[str] | None = None,
    data_config: dict | None = None,
    rgb_stem: bool = True,
) -> str:
    """Save a plain timm model, or a CSG model's `to_timm()` export, as a native timm folder (config.json,
    model.safetensors) that loads with `timm.create_model("local-dir:" + folder)` and with transformers'
    `AutoModelForImageClassification` and image-classification `pipeline` (TimmWrapper). For CSG models the
    labels and preprocessing come from their config.

    transformers hands TimmWrapper RGB images, so a greyscale model is exported (`rgb_stem=True`) with an
    equivalent 3-channel first convolution: its grey filters split over R, G, B by PIL's luma weights and
    the grey mean/std repeated, which gives the grey model's outputs on grey images (up to float rounding)
    and reads colour images as their luma. Returns a one-line description of the source model, for cards."""
    import copy

    from timm.models import save_for_hf

    if hasattr(model, "to_timm"):
        label_names = label_names or [model.config.id2label[i] for i in range(model.config.num_labels)]
        data_config = data_config or model.config.data_config
        source = f"csg-hub CSG {model.config.architecture}, generated filters written out by `to_timm()`"
        model = model.to_timm()
    else:
        source = f"timm {model.pretrained_cfg.get('architecture', type(model).__name__)} trained with csg-hub"
        model = copy.deepcopy(model)  # the export edits its config (and stem): leave the caller's model alone
    data_config = dict(data_config or {k: model.pretrained_cfg[k] for k in ("input_size", "mean", "std")
                                       if k in model.pretrained_cfg})  # fmt: skip
    model.pretrained_cfg = {k: v for k, v in model.pretrained_cfg.items() if k in EXPORTED_CFG_KEYS}
    if rgb_stem and data_config.get("input_size", (3,))[0] == 1:
        _grey_stem_to_rgb(model)
        data_config.update(input_size=(3, *data_config["input_size"][1:]), mean=tuple(data_config["mean"]) * 3,
                           std=tuple(data_config["std"]) * 3)  # fmt: skip
    model_config = {"label_names": list(label_names)} if label_names else None
    with atomic_folder(folder) as tmp:
        save_for_hf(model, tmp, model_config=model_config, safe_serialization=True, data_config=data_config)
        _fix_timm_config(tmp / "config.json")
    return source


def _grey_stem_to_rgb(model) -> None:
    import torch
    from torch import nn

    names = sorted(stem_names(model))
    name = names[0] if len(names) == 1 else names or None
    conv = model.get_submodule(name) if isinstance(name, str) else None
    if not isinstance(conv, nn.Conv2d) or conv.in_channels != 1 or conv.groups != 1:
        raise ValueError(
            f"Cannot give this greyscale model an RGB stem: its first_conv {name!r} is not a 1-channel Conv2d. "
            "Pass rgb_stem=False to export it with its 1-channel input."
        )
    weights = torch.tensor(LUMA, dtype=conv.weight.dtype, device=conv.weight.device).view(1, 3, 1, 1)
    conv.weight = nn.Parameter(conv.weight.detach() * weights)
    conv.in_channels = 3
    if hasattr(model, "in_chans"):  # timm reads the input channels from here when it writes the config
        model.in_chans = 3
    from timm.models._input import update_model_args

    update_model_args(model, in_chans=3)


@dataclass
class TimmExport:
    """What `push_timm` uploads: `save_timm`'s folder and a short card."""

    model: Any
    label_names: list[str] | None = None
    data_config: dict | None = None
    rgb_stem: bool = True
    default_commit_message: str = "Upload dense timm model"

    def _save_pretrained(self, save_directory: Path, repo_id: str) -> None:
        source = save_timm(self.model, save_directory, label_names=self.label_names, data_config=self.data_config,
                           rgb_stem=self.rgb_stem)  # fmt: skip
        (save_directory / "README.md").write_text(
            "---\nlibrary_name: timm\nlicense: apache-2.0\npipeline_tag: image-classification\n"
            "tags:\n- timm\n- image-classification\n- csg-hub\n---\n\n"
            f"# {repo_id.split('/')[-1]}\n\nDense timm model ({source}).\n"
        )


def push_timm(
    model,
    repo_id: str,
    *,
    label_names: list[str] | None = None,
    data_config: dict | None = None,
    rgb_stem: bool = True,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
) -> CommitInfo:
    """Push what `save_timm` writes, plus a short card, as a native timm repo that loads with
    `timm.create_model("hf-hub:" + repo_id)` and with transformers' `AutoModelForImageClassification`."""
    export = TimmExport(model, label_names=label_names, data_config=data_config, rgb_stem=rgb_stem)
    return push_to_hub(export, repo_id, commit_message=commit_message, private=private, token=token, revision=revision)


def _fix_timm_config(path: Path) -> None:
    # timm 1.0.31 records num_classes inside model_args as well as at the root; transformers'
    # TimmWrapper passes num_labels *and* model_args to create_model, so the duplicate raises
    # "multiple values for 'num_classes'". The root value is the one both libraries read.
    config = json.loads(path.read_text())
    model_args = config.get("model_args") or {}
    if "num_classes" in model_args:
        model_args.pop("num_classes")
        config["model_args"] = model_args
    path.write_text(json.dumps(config, indent=2) + "\n")
