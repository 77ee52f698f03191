"""One training loop for dense and CSG classifiers, on HF accelerate (CPU, one or many GPUs, many nodes).

Recipe defaults follow the CSG paper (SGD, momentum 0.9, weight decay 5e-4 on everything, codes and
generator included), with a linear warm-up and cosine decay instead of step decay.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from .errors import CheckpointError
from .evaluation import evaluate
from .integrity import add_digest, verify_safetensors

CHECKPOINT_DIR = "checkpoint"


@dataclass
class TrainingArguments:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    bf16: bool = False  # bfloat16 autocast for training steps; evaluation always runs in float32
    seed: int = 0
    max_steps: int | None = None  # stop early (smoke tests); the schedule still spans all epochs


def add_training_flags(group) -> None:
    """One `--flag` per `TrainingArguments` field (booleans as `--x/--no-x`) on an argparse group: the
    scripts that train share one set of recipe flags."""
    import argparse
    import dataclasses

    defaults = TrainingArguments()
    for field in dataclasses.fields(defaults):
        flag, default = f"--{field.name.replace('_', '-')}", getattr(defaults, field.name)
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            group.add_argument(flag, type=int if default is None else type(default), default=default)


def paper_optimizer(model: nn.Module, args: TrainingArguments) -> torch.optim.Optimizer:
    """SGD as in the CSG paper; weight decay applies to codes and generator too."""
    return torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay, nesterov=True
    )


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def classification_loss(model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0):
    out = model(pixel_values)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    return F.cross_entropy(logits, labels, label_smoothing=smoothing)


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
        out = model(pixel_values)
        logits = out if isinstance(out, torch.Tensor) else out.logits
        if next(self.teacher.parameters()).device != pixel_values.device:
            self.teacher.to(pixel_values.device)
        with torch.no_grad():
            target = self.teacher(pixel_values)
            target = target if isinstance(target, torch.Tensor) else target.logits
        t = self.temperature
        soft = F.kl_div(F.log_softmax(logits.float() / t, -1), F.log_softmax(target.float() / t, -1),
                        log_target=True, reduction="batchmean") * t * t  # fmt: skip
        labelled = labels >= 0
        if self.alpha == 1 or not labelled.any():
            return soft
        hard = F.cross_entropy(logits[labelled], labels[labelled], label_smoothing=smoothing)
        return self.alpha * soft + (1 - self.alpha) * hard


def _save_checkpoint(folder: Path, model: nn.Module, optimizer, scheduler, epoch: int, history: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    add_digest(folder / "model.safetensors")
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()},
        folder / "trainer_state.pt",
    )
    (folder / "progress.json").write_text(json.dumps({"epoch": epoch, "history": history}, indent=2))


def load_into(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """`model.load_state_dict(tensors)`, strict, with a `CheckpointError` naming the tensors that are
    missing, unexpected, of another shape or of another kind (integer for float)."""
    state = model.state_dict()
    problems = [f"missing {k}" for k in sorted(state.keys() - tensors.keys())]
    problems += [f"unexpected {k}" for k in sorted(tensors.keys() - state.keys())]
    for k in sorted(state.keys() & tensors.keys()):
        if tensors[k].shape != state[k].shape:
            problems.append(f"{k}: shape {tuple(tensors[k].shape)} vs {tuple(state[k].shape)}")
        elif tensors[k].is_floating_point() != state[k].is_floating_point():
            problems.append(f"{k}: {tensors[k].dtype} vs {state[k].dtype}")
    if problems:
        raise CheckpointError(
            f"{source} does not fit this model ({len(problems)} problem(s): {problems[:4]}); it was saved for "
            "another architecture or setting."
        )
    model.load_state_dict(tensors)


def _load_checkpoint(folder: Path, model: nn.Module, optimizer, scheduler) -> tuple[int, list]:
    for name in ("model.safetensors", "trainer_state.pt", "progress.json"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"Cannot resume: {folder / name} is missing.")
    verify_safetensors(folder / "model.safetensors", "resume checkpoint")
    load_into(model, load_file(folder / "model.safetensors"), f"the resume checkpoint {folder}")
    state = torch.load(folder / "trainer_state.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    progress = json.loads((folder / "progress.json").read_text())
    return progress["epoch"], progress["history"]


def distributed_state():
    """accelerate's process state for this launch, with a process group whenever the launcher started several
    processes: `torchrun --nproc_per_node N` or `accelerate launch --multi_gpu --num_processes N`, on GPUs
    (nccl) or CPUs (gloo; accelerate forms no group on a CPU-only machine unless told `cpu=True`, and the
    processes would then train independently, racing on one output folder)."""
    import os

    from accelerate import PartialState

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    has_accelerator = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    state = PartialState(cpu=world > 1 and not has_accelerator)
    if state.num_processes != world:
        raise RuntimeError(
            f"The launcher started {world} processes but they formed a group of {state.num_processes} "
            f"({state.distributed_type}); they would train independently. Launch with torchrun --nproc_per_node "
            "N or accelerate launch --multi_gpu --num_processes N."
        )
    return state


def fit(
    model: nn.Module,
    train_loader: torch.utils.data.DataLoader,
    args: TrainingArguments,
    eval_loader: torch.utils.data.DataLoader | None = None,
    output_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    loss_fn: Callable[..., torch.Tensor] = classification_loss,
) -> list[dict[str, Any]]:
    """Train `model` (a transformers classifier or a plain timm model) and return per-epoch metrics.

    With `output_dir`, a checkpoint (`model.safetensors`, optimizer and scheduler state) is written
    after every epoch and `resume=True` continues from it. `loss_fn(model, pixel_values, labels, smoothing)`
    is the training loss (default: cross-entropy; `DistillationLoss(teacher)` for distillation).
    """
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list

    state = distributed_state()
    accelerator = Accelerator(cpu=state.distributed_type.name == "MULTI_CPU")
    optimizer = paper_optimizer(model, args)
    steps_per_epoch = len(train_loader)
    total = args.epochs * steps_per_epoch
    scheduler = warmup_cosine(optimizer, total, int(args.warmup_epochs * steps_per_epoch))
    checkpoint = Path(output_dir) / CHECKPOINT_DIR if output_dir else None
    start_epoch, history = 0, []
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs the output_dir of the run to resume.")
        start_epoch, history = _load_checkpoint(checkpoint, model, optimizer, scheduler)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    # each process now takes len(train_loader) of the steps; the scheduler counts them all (accelerate steps
    # it once per process), so its schedule is the same at any world size
    total = args.epochs * len(train_loader)

    step = start_epoch * len(train_loader)
    bar = tqdm(
        total=total,
        initial=step,
        desc="train",
        unit="step",
        disable=not (progress and accelerator.is_main_process),
        mininterval=0.1 if sys.stderr.isatty() else 30,  # log files get a line every 30 s, not every step
    )
    for epoch in range(start_epoch, args.epochs):
        model.train()
        started, loss_sum, seen = time.perf_counter(), 0.0, 0
        for pixel_values, labels in train_loader:
            # autocast only here, not through Accelerator(mixed_precision=...), which would also wrap the
            # model's forward for evaluation: float32 evaluation is what eval.py and the card reproduce
            with torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=args.bf16):
                loss = loss_fn(model, pixel_values, labels, args.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * labels.shape[0]
            seen += labels.shape[0]
            step += 1
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
            if args.max_steps is not None and step >= args.max_steps:
                break
        # every process took part: the epoch's loss is over all of them
        totals = torch.tensor([loss_sum, seen], dtype=torch.float64, device=accelerator.device)  # nccl: on the GPU
        loss_sum, seen = accelerator.reduce(totals, "sum").tolist()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(1, seen),
            "lr": scheduler.get_last_lr()[0],
            "epoch_seconds": time.perf_counter() - started,
        }
        if eval_loader is not None:
            # evaluated once, on the main process, and shared: every process returns the same history
            metrics = evaluate(accelerator.unwrap_model(model), eval_loader, progress=False) if (
                accelerator.is_main_process) else None  # fmt: skip
            if accelerator.num_processes > 1:
                metrics = broadcast_object_list([metrics])[0]
            record.update({f"eval_{k}": v for k, v in metrics.items()})
        history.append(record)
        if checkpoint is not None and accelerator.is_main_process:
            _save_checkpoint(checkpoint, accelerator.unwrap_model(model), optimizer, scheduler, epoch + 1, history)
        if on_epoch_end is not None and accelerator.is_main_process:
            on_epoch_end(record)
        accelerator.wait_for_everyone()
        if args.max_steps is not None and step >= args.max_steps:
            break
    bar.close()
    return history


__all__ = [
    "DistillationLoss",
    "TrainingArguments",
    "add_training_flags",
    "classification_loss",
    "distributed_state",
    "fit",
    "load_into",
    "paper_optimizer",
    "recalibrate_batchnorm",
]


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
    for i, (inputs, _) in enumerate(batches):
        if i >= num_batches:
            break
        model(inputs.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.train(was_training)
