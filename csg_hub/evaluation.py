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
    model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], progress: bool = True
) -> dict[str, float]:
    """`top1`, `top5` (in %), mean cross-entropy `loss`, `num_samples` and `images_per_second`.

    Works on transformers classifiers (`.logits`) and plain timm models alike.
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
