"""Re-estimating BatchNorm statistics after weights changed (decoded, converted or quantized)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, Any]], num_batches: int = 10
) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics from `num_batches` batches of `(inputs, labels)`.

    Decoded weights are close to, not equal to, the originals, so the stored statistics no longer match
    the activations they normalise. Returns `model` in its previous train/eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return model
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches seen
    model.train()
    device = next(model.parameters()).device
    with torch.no_grad():
        for i, (inputs, _) in enumerate(batches):
            if i >= num_batches:
                break
            model(inputs.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.train(was_training)
