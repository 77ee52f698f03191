"""`parameter_report`: what a CSG model stores against what its dense twin would."""

from __future__ import annotations

from typing import Any

from torch import nn

from .reparameterize import GENERATORS_ATTR, SKIPPED_ATTR, GeneratedConv, generated_convs

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or "Norm" in type(module).__name__


def _category(module: nn.Module, module_name: str, param_name: str, heads: set[str]) -> str:
    if module_name == GENERATORS_ATTR or module_name.startswith(GENERATORS_ATTR + "."):
        return "generator"
    if isinstance(module, GeneratedConv) and param_name == "codes":
        return "codes"
    if any(module_name == h or module_name.startswith(h + ".") for h in heads):
        return "classifier"
    if _is_norm(module):
        return "norms"
    if isinstance(module, nn.modules.conv._ConvNd) and not isinstance(module, GeneratedConv):
        return "dense_convs"
    return "other"


def parameter_report(model: nn.Module) -> dict[str, Any]:
    """Count what `model` stores and what its dense (`to_timm()`) twin would hold.

    Accepts a `CSGModel`/`CSGForImageClassification`, a reparameterized timm model or a plain one.
    `stored_params` counts parameters; `stored_buffers` the persistent buffers (norm statistics)
    that a checkpoint also holds, so `stored_params + stored_buffers` is the number of values in
    `model.safetensors`.
    """
    net = getattr(model, "timm_model", model)
    pretrained_cfg = getattr(net, "pretrained_cfg", None) or {}
    head = pretrained_cfg.get("classifier") or ()
    heads = {head} if isinstance(head, str) else set(head)

    breakdown = dict.fromkeys(("generator", "codes", "dense_convs", "norms", "classifier", "other"), 0)
    seen: set[int] = set()
    for module_name, module in net.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            breakdown[_category(module, module_name, param_name, heads)] += param.numel()

    generated = dict(generated_convs(net))
    generated_weights = sum(
        m.out_channels * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1] for m in generated.values()
    )
    stored = sum(breakdown.values())
    dense = stored - breakdown["generator"] - breakdown["codes"] + generated_weights
    state = net.state_dict()
    buffers = sum(t.numel() for k, t in state.items() if k not in dict(net.named_parameters()))
    skipped = dict(getattr(net, SKIPPED_ATTR, {}))
    dense_convs = [n for n, m in net.named_modules() if isinstance(m, nn.modules.conv._ConvNd) and n not in generated]
    return {
        "architecture": pretrained_cfg.get("architecture", type(net).__name__),
        "dense_params": dense,
        "stored_params": stored,
        "stored_buffers": buffers,
        "ratio": dense / stored if stored else float("nan"),
        "breakdown": breakdown,
        "generators": {k: sum(p.numel() for p in g.parameters()) for k, g in getattr(net, GENERATORS_ATTR, {}).items()},
        "generated_layers": len(generated),
        "dense_layers": len(dense_convs),
        "dense_layer_reasons": {n: skipped.get(n, "not reparameterized") for n in dense_convs},
    }


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable rendering of `parameter_report`'s dict."""
    b = report["breakdown"]
    head = (
        f"{report['architecture']}: dense {report['dense_params']:,} params -> stored {report['stored_params']:,} "
        f"({report['ratio']:.2f}x smaller); {report['generated_layers']} generated convs, "
        f"{report['dense_layers']} dense convs"
    )
    return head + "\n  " + ", ".join(f"{k} {v:,}" for k, v in b.items())


def inference_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass on one `input_size` (C, H, W) image, counted by torch's
    FlopCounterMode on the dense form (`to_timm()` for CSG models: what deployment runs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net = model.to_timm() if hasattr(model, "to_timm") else getattr(model, "timm_model", model)
    param = next(net.parameters())
    was_training = net.training
    net.eval()  # batch norm in training mode cannot take a single image whose last map is 1x1
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, *input_size, dtype=param.dtype, device=param.device))
    finally:
        net.train(was_training)
    return counter.get_total_flops() // 2
