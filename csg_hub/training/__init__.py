"""Training: the loop (`loop`), its resume checkpoints (`checkpoints`), losses and BatchNorm recalibration."""

from .batchnorm import recalibrate_batchnorm
from .checkpoints import CHECKPOINT_DIR, load_into
from .loop import TrainingArguments, distributed_state, fit, paper_optimizer, warmup_cosine
from .losses import DistillationLoss, classification_loss
from .quantization_aware import QuantizationAware

__all__ = [
    "CHECKPOINT_DIR",
    "DistillationLoss",
    "QuantizationAware",
    "TrainingArguments",
    "classification_loss",
    "distributed_state",
    "fit",
    "load_into",
    "paper_optimizer",
    "recalibrate_batchnorm",
    "warmup_cosine",
]
