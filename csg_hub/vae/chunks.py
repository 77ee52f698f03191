"""The flatten/manifest format: a model's selected tensors as one sequence cut into fixed-size chunks.

The last chunk is zero-padded. `manifest.json` records, per tensor, its name, shape, dtype and offset, so
that decoded chunks go back to the right tensors (`unflatten_parameters`, `load_parameters`).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..layers.reparameterize import GENERATORS_ATTR, GeneratedConv

MANIFEST_FORMAT = "csg-hub-weight-chunks"
MANIFEST_VERSION = 1
SELECTION_PRESETS = ("all", "csg", "convs")

Selection = str | Sequence[str]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def select_tensors(model: nn.Module, selection: Selection = "all") -> list[str]:
    """State-dict names of the floating-point tensors that `selection` picks, in state-dict order.

    `selection` is a preset — `"all"` (every parameter), `"csg"` (codes and generator tensors of a CSG
    model), `"convs"` (the weights of ordinary convolutions) — or fnmatch patterns on state-dict names
    (`"layer4.*"`, `["*.weight", "fc.bias"]`), which may also pick buffers.
    """
    floating = [k for k, v in model.state_dict().items() if v.is_floating_point()]
    if isinstance(selection, str) and selection == "all":
        names = set(dict(model.named_parameters()))
    elif isinstance(selection, str) and selection == "csg":
        names = {_join(n, "codes") for n, m in model.named_modules() if isinstance(m, GeneratedConv)}
        names |= {k for k in floating if GENERATORS_ATTR in k.split(".")}
        if not names:
            raise ValueError(
                "Selection 'csg' found no codes or generator tensors: the model is not in CSG form "
                "(build it with csg_hub.CSGForImageClassification or csg_hub.reparameterize)."
            )
    elif isinstance(selection, str) and selection == "convs":
        names = {
            _join(n, "weight")
            for n, m in model.named_modules()
            if isinstance(m, nn.modules.conv._ConvNd) and isinstance(m._parameters.get("weight"), nn.Parameter)
        }
        if not names:
            raise ValueError("Selection 'convs' found no convolution with a weight Parameter in this model.")
    else:
        patterns = [selection] if isinstance(selection, str) else list(selection)
        names = set()
        for pattern in patterns:
            hits = {k for k in floating if fnmatch.fnmatchcase(k, pattern)}
            if not hits:
                raise ValueError(
                    f"Selection pattern {pattern!r} matches no floating-point tensor of the model "
                    f"(presets: {', '.join(SELECTION_PRESETS)}; names look like {floating[:3]})."
                )
            names |= hits
    return [k for k in floating if k in names]


def flatten_parameters(
    model: nn.Module, selection: Selection = "all", chunk_size: int = 2048
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The selected tensors as float32 chunks `(num_chunks, chunk_size)`, the last one zero-padded, and a
    JSON-able manifest (names, shapes, dtypes, offsets, sizes, padding) that `unflatten_parameters` inverts."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
    state = model.state_dict()
    entries, pieces, offset = [], [], 0
    for name in select_tensors(model, selection):
        tensor = state[name].detach()
        entries.append(
            {
                "name": name,
                "shape": list(tensor.shape),
                "dtype": str(tensor.dtype).removeprefix("torch."),
                "offset": offset,
                "numel": tensor.numel(),
            }
        )
        pieces.append(tensor.reshape(-1).to("cpu", torch.float32))
        offset += tensor.numel()
    num_chunks = max(1, math.ceil(offset / chunk_size))
    padding = num_chunks * chunk_size - offset
    flat = torch.cat([*pieces, torch.zeros(padding)])
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "selection": selection if isinstance(selection, str) else list(selection),
        "chunk_size": chunk_size,
        "num_chunks": num_chunks,
        "numel": offset,
        "padding": padding,
        "tensors": entries,
    }
    return flat.view(num_chunks, chunk_size), manifest


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"Manifest dtype {name!r} is not a floating-point torch dtype.")
    return dtype


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_MANIFEST_COUNTS = ("chunk_size", "num_chunks", "numel", "padding")
_ENTRY_FIELDS = ("name", "shape", "dtype", "offset", "numel")


def _field_problem(manifest: Any) -> str | None:
    # every field the loader reads, present and of its type, so that a hand-edited manifest fails naming the
    # field (not with a KeyError or TypeError from deep inside); None when all are there
    if not isinstance(manifest, dict):
        return f"A manifest is a JSON object, got {type(manifest).__name__}."
    for key in _MANIFEST_COUNTS:
        if key not in manifest:
            return f"The manifest lacks its {key!r} field."
        if not _is_count(manifest[key]) or (key == "chunk_size" and manifest[key] < 1):
            return f"The manifest's {key!r} must be a {'positive' if key == 'chunk_size' else 'non-negative'} " \
                f"integer, got {manifest[key]!r}."
    tensors = manifest.get("tensors")
    if not isinstance(tensors, list):
        return f"The manifest's 'tensors' must be a list of entries, got {type(tensors).__name__}."
    for i, entry in enumerate(tensors):
        if not isinstance(entry, dict):
            return f"Manifest entry {i} is not an object (got {type(entry).__name__})."
        label = f"Manifest entry {i} ({entry.get('name')!r})"
        missing = [key for key in _ENTRY_FIELDS if key not in entry]
        if missing:
            return f"{label} lacks the field(s) {missing}; every entry needs {list(_ENTRY_FIELDS)}."
        if not isinstance(entry["name"], str) or not isinstance(entry["dtype"], str):
            return f"{label}: 'name' and 'dtype' must be strings."
        if not isinstance(entry["shape"], list) or not all(_is_count(d) for d in entry["shape"]):
            return f"{label}: 'shape' must be a list of non-negative integers, got {entry['shape']!r}."
        for key in ("offset", "numel"):
            if not _is_count(entry[key]):
                return f"{label}: {key!r} must be a non-negative integer, got {entry[key]!r}."
    return None


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Raise ValueError unless `manifest` is a consistent chunk manifest: every field present and of its type
    (the error names the entry and the field), offsets, sizes, padding."""
    found = (manifest.get("format"), manifest.get("version")) if isinstance(manifest, dict) else (None, None)
    if found != (MANIFEST_FORMAT, MANIFEST_VERSION):
        raise ValueError(
            f"Not a {MANIFEST_FORMAT} v{MANIFEST_VERSION} manifest (format {found[0]!r}, version {found[1]!r})."
        )
    problem = _field_problem(manifest)
    if problem:
        raise ValueError(problem)
    offset = 0
    for entry in manifest["tensors"]:
        if entry["offset"] != offset or entry["numel"] != math.prod(entry["shape"]):
            raise ValueError(f"Manifest entry {entry['name']!r} is inconsistent (offset, shape or numel).")
        _dtype(entry["dtype"])
        offset += entry["numel"]
    chunk, count = manifest["chunk_size"], manifest["num_chunks"]
    if offset != manifest["numel"] or count * chunk - offset != manifest["padding"] or not 0 <= manifest["padding"]:
        raise ValueError(
            f"Manifest sizes disagree: tensors hold {offset} values, numel says {manifest['numel']}, "
            f"{count} chunks of {chunk} with padding {manifest['padding']}."
        )


def split_chunks(chunks: torch.Tensor, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Differentiable views of `chunks` as the manifest's tensors (shapes only; dtype stays float32)."""
    flat = chunks.reshape(-1)
    return {e["name"]: flat[e["offset"] : e["offset"] + e["numel"]].view(e["shape"]) for e in manifest["tensors"]}


def unflatten_parameters(chunks: torch.Tensor, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Inverse of `flatten_parameters`: chunks -> `{name: tensor}` with the manifest's shapes and dtypes."""
    validate_manifest(manifest)
    expected = (manifest["num_chunks"], manifest["chunk_size"])
    if tuple(chunks.shape) != expected:
        raise ValueError(f"Chunks have shape {tuple(chunks.shape)} but the manifest describes {expected}.")
    dtypes = {e["name"]: _dtype(e["dtype"]) for e in manifest["tensors"]}
    return {k: v.detach().to(dtypes[k]).clone() for k, v in split_chunks(chunks, manifest).items()}


def check_manifest(manifest: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> None:
    """Raise ValueError, naming the tensor and both shapes, when `manifest` does not fit `state_dict`."""
    for entry in manifest["tensors"]:
        name, shape = entry["name"], tuple(entry["shape"])
        if name not in state_dict:
            raise ValueError(
                f"Manifest tensor {name!r} (shape {shape}) is not in the model's state dict: the latents were "
                "made for another architecture or config."
            )
        actual = tuple(state_dict[name].shape)
        if actual != shape:
            raise ValueError(
                f"Manifest tensor {name!r} has shape {shape} but the model's has shape {actual}: the latents "
                "were made for another architecture or config."
            )


@torch.no_grad()
def load_parameters(model: nn.Module, chunks: torch.Tensor, manifest: dict[str, Any]) -> nn.Module:
    """Write the tensors held in `chunks` into `model` in place (after `check_manifest`); returns `model`."""
    state = model.state_dict()
    check_manifest(manifest, state)
    for name, tensor in unflatten_parameters(chunks, manifest).items():
        state[name].copy_(tensor)
    return model
