"""Loading any zoo classifier by id: a csg-hub (CSG) model or a plain timm / TimmWrapper one, with what an
evaluation needs to feed it (its data config and class names)."""

from __future__ import annotations

import re

from torch import nn

from ..timm_utils import ModelSource


def load_classifier(model_id: str, revision: str | None = None) -> tuple[nn.Module, dict]:
    """A zoo (CSG) or plain timm / TimmWrapper classifier from a Hub repo or local folder, with its
    timm-style data config (`input_size`, `mean`, `std`)."""
    import timm
    from timm.data import resolve_data_config
    from transformers import AutoModelForImageClassification

    source = ModelSource.parse(model_id, revision)
    config = source.config_json()
    if config.get("model_type") == "csg":
        model = AutoModelForImageClassification.from_pretrained(source.name, revision=source.revision)
        return model, model.config.data_config
    if "architecture" in config:  # timm's own format, also what TimmWrapper reads
        model = timm.create_model(source.timm_name, pretrained=True)
        return model, resolve_data_config(model=model)
    raise ValueError(
        f"{model_id} is neither a csg-hub model (model_type 'csg') nor a timm model (config.json with "
        f"'architecture'); found model_type {config.get('model_type')!r}."
    )


def model_label_names(model: nn.Module, model_id: str, revision: str | None = None) -> list[str] | None:
    """The class names a classifier predicts, in index order, or None when it has only placeholders."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "id2label", None):
        names = [config.id2label[i] for i in range(config.num_labels)]
    else:
        labels = ModelSource.parse(model_id, revision).config_json().get("label_names")
        names = [labels[str(i)] for i in range(len(labels))] if isinstance(labels, dict) else labels
    if not names or all(re.fullmatch(r"LABEL_\d+", str(n)) for n in names):
        return None
    return [str(n) for n in names]
