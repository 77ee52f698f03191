"""Accuracy, loss and throughput of an image classifier on a labelled loader."""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


def _logits(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    out = model(pixel_values)
    return out if isinstance(out, torch.Tensor) else out.logits


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    progress: bool = True,
    predictions: list[int] | None = None,
) -> dict[str, float]:
    """`top1`, `top5` (in %), mean cross-entropy `loss`, `num_samples` and `images_per_second`.

    Works on transformers classifiers (`.logits`) and plain timm models alike. A `predictions` list is
    extended with each sample's top-1 class index.
    """
    model.eval()
    device = next(model.parameters()).device
    correct1 = correct5 = seen = 0
    loss_sum = 0.0
    start = time.perf_counter()
    for pixel_values, labels in tqdm(loader, desc="eval", unit="batch", disable=not progress):
        labels = labels.to(device)
        logits = _logits(model, pixel_values.to(device)).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
        if predictions is not None:
            predictions.extend(top[:, 0].tolist())
        correct1 += (top[:, 0] == labels).sum().item()
        correct5 += (top == labels[:, None]).any(dim=-1).sum().item()
        seen += labels.numel()
    elapsed = time.perf_counter() - start
    if seen == 0:
        raise ValueError("The evaluation loader yielded no samples.")
    return {
        "top1": 100.0 * correct1 / seen,
        "top5": 100.0 * correct5 / seen,
        "loss": loss_sum / seen,
        "num_samples": seen,
        "images_per_second": seen / elapsed,
    }


def pipeline_predictions(
    model_id: str, images: Iterable, batch_size: int = 256, revision: str | None = None, progress: bool = True
) -> list[int]:
    """Top-1 class indices that transformers' `pipeline("image-classification")` gives for `images`, loading
    the model and its image processor from `model_id` exactly as a Hub user (or the Hub widget) would."""
    from transformers import pipeline

    classifier = pipeline("image-classification", model=model_id, revision=revision)
    label2id = {name: int(i) for i, name in classifier.model.config.id2label.items()}
    # a generator makes the pipeline stream (and batch) its inputs; tqdm around it shows the progress
    stream = (image for image in tqdm(images, desc="pipeline", unit="img", disable=not progress))
    return [label2id[out[0]["label"]] for out in classifier(stream, batch_size=batch_size, top_k=1)]


def load_classifier(model_id: str, revision: str | None = None) -> tuple[nn.Module, dict]:
    """A zoo (CSG) or plain timm / TimmWrapper classifier from a Hub repo or local folder, with its
    timm-style data config (`input_size`, `mean`, `std`)."""
    from pathlib import Path

    import timm
    from timm.data import resolve_data_config
    from transformers import AutoModelForImageClassification

    from .hub.timm_interop import read_config_json

    local = Path(model_id)
    config = read_config_json(model_id, revision)
    if config.get("model_type") == "csg":
        model = AutoModelForImageClassification.from_pretrained(model_id, revision=revision)
        return model, model.config.data_config
    if "architecture" in config:  # timm's own format, also what TimmWrapper reads
        source = f"local-dir:{local}" if local.is_dir() else f"hf-hub:{model_id}" + (f"@{revision}" if revision else "")
        model = timm.create_model(source, pretrained=True)
        return model, resolve_data_config(model=model)
    raise ValueError(
        f"{model_id} is neither a csg-hub model (model_type 'csg') nor a timm model (config.json with "
        f"'architecture'); found model_type {config.get('model_type')!r}."
    )


def model_label_names(model: nn.Module, model_id: str, revision: str | None = None) -> list[str] | None:
    """The class names a classifier predicts, in index order, or None when it has only placeholders."""
    import re

    from .hub.timm_interop import read_config_json

    config = getattr(model, "config", None)
    if config is not None and getattr(config, "id2label", None):
        names = [config.id2label[i] for i in range(config.num_labels)]
    else:
        labels = read_config_json(model_id, revision).get("label_names")
        names = [labels[str(i)] for i in range(len(labels))] if isinstance(labels, dict) else labels
    if not names or all(re.fullmatch(r"LABEL_\d+", str(n)) for n in names):
        return None
    return [str(n) for n in names]


def _card(model_id: str):
    from pathlib import Path

    from huggingface_hub import ModelCard

    readme = Path(model_id) / "README.md"
    if Path(model_id).is_dir():
        return ModelCard(readme.read_text()) if readme.exists() else None
    return ModelCard.load(model_id)


def card_result_splits(model_id: str) -> set[str]:
    """The dataset splits of the accuracy results a model card already records."""
    card = _card(model_id)
    results = (card.data.eval_results or []) if card is not None and card.data is not None else []
    return {r.dataset_split for r in results if r.metric_type == "accuracy" and r.dataset_split}


def update_card_accuracy(
    model_id: str, top1: float, dataset_id: str, split: str = "test", revision: str | None = None
) -> None:
    """Record a measured top-1 in the `model-index` of a model card: a local folder's README.md, or
    a Hub repo's card (pushed as a new commit)."""
    from pathlib import Path

    from huggingface_hub import ModelCard, ModelCardData

    from .hub.cards import accuracy_result

    local = Path(model_id)
    readme = local / "README.md"
    if local.is_dir():
        card = ModelCard(readme.read_text()) if readme.exists() else ModelCard("---\n---\n")
    else:
        card = ModelCard.load(model_id)
    data = card.data if card.data is not None else ModelCardData()
    new = accuracy_result(top1, dataset_id, split=split)
    kept = [
        r
        for r in (data.eval_results or [])
        if not (r.dataset_type == dataset_id and r.dataset_split == split and r.metric_type == "accuracy")
    ]
    data.eval_results = [*kept, new]
    data.model_name = data.model_name or Path(model_id).name
    data.datasets = sorted({*(data.datasets or []), dataset_id})
    card.data = data
    if local.is_dir():
        card.save(readme)
    else:
        # a commit sha cannot take a commit: record the result on the default branch then
        branch = None if revision is None or len(revision) == 40 else revision
        card.push_to_hub(model_id, revision=branch, commit_message=f"Record {split} top-1 on {dataset_id}")
