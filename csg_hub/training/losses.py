"""Training losses: cross-entropy on the labels, and knowledge distillation from a teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..timm_utils import logits


def classification_loss(model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0):
    return F.cross_entropy(logits(model(pixel_values)), labels, label_smoothing=smoothing)


class DistillationLoss:
    """Knowledge distillation from a `teacher`: `alpha * T^2 * KL(teacher || student)` on soft targets at
    temperature `T`, plus `(1 - alpha) *` cross-entropy on the labels. Rows labelled -1 (unlabeled images)
    take the distillation term only. Called as `loss(model, pixel_values, labels, smoothing)`, like
    `classification_loss`."""

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9) -> None:
        if temperature <= 0 or not 0 <= alpha <= 1:
            raise ValueError(f"Distillation needs temperature > 0 and 0 <= alpha <= 1, got {temperature}, {alpha}.")
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature, self.alpha = temperature, alpha

    def __call__(self, model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0):
        student = logits(model(pixel_values))
        if next(self.teacher.parameters()).device != pixel_values.device:
            self.teacher.to(pixel_values.device)
        with torch.no_grad():
            target = logits(self.teacher(pixel_values))
        t = self.temperature
        soft = F.kl_div(F.log_softmax(student.float() / t, -1), F.log_softmax(target.float() / t, -1),
                        log_target=True, reduction="batchmean") * t * t  # fmt: skip
        labelled = labels >= 0
        if self.alpha == 1 or not labelled.any():
            return soft
        hard = F.cross_entropy(student[labelled], labels[labelled], label_smoothing=smoothing)
        return self.alpha * soft + (1 - self.alpha) * hard
