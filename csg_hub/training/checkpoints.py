"""The resume checkpoint a training run writes after every epoch, and strict state-dict loading."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import CheckpointError
from ..integrity import verify_safetensors, write_safetensors

CHECKPOINT_DIR = "checkpoint"


def save_checkpoint(folder: Path, model: nn.Module, optimizer, scheduler, epoch: int, history: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", model.state_dict())
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


def load_checkpoint(folder: Path, model: nn.Module, optimizer, scheduler) -> tuple[int, list]:
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
