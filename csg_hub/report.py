"""`parameter_report`: what a CSG model stores against what its dense twin would."""

from __future__ import annotations

import copy
import functools
import json
import math
from typing import Any

from torch import nn

from .layers.reparameterize import GENERATORS_ATTR, SKIPPED_ATTR, GeneratedConv, generated_convs
from .timm_utils import classifier_names, is_under

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or "Norm" in type(module).__name__


def param_category(module: nn.Module, module_name: str, param_name: str, heads: set[str]) -> str:
    """What a parameter is: `"generator"`, `"codes"`, `"classifier"` (under a module of `heads`), `"norms"`,
    `"dense_convs"` or `"other"`."""
    if is_under(module_name, {GENERATORS_ATTR}):
        return "generator"
    if isinstance(module, GeneratedConv) and param_name == "codes":
        return "codes"
    if is_under(module_name, heads):
        return "classifier"
    if _is_norm(module):
        return "norms"
    if isinstance(module, nn.modules.conv._ConvNd) and not isinstance(module, GeneratedConv):
        return "dense_convs"
    return "other"


_PER_CONFIG: dict[tuple[str, str, str], Any] = {}


def per_config(model: nn.Module, what: str, compute):
    """`compute()`, remembered per model class and config for CSG models, whose shapes (and so their parameter
    counts, byte counts and MACs) follow from the config alone; computed every time for other models. The
    caller gets its own copy."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "csg":
        return compute()
    # every attribute of the config, as repr: a key as exact as its JSON at a fraction of to_json_string's cost
    key = (what, type(model).__qualname__, repr(sorted(config.__dict__.items(), key=lambda item: item[0])))
    if key not in _PER_CONFIG:
        _PER_CONFIG[key] = compute()
    return copy.deepcopy(_PER_CONFIG[key])


def parameter_report(model: nn.Module) -> dict[str, Any]:
    """Count what `model` stores and what its dense (`to_timm()`) twin would hold.

    Accepts a `CSGModel`/`CSGForImageClassification`, a reparameterized timm model or a plain one.
    `stored_params` counts parameters; `stored_buffers` the persistent buffers (norm statistics)
    that a checkpoint also holds, so `stored_params + stored_buffers` is the number of values in
    `model.safetensors`. A CSG model's report depends on its config alone and is remembered per config.
    """
    return per_config(model, "parameter_report", lambda: _parameter_report(model))


def _parameter_report(model: nn.Module) -> dict[str, Any]:
    net = getattr(model, "timm_model", model)
    pretrained_cfg = getattr(net, "pretrained_cfg", None) or {}
    heads = classifier_names(net)

    breakdown = dict.fromkeys(("generator", "codes", "dense_convs", "norms", "classifier", "other"), 0)
    seen: set[int] = set()
    for module_name, module in net.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            breakdown[param_category(module, module_name, param_name, heads)] += param.numel()

    generated = dict(generated_convs(net))
    generated_weights = sum(
        m.out_channels * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1] for m in generated.values()
    )
    stored = sum(breakdown.values())
    dense = stored - breakdown["generator"] - breakdown["codes"] + generated_weights
    state = net.state_dict()
    parameters = dict(net.named_parameters())
    buffers = sum(t.numel() for k, t in state.items() if k not in parameters)
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
    """Multiply-accumulates of one forward pass on one `input_size` (C, H, W) image: every convolution's and
    linear layer's, as torch's FlopCounterMode counts them for the CNNs csg-hub generates (tested), at a fraction
    of its cost. A CSG model is counted as its dense twin (`to_timm()`, what deployment runs), built on the meta
    device from its config: shapes only, no copy, no filters generated, and remembered per architecture."""
    config = getattr(model, "config", None)
    net = getattr(model, "timm_model", model)
    if config is not None and getattr(config, "model_type", None) == "csg":
        model_args = json.dumps(config.model_args or {}, sort_keys=True)
        return _dense_macs(config.architecture, config.in_chans, net.num_classes, model_args, tuple(input_size))
    return count_macs(net, input_size)


@functools.lru_cache(maxsize=64)
def _dense_macs(architecture: str, in_chans: int, num_classes: int, model_args: str, input_size: tuple[int, ...]) -> int:
    import timm
    import torch

    with torch.device("meta"):
        net = timm.create_model(architecture, pretrained=False, in_chans=in_chans, num_classes=num_classes,
                                **json.loads(model_args))  # fmt: skip
    return count_macs(net, input_size)


def count_macs(net: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-accumulates of the convolutions and linear layers of `net` in one no-grad forward of one image
    (on `net`'s device: the meta device counts from shapes alone). A CSG model's generators are not counted."""
    import torch

    param = next(net.parameters())
    total = 0

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.modules.conv._ConvNd):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        else:
            per_output = module.in_features
        total += output.numel() * per_output

    hooks = [
        m.register_forward_hook(count)
        for name, m in net.named_modules()
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and not is_under(name, {GENERATORS_ATTR})
    ]
    was_training = net.training
    net.eval()  # batch norm in training mode cannot take a single image whose last map is 1x1
    try:
        with torch.no_grad():
            net(torch.zeros(1, *input_size, dtype=param.dtype, device=param.device))
    finally:
        net.train(was_training)
        for hook in hooks:
            hook.remove()
    return total
