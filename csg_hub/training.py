"""A plain supervised training loop with the paper's recipe (SGD, momentum 0.9, wd 5e-4)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm


def paper_optimizer(model: nn.Module, lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 5e-4):
    """SGD as in the CSG paper; weight decay applies to codes and generator too."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)


def train_classifier(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    max_steps: int | None = None,
    progress: bool = True,
) -> list[float]:
    """Train a transformers image classifier (`model(pixel_values, labels).loss`) with cosine LR decay.

    Returns the per-step losses.
    """
    optimizer = optimizer or paper_optimizer(model)
    total = epochs * len(loader) if max_steps is None else min(max_steps, epochs * len(loader))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total, pct_start=0.15
    )
    model.train()
    losses: list[float] = []
    with tqdm(total=total, desc="train", unit="step", disable=not progress) as bar:
        for epoch in range(epochs):
            for pixel_values, labels in loader:
                loss = model(pixel_values=pixel_values, labels=labels).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.update()
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
                if len(losses) >= total:
                    return losses
    return losses
