"""timm interop: a CSG model's dense export as a native timm folder or repo, and CSG configs built from
timm repos."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, HfApi, hf_hub_download

from ..configuration import CSGConfig


def save_timm(
    model, folder: str | os.PathLike, *, label_names: list[str] | None = None, data_config: dict | None = None
) -> str:
    """Save a plain timm model, or a CSG model's `to_timm()` export, as a native timm folder (config.json,
    model.safetensors) that loads with `timm.create_model("local-dir:" + folder)` and with transformers'
    `AutoModelForImageClassification` (TimmWrapper). For CSG models the labels and preprocessing come
    from their config. Returns a one-line description of the source model, for cards."""
    from timm.models import save_for_hf

    if hasattr(model, "to_timm"):
        label_names = label_names or [model.config.id2label[i] for i in range(model.config.num_labels)]
        data_config = data_config or model.config.data_config
        source = f"csg-hub CSG {model.config.architecture}, generated filters written out by `to_timm()`"
        model = model.to_timm()
    else:
        source = f"timm {model.pretrained_cfg.get('architecture', type(model).__name__)} trained with csg-hub"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_config = {"label_names": list(label_names)} if label_names else None
    save_for_hf(model, folder, model_config=model_config, safe_serialization=True, data_config=data_config)
    _fix_timm_config(folder / "config.json")
    return source


def push_timm(
    model,
    repo_id: str,
    *,
    label_names: list[str] | None = None,
    data_config: dict | None = None,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
) -> CommitInfo:
    """Push what `save_timm` writes, plus a short card, as a native timm repo that loads with
    `timm.create_model("hf-hub:" + repo_id)` and with transformers' `AutoModelForImageClassification`."""
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp:
        source = save_timm(model, tmp, label_names=label_names, data_config=data_config)
        (Path(tmp) / "README.md").write_text(
            "---\nlibrary_name: timm\nlicense: apache-2.0\npipeline_tag: image-classification\n"
            "tags:\n- timm\n- image-classification\n- csg-hub\n---\n\n"
            f"# {repo_id.split('/')[-1]}\n\nDense timm model ({source}).\n"
        )
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=tmp,
            commit_message=commit_message or "Upload dense timm model",
            revision=revision,
        )


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


def read_config_json(repo_or_dir: str | os.PathLike, revision: str | None = None) -> dict[str, Any]:
    """The `config.json` of a Hub model repo or of a local model folder."""
    local = Path(repo_or_dir)
    if local.is_dir():
        path = local / "config.json"
        if not path.exists():
            raise FileNotFoundError(f"{local} holds no config.json; is it a model folder?")
    else:
        path = Path(hf_hub_download(str(repo_or_dir), "config.json", revision=revision))
    return json.loads(path.read_text())


def config_from_timm(repo_or_dir: str | os.PathLike, revision: str | None = None, **overrides: Any) -> CSGConfig:
    """A `CSGConfig` for the architecture, labels, channels and preprocessing of a timm Hub repo
    (or local folder holding a timm `config.json`); `overrides` set CSG hyper-parameters."""
    timm_config = read_config_json(repo_or_dir, revision)
    if "architecture" not in timm_config:
        raise ValueError(f"{repo_or_dir} is not a timm repo: its config.json has no 'architecture'.")
    pretrained_cfg = timm_config.get("pretrained_cfg") or {}
    model_args = dict(timm_config.get("model_args") or {})
    model_args.pop("num_classes", None)
    input_size = pretrained_cfg.get("input_size", (3, 224, 224))
    in_chans = model_args.pop("in_chans", input_size[0])
    kwargs: dict[str, Any] = {
        "architecture": timm_config["architecture"],
        "in_chans": in_chans,
        "image_size": input_size[-1],
        "model_args": model_args or None,
    }
    if len(pretrained_cfg.get("mean", ())) == in_chans:
        kwargs.update(image_mean=list(pretrained_cfg["mean"]), image_std=list(pretrained_cfg["std"]))
    labels = timm_config.get("label_names")
    if labels:
        kwargs["id2label"] = (
            {int(k): v for k, v in labels.items()} if isinstance(labels, dict) else dict(enumerate(labels))
        )
    else:
        kwargs["num_labels"] = timm_config.get("num_classes", pretrained_cfg.get("num_classes", 1000))
    return CSGConfig(**{**kwargs, **overrides})
