"""Checkpoint storage dtypes: the CSG tensors (codes and generators; with scope "all" every weight matrix)
written in fewer bits and read back as float32.

- `float16`, `bfloat16`: a cast.
- `int8`: symmetric, one float32 scale per row (dim 0), stored under `key + ".int8_scale"`.
- `int4`, `int2`: the tensor flattened into groups of `group_size` values (the config's `storage_group_size`),
  each group a uniform grid of 2**bits levels symmetric about zero, `(code - (2**bits - 1) / 2) * scale`,
  with one float16 scale per group chosen to minimise the group's squared error (`key + ".group_scale"`);
  the codes are packed 2 (int4) or 4 (int2) to a byte, a `uint8` tensor of shape `(groups, group_size * bits / 8)`.

Storage only: the model always runs in float32 (the generator's output is what the convolutions see), so
a stored dtype changes the checkpoint's bytes and, by its rounding, the weights, never the compute.
`round_trip` is the stored value of a tensor (what quantization-aware training trains against).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from .configuration import DEFAULT_GROUP_SIZE, STORAGE_DTYPES, STORAGE_SCOPES
from .integrity import safetensors_size
from .report import param_category, per_config
from .timm_utils import classifier_names

SCALE_SUFFIX = ".int8_scale"
GROUP_SCALE_SUFFIX = ".group_scale"
_SUFFIXES = (SCALE_SUFFIX, GROUP_SCALE_SUFFIX)
_TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int8": torch.int8}
PACKED_BITS = {"int4": 4, "int2": 2}
# the clipping ratios tried for each group's scale (1.0: the group's largest value lands on the outer level)
_CLIP_RATIOS = torch.linspace(1.0, 0.25, 16)
_SMALLEST_SCALE = 2.0**-24  # float16's smallest positive value: a group of zeros still gets a valid scale
Shape = tuple[int, ...]


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


def _groups(shape: Shape, group_size: int) -> int:
    return math.ceil(math.prod(shape) / group_size)


def stored_specs(key: str, shape: Shape, dtype: str, group_size: int = DEFAULT_GROUP_SIZE) -> dict[str, tuple[torch.dtype, Shape]]:
    """The `(dtype, shape)` of each tensor `encode` stores for tensor `key` of `shape` in storage `dtype`."""
    if dtype == "int8":
        return {key: (torch.int8, shape), key + SCALE_SUFFIX: (torch.float32, shape[:1])}
    if dtype in PACKED_BITS:
        groups = _groups(shape, group_size)
        packed = (groups, group_size * PACKED_BITS[dtype] // 8)
        return {key: (torch.uint8, packed), key + GROUP_SCALE_SUFFIX: (torch.float16, (groups,))}
    return {key: (_TORCH[dtype], shape)}


def quantize_groups(tensor: torch.Tensor, bits: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`tensor` as `(codes, scales)`: uint8 codes in `[0, 2**bits)` of shape `(groups, group_size)` (the last
    group padded with zeros) and one float16 scale per group, the one of `_CLIP_RATIOS` x the group's range with
    the least squared error."""
    flat = tensor.detach().float().reshape(-1)
    groups = _groups(tuple(flat.shape), group_size)
    values = torch.nn.functional.pad(flat, (0, groups * group_size - flat.numel())).view(groups, group_size)
    half = (2**bits - 1) / 2
    top = values.abs().amax(dim=1) / half
    # the padding is left out of each group's error: the choice depends on the tensor's values alone, so that
    # storing what was loaded picks the same scale again
    real = (torch.arange(groups * group_size) < flat.numel()).view(groups, group_size)
    best_error = torch.full((groups,), torch.inf)
    best_codes = torch.empty(groups, group_size)
    best_scales = torch.empty(groups)
    for ratio in _CLIP_RATIOS.tolist():  # one candidate at a time: no (candidates x values) tensor
        # rounded to float16 first: the codes are chosen for the scale that is stored
        scales = (top * ratio).clamp(_SMALLEST_SCALE, torch.finfo(torch.float16).max).to(torch.float16).float()
        codes = torch.round(values / scales[:, None] + half).clamp_(0, 2 * half)
        error = (codes - half).mul_(scales[:, None]).sub_(values).square_().mul_(real).sum(dim=1)
        better = error < best_error  # ties keep the larger scale (the first tried)
        best_error = torch.where(better, error, best_error)
        best_codes[better], best_scales[better] = codes[better], scales[better]
    return best_codes.to(torch.uint8), best_scales.to(torch.float16)


def dequantize_groups(codes: torch.Tensor, scales: torch.Tensor, bits: int, shape: Shape) -> torch.Tensor:
    """The float32 tensor of `shape` that `quantize_groups` gave `codes` and `scales` for."""
    values = (codes.float() - (2**bits - 1) / 2) * scales.float()[:, None]
    return values.reshape(-1)[: math.prod(shape)].reshape(shape)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """`(groups, group_size)` codes of `bits` bits, `8 // bits` to a byte (the first in the lowest bits)."""
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, dtype=torch.uint8) * bits
    lanes = codes.view(codes.shape[0], -1, per_byte) << shifts
    return lanes.sum(dim=2, dtype=torch.uint8)  # the lanes' bits do not overlap: the sum is their OR


def unpack_codes(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """The `(groups, group_size)` codes that `pack_codes` packed."""
    shifts = torch.arange(8 // bits, dtype=torch.uint8) * bits
    return ((packed[..., None] >> shifts) & (2**bits - 1)).reshape(packed.shape[0], -1)


def round_trip(tensor: torch.Tensor, dtype: str, group_size: int = DEFAULT_GROUP_SIZE) -> torch.Tensor:
    """`tensor` as it loads after being stored in `dtype` (float32, detached)."""
    specs = {"t": tuple(tensor.shape)}
    return decode(encode({"t": tensor}, ["t"], dtype, group_size), specs, dtype, group_size=group_size)["t"]


def encode(
    tensors: dict[str, torch.Tensor], keys: list[str], dtype: str, group_size: int = DEFAULT_GROUP_SIZE
) -> dict[str, torch.Tensor]:
    """`tensors` with `keys` stored in `dtype` (the scales under the key plus a suffix, see the module doc)."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"Unknown storage dtype {dtype!r}; choose one of {STORAGE_DTYPES}.")
    out = dict(tensors)
    for key in keys:
        tensor = tensors[key].detach().float()
        if dtype == "int8":
            rows = tensor.reshape(tensor.shape[0], -1)
            scale = rows.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127
            out[key] = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(tensor.shape)
            out[key + SCALE_SUFFIX] = scale.contiguous()
        elif dtype in PACKED_BITS:
            codes, scales = quantize_groups(tensor, PACKED_BITS[dtype], group_size)
            out[key] = pack_codes(codes, PACKED_BITS[dtype]).contiguous()
            out[key + GROUP_SCALE_SUFFIX] = scales.contiguous()
        else:
            out[key] = tensor.to(_TORCH[dtype]).contiguous()
    return out


def _bad_scale(key: str, scale: torch.Tensor, unit: str) -> str | None:
    bad = ~(torch.isfinite(scale) & (scale > 0))
    if not bad.any():
        return None
    first = int(bad.nonzero()[0, 0])
    return f"{key} ({int(bad.sum())} of {scale.numel()} {unit}s, e.g. {unit} {first}: {float(scale[first]):.6g})"


def decode(
    tensors: dict[str, torch.Tensor],
    shapes: Mapping[str, Shape],
    dtype: str,
    source: str = "checkpoint",
    group_size: int = DEFAULT_GROUP_SIZE,
) -> dict[str, torch.Tensor]:
    """The float32 state dict that `encode` stored; `shapes` maps each stored key to the shape the model needs.
    A stored tensor of another dtype or layout, a quantized tensor without its scale (or with one of the wrong
    shape or dtype), or a scale that is not a finite positive number (NaN, inf, zero or negative: `encode` never
    writes one, and each would load as NaN or silently wrong weights) raises a ValueError naming the tensor."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"Unknown storage dtype {dtype!r}; choose one of {STORAGE_DTYPES}.")
    out = dict(tensors)
    wrong, unscaled, bad_scales = [], [], []
    for key in sorted(shapes):
        if key not in tensors:
            continue  # left to the loader's missing-tensor check
        tensor, shape = tensors[key], tuple(shapes[key])
        # a float or int8 tensor of another shape is left to the loader's shape check, which names the config
        specs = stored_specs(key, shape if dtype in PACKED_BITS else tuple(tensor.shape), dtype, group_size)
        if (tensor.dtype, tuple(tensor.shape)) != specs[key]:
            wrong.append(f"{key} ({tensor.dtype}, {tuple(tensor.shape)}; expected {specs[key][0]}, {specs[key][1]})")
            continue
        scale_key = next((k for k in specs if k != key), None)
        if scale_key is None:
            out[key] = tensor.float()
            continue
        scale = out.pop(scale_key, None)
        if scale is None or (scale.dtype, tuple(scale.shape)) != specs[scale_key]:
            unscaled.append(key)
            continue
        problem = _bad_scale(scale_key, scale, "row" if dtype == "int8" else "group")
        if problem:
            bad_scales.append(problem)
        elif dtype == "int8":
            out[key] = (tensor.float().reshape(tensor.shape[0], -1) * scale[:, None]).reshape(tensor.shape)
        else:
            out[key] = dequantize_groups(unpack_codes(tensor, PACKED_BITS[dtype]), scale, PACKED_BITS[dtype], shape)
    if bad_scales:
        raise ValueError(
            f"{source} holds {len(bad_scales)} {dtype} scale tensor(s) with values that are not finite positive "
            f"numbers (NaN, inf, zero or negative; they would decode to NaN or wrong weights): {bad_scales[:3]}. "
            "The file is corrupt or was not written by csg-hub; save or download it again."
        )
    if wrong or unscaled:
        scales = "float32 per-row" if dtype == "int8" else f"float16 per-group (group size {group_size})"
        problems = ([f"{len(wrong)} tensor(s) not stored as {dtype}: {wrong[:3]}"] if wrong else []) + (
            [f"{len(unscaled)} {dtype} tensor(s) without a valid {scales} scale: {unscaled[:3]}"] if unscaled else []
        )
        raise ValueError(f"{source} does not match its config's storage_dtype {dtype!r}: " + "; ".join(problems) + ".")
    stray = [k for k in out if k.endswith(_SUFFIXES)]
    if stray:
        raise ValueError(f"{source} holds scales for tensors that are not stored as {dtype}: {stray[:3]}.")
    return out


def storage_sizes(model: nn.Module) -> dict[str, int]:
    """Bytes of `model.safetensors` for each storage setting (`"float32"`, `"float16/csg"`, `"float16/all"`,
    `"int8/csg"`, ..., `"int2/all"`; int4 and int2 at the config's `storage_group_size`), computed from the
    tensors' shapes and the storage rules (`stored_specs`, `integrity.safetensors_size`): no data is copied or
    written, and the model is left untouched. A CSG model's figures depend on its config alone and are
    remembered per config."""
    return dict(per_config(model, "storage_sizes", lambda: _storage_sizes(model)))


def _storage_sizes(model: nn.Module) -> dict[str, int]:
    specs = {k: (v.dtype, tuple(v.shape)) for k, v in model.state_dict().items()}
    keys = {scope: stored_keys(model, scope) for scope in STORAGE_SCOPES}
    group_size = getattr(getattr(model, "config", None), "storage_group_size", DEFAULT_GROUP_SIZE)
    sizes = {}
    for dtype in STORAGE_DTYPES:
        for scope in STORAGE_SCOPES if dtype != "float32" else ("csg",):
            stored = dict(specs)
            for key in keys[scope] if dtype != "float32" else ():
                stored.update(stored_specs(key, specs[key][1], dtype, group_size))
            sizes[dtype if dtype == "float32" else f"{dtype}/{scope}"] = safetensors_size(stored)
    return sizes
