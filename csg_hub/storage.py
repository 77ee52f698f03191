"""Checkpoint storage dtypes: the CSG tensors (codes and generators; with scope "all" every weight matrix)
written as float16, bfloat16 or int8 with one float32 scale per row, and read back as float32.

Storage only: the model always runs in float32 (the generator's output is what the convolutions see), so
a stored dtype changes the checkpoint's bytes and, by its rounding, the weights, never the compute.
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration import STORAGE_DTYPES, STORAGE_SCOPES
from .integrity import safetensors_size
from .report import param_category, per_config
from .timm_utils import classifier_names

SCALE_SUFFIX = ".int8_scale"
_TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int8": torch.int8}


def stored_keys(model: nn.Module, scope: str = "csg") -> list[str]:
    """State-dict keys stored in the reduced dtype: the codes and generator weights, and with `scope="all"`
    every other parameter of 2 or more dimensions (conv and linear weights). Biases, norms and buffers stay
    float32."""
    if scope not in STORAGE_SCOPES:
        raise ValueError(f"Unknown storage scope {scope!r}; choose one of {STORAGE_SCOPES}.")
    net = getattr(model, "timm_model", model)
    prefix = f"{model.base_model_prefix}." if net is not model else ""
    heads = classifier_names(net)
    keys = []
    for module_name, module in net.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            category = param_category(module, module_name, param_name, heads)
            if param.ndim >= 2 and (category in ("generator", "codes") or scope == "all"):
                keys.append(f"{prefix}{module_name}.{param_name}" if module_name else f"{prefix}{param_name}")
    return keys


def stored_specs(key: str, shape: tuple[int, ...], dtype: str) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """The `(dtype, shape)` of each tensor `encode` stores for tensor `key` of `shape` in storage `dtype`."""
    if dtype == "int8":
        return {key: (torch.int8, shape), key + SCALE_SUFFIX: (torch.float32, shape[:1])}
    return {key: (_TORCH[dtype], shape)}


def encode(tensors: dict[str, torch.Tensor], keys: list[str], dtype: str) -> dict[str, torch.Tensor]:
    """`tensors` with `keys` in `dtype`; int8 rows (dim 0) are scaled symmetrically to [-127, 127], each
    row's float32 scale stored under `key + SCALE_SUFFIX`."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"Unknown storage dtype {dtype!r}; choose one of {STORAGE_DTYPES}.")
    out = dict(tensors)
    for key in keys:
        tensor = tensors[key].float()
        if dtype == "int8":
            rows = tensor.reshape(tensor.shape[0], -1)
            scale = rows.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127
            out[key] = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(tensor.shape)
            out[key + SCALE_SUFFIX] = scale.contiguous()
        else:
            out[key] = tensor.to(_TORCH[dtype]).contiguous()
    return out


def decode(tensors: dict[str, torch.Tensor], keys: list[str], dtype: str, source: str = "checkpoint") -> dict:
    """The float32 state dict that `encode` stored. A stored tensor of another dtype, an int8 tensor without
    its scale (or with a scale of the wrong shape), or a scale that is not a finite positive number (NaN, inf,
    zero or negative: `encode` never writes one, and each would load as NaN or silently wrong weights) raises
    a ValueError naming the tensor."""
    out = dict(tensors)
    wrong, unscaled, bad_scales = [], [], []
    for key in keys:
        if key not in tensors:
            continue  # left to the loader's missing-tensor check
        tensor = tensors[key]
        if tensor.dtype != _TORCH[dtype]:
            wrong.append(f"{key} ({tensor.dtype})")
            continue
        if dtype == "int8":
            scale = out.pop(key + SCALE_SUFFIX, None)
            if scale is None or scale.dtype != torch.float32 or scale.shape != (tensor.shape[0],):
                unscaled.append(key)
                continue
            bad = ~(torch.isfinite(scale) & (scale > 0))
            if bad.any():
                row = int(bad.nonzero()[0, 0])
                bad_scales.append(f"{key + SCALE_SUFFIX} ({int(bad.sum())} of {scale.numel()} rows, e.g. row {row}: "
                                  f"{float(scale[row]):.6g})")
                continue
            out[key] = (tensor.float().reshape(tensor.shape[0], -1) * scale[:, None]).reshape(tensor.shape)
        else:
            out[key] = tensor.float()
    if bad_scales:
        raise ValueError(
            f"{source} holds {len(bad_scales)} {dtype} scale tensor(s) with values that are not finite positive "
            f"numbers (NaN, inf, zero or negative; they would decode to NaN or wrong weights): {bad_scales[:3]}. "
            "The file is corrupt or was not written by csg-hub; save or download it again."
        )
    if wrong or unscaled:
        problems = ([f"{len(wrong)} tensor(s) not stored as {dtype}: {wrong[:3]}"] if wrong else []) + (
            [f"{len(unscaled)} int8 tensor(s) without a valid float32 per-row scale: {unscaled[:3]}"]
            if unscaled
            else []
        )
        raise ValueError(f"{source} does not match its config's storage_dtype {dtype!r}: " + "; ".join(problems) + ".")
    stray = [k for k in out if k.endswith(SCALE_SUFFIX)]
    if stray:
        raise ValueError(f"{source} holds int8 scales for tensors that are not stored as int8: {stray[:3]}.")
    return out


def storage_sizes(model: nn.Module) -> dict[str, int]:
    """Bytes of `model.safetensors` for each storage setting (`"float32"`, `"float16/csg"`, `"float16/all"`,
    `"int8/csg"`, `"int8/all"`, ...), computed from the tensors' shapes and the storage rules (`stored_specs`,
    `integrity.safetensors_size`): no data is copied or written, and the model is left untouched. A CSG
    model's figures depend on its config alone and are remembered per config."""
    return dict(per_config(model, "storage_sizes", lambda: _storage_sizes(model)))


def _storage_sizes(model: nn.Module) -> dict[str, int]:
    specs = {k: (v.dtype, tuple(v.shape)) for k, v in model.state_dict().items()}
    keys = {scope: stored_keys(model, scope) for scope in STORAGE_SCOPES}
    sizes = {}
    for dtype in STORAGE_DTYPES:
        for scope in STORAGE_SCOPES if dtype != "float32" else ("csg",):
            stored = dict(specs)
            for key in keys[scope] if dtype != "float32" else ():
                stored.update(stored_specs(key, specs[key][1], dtype))
            sizes[dtype if dtype == "float32" else f"{dtype}/{scope}"] = safetensors_size(stored)
    return sizes
