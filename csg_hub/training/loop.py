"""One training loop for dense and CSG classifiers, on HF accelerate (CPU, one or many GPUs, many nodes).

Recipe defaults follow the CSG paper (SGD, momentum 0.9, weight decay 5e-4 on everything, codes and
generator included), with a linear warm-up and cosine decay instead of step decay.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..evaluation import evaluate
from .checkpoints import CHECKPOINT_DIR, load_checkpoint, restore_random_states, save_checkpoint
from .losses import classification_loss


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

    With `output_dir`, a checkpoint (weights, optimizer, scheduler, every random state: `training.checkpoints`) is
    written in one step after every epoch, and `resume=True` continues from it exactly as the uninterrupted run
    would have. `loss_fn(model, pixel_values, labels, smoothing)`
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
        start_epoch, history = load_checkpoint(checkpoint, model, optimizer, scheduler, loader=train_loader)
    source_loader = train_loader  # its generators are the ones checkpoints record (prepare shares them)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    if resume:
        restore_random_states(checkpoint, source_loader)
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
            save_checkpoint(checkpoint, accelerator.unwrap_model(model), optimizer, scheduler, epoch + 1, history,
                            step=step, loader=source_loader)  # fmt: skip
        if on_epoch_end is not None and accelerator.is_main_process:
            on_epoch_end(record)
        accelerator.wait_for_everyone()
        if args.max_steps is not None and step >= args.max_steps:
            break
    bar.close()
    return history
