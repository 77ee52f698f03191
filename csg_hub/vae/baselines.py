"""Weight round trips through fp16 and k-bit integers: the baselines a weight-VAE has to beat at equal bytes."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

SCHEMES = ("fp16", "int8", "int4", "int4-g64")
GROUP_SIZE = 64  # "int4-g64": one float16 scale per 64 consecutive values


def _quantize(tensor: torch.Tensor, bits: int) -> torch.Tensor:
    # symmetric, one fp32 scale per output channel (dim 0): the usual weight-only int scheme
    levels = 2 ** (bits - 1) - 1
    flat = tensor.reshape(tensor.shape[0], -1).float()
    scale = flat.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / levels
    return (torch.round(flat / scale).clamp(-levels, levels) * scale).reshape(tensor.shape).to(tensor.dtype)


def _quantize_groups(tensor: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    # symmetric, the flattened tensor in groups of `group` values, one float16 scale (absmax) per group
    levels = 2 ** (bits - 1) - 1
    flat = tensor.reshape(-1).float()
    padded = torch.nn.functional.pad(flat, (0, -len(flat) % group)).view(-1, group)
    scale = (padded.abs().amax(dim=1, keepdim=True) / levels).clamp(6e-8, 65504).half().float()
    rounded = (torch.round(padded / scale).clamp(-levels, levels) * scale).reshape(-1)[: len(flat)]
    return rounded.reshape(tensor.shape).to(tensor.dtype)


def round_trip(model: nn.Module, scheme: str) -> tuple[nn.Module, int]:
    """A copy of `model` whose tensors went through `scheme` and back, and the bytes the scheme stores.

    `"fp16"` casts every floating tensor (buffers included); `"int8"` / `"int4"` quantize each parameter
    with at least 2 dimensions (conv and linear weights, CSG codes and generator) per output channel,
    storing one fp32 scale per channel, and keep the rest (biases, norms, buffers) in fp32; `"int4-g64"`
    quantizes the same parameters in groups of 64 consecutive values with one fp16 scale per group
    (numel / 2 + numel / 64 * 2 bytes per matrix).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"Unknown scheme {scheme!r}; choose one of {SCHEMES}.")
    result = copy.deepcopy(model)
    stored = 0
    params = {id(p) for p in result.parameters()}
    with torch.no_grad():
        for tensor in result.state_dict(keep_vars=True).values():
            if not tensor.is_floating_point():
                stored += tensor.numel() * tensor.element_size()
            elif scheme == "fp16":
                tensor.copy_(tensor.half())
                stored += tensor.numel() * 2
            elif id(tensor) in params and tensor.ndim >= 2 and scheme == "int4-g64":
                tensor.copy_(_quantize_groups(tensor, 4, GROUP_SIZE))
                stored += (tensor.numel() * 4 + 7) // 8 + -(-tensor.numel() // GROUP_SIZE) * 2
            elif id(tensor) in params and tensor.ndim >= 2:
                bits = int(scheme.removeprefix("int"))
                tensor.copy_(_quantize(tensor, bits))
                stored += (tensor.numel() * bits + 7) // 8 + tensor.shape[0] * 4
            else:
                stored += tensor.numel() * 4
    return result, stored


__all__ = ["SCHEMES", "round_trip"]


def comparison_table(report: dict[str, Any]) -> str:
    """Bytes and top-1 of the original, its fp16/int round trips (`report["baselines"]`, filled by
    `scripts/compress.py`) and the weight-VAE artifact with and without its decoder."""
    original = report["original_bytes"]
    vae_alone = report["latents_bytes"] + report["kept_bytes"]
    rows = [("original (fp32)", original, report["accuracy_before"])]
    rows += [(f"{s} round trip", b["bytes"], b["top1"]) for s, b in report.get("baselines", {}).items()]
    rows += [
        ("weight-VAE: latents + kept tensors", vae_alone, report["accuracy_after"]),
        ("weight-VAE: latents + kept + decoder", vae_alone + report["decoder_bytes"], report["accuracy_after"]),
    ]
    shared_by = report.get("num_models", 1)
    if shared_by > 1:
        amortized = vae_alone + report["decoder_bytes"] / shared_by
        rows.append((f"weight-VAE: latents + kept + decoder / {shared_by} (shared)", amortized, report["accuracy_after"]))
    lines = ["| weights | bytes | smaller than fp32 | top-1 |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {round(size):,} | {original / size:.2f}x | {top1:.2f} |" for name, size, top1 in rows]
    return "\n".join(lines) + "\n"
