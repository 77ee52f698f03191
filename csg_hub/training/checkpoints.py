"""The resume checkpoint a training run writes after every epoch, and strict state-dict loading.

A checkpoint is one unit, written in one step (`atomic_folder`): the weights (`model.safetensors`), the
optimizer and scheduler (`trainer_state.pt`), every random state that decides what comes next (torch's, numpy's,
Python's, CUDA's, and the generators of the data loader: shuffling order and augmentation) in `rng.safetensors`,
and `progress.json` (epoch, step, history, and the sha256 of each of the other files). Resuming from it repeats
the uninterrupted run exactly on the deterministic CPU path; a checkpoint whose files do not match their digests,
or that has none, is refused.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from ..atomic_write import atomic_folder
from ..errors import CheckpointError
from ..integrity import file_sha256, verify_safetensors, write_safetensors

CHECKPOINT_DIR = "checkpoint"
FORMAT_VERSION = 2  # 2: one atomic unit with random states and file digests
_FILES = ("model.safetensors", "trainer_state.pt", "rng.safetensors")


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The `torch.Generator`s that decide a loader's batches: its sampler's (shuffling) and its augmentation's,
    for `classification_loader`, `fashion_mnist_loader` and `PreloadedLoader` (and loaders built like them)."""
    found: dict[int, torch.Generator] = {}
    candidates = [
        getattr(loader, "generator", None),
        getattr(getattr(loader, "sampler", None), "generator", None),
        getattr(getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None),
        getattr(getattr(getattr(loader, "collate_fn", None), "augment", None), "generator", None),
        getattr(getattr(loader, "batches", None), "generator", None),
        getattr(getattr(getattr(loader, "batches", None), "sampler", None), "generator", None),
        getattr(getattr(loader, "augment", None), "generator", None),
    ]
    for generator in candidates:
        if isinstance(generator, torch.Generator):
            found.setdefault(id(generator), generator)
    return list(found.values())


def _random_states(generators: list[torch.Generator]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())})
    tensors.update({f"generator.{i}": g.get_state() for i, g in enumerate(generators)})
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {"python": [version, list(mt), gauss], "numpy": [kind, keys.tolist(), pos, has_gauss, cached]}
    return tensors, plain


def _set_random_states(tensors: dict[str, torch.Tensor], plain: dict[str, Any], generators: list[torch.Generator],
                       source: str) -> None:  # fmt: skip
    saved = sorted(k for k in tensors if k.startswith("generator."))
    if len(saved) != len(generators):
        raise CheckpointError(
            f"{source} holds {len(saved)} data-loader generator state(s) but this loader has {len(generators)}: it "
            "was written by another data pipeline, so resuming would not repeat the run."
        )
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    for i, generator in enumerate(generators):
        generator.set_state(tensors[f"generator.{i}"])
    version, mt, gauss = plain["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(folder: Path, model: nn.Module, optimizer, scheduler, epoch: int, history: list,
                    step: int | None = None, loader: Any = None) -> None:  # fmt: skip
    """Write the resume checkpoint of a run after `epoch` (and `step` optimizer steps) in one step."""
    generators = loader_generators(loader) if loader is not None else []
    tensors, plain = _random_states(generators)
    with atomic_folder(folder, keep_others=False) as tmp:
        write_safetensors(tmp / "model.safetensors", model.state_dict())
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "trainer_state.pt")
        write_safetensors(tmp / "rng.safetensors", tensors)
        progress = {"format_version": FORMAT_VERSION, "epoch": epoch, "step": step, "history": history,
                    "random": plain, "sha256": {name: file_sha256(tmp / name) for name in _FILES}}  # fmt: skip
        (tmp / "progress.json").write_text(json.dumps(progress, indent=2))


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


def load_checkpoint(folder: Path, model: nn.Module, optimizer, scheduler, loader: Any = None) -> tuple[int, list]:
    """Restore a run from its resume checkpoint (weights, optimizer, scheduler, random states, the loader's
    generators); returns `(epochs done, history)`. Raises `CheckpointError` for a checkpoint that is incomplete,
    corrupt, from an older csg-hub, or does not fit."""
    source = f"the resume checkpoint {folder}"
    for name in (*_FILES, "progress.json"):
        if not (folder / name).exists():
            raise CheckpointError(f"Cannot resume: {folder / name} is missing ({source} is incomplete or older).")
    try:
        progress = json.loads((folder / "progress.json").read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"Cannot resume: {folder / 'progress.json'} is not valid JSON ({err}).") from err
    digests = progress.get("sha256") if isinstance(progress, dict) else None
    if progress.get("format_version") != FORMAT_VERSION or not isinstance(digests, dict):
        raise CheckpointError(
            f"Cannot resume from {source}: it records no file digests (written by an older csg-hub, or not by "
            "csg-hub), so it cannot be verified. Start the run again."
        )
    for name in ("model.safetensors", "rng.safetensors"):
        verify_safetensors(folder / name, "resume checkpoint")
    for name in _FILES:
        if digests.get(name) != file_sha256(folder / name):
            raise CheckpointError(
                f"Cannot resume: {folder / name} does not match the sha256 recorded in progress.json: the "
                "checkpoint is corrupt or mixes two saves."
            )
    load_into(model, load_file(folder / "model.safetensors"), source)
    state = torch.load(folder / "trainer_state.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_random_states(folder, loader)
    return progress["epoch"], progress["history"]


def restore_random_states(folder: Path, loader: Any = None) -> None:
    """Set every random state (and `loader`'s generators) to what the checkpoint in `folder` recorded: call it
    again right before iterating, after anything that may draw random numbers (accelerate's `prepare`)."""
    progress = json.loads((folder / "progress.json").read_text())
    generators = loader_generators(loader) if loader is not None else []
    _set_random_states(load_file(folder / "rng.safetensors"), progress["random"], generators,
                       f"the resume checkpoint {folder}")  # fmt: skip
