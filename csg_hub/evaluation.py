"""Accuracy, loss and throughput of an image classifier on a labelled loader."""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .timm_utils import logits as logits_of


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
        logits = logits_of(model(pixel_values.to(device))).float()
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
    the model and its image processor from `model_id` exactly as a Hub user (or the Hub widget) would.

    16-bit greyscale images are scaled to 8 bits (`to_mode`) before the pipeline sees them: its `load_image`
    calls PIL's `convert("RGB")`, which clips them at 255 before any image processor runs, so without this
    the pipeline would classify white images where `scripts/eval.py` sees the real ones."""
    from transformers import pipeline

    from .data.transforms import is_16_bit, to_mode

    classifier = pipeline("image-classification", model=model_id, revision=revision)
    label2id = {name: int(i) for i, name in classifier.model.config.id2label.items()}
    # a generator makes the pipeline stream (and batch) its inputs; tqdm around it shows the progress
    stream = (
        to_mode(image, "L") if hasattr(image, "mode") and is_16_bit(image) else image
        for image in tqdm(images, desc="pipeline", unit="img", disable=not progress)
    )
    return [label2id[out[0]["label"]] for out in classifier(stream, batch_size=batch_size, top_k=1)]
