"""From a trained dense timm model to CSG form: copy what is not generated, fit codes and generators.

The paper's generator is linear, so the least-squares fit of one kernel size's generator to every layer's
filter slices is a rank-`code_dim` factorisation of the stacked slices (each layer's fan-in scale divided
out). The cropped parts of edge blocks are free (weight 0), so the factorisation is a weighted one, solved
by alternating least squares: codes given the generator, the generator given the codes, each a small
linear solve per distinct weight pattern. `fit="activations"` weights each filter entry by the mean
square of the input channel it reads on a calibration batch (a diagonal approximation of matching the
layer's outputs rather than its weights).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .layers.reparameterize import GENERATORS_ATTR, generated_convs
from .timm_utils import ModelSource, create_pretrained, csg_kwargs_from_config_json, csg_kwargs_from_model

FITS = ("least_squares", "activations")


def copy_dense_tensors(dense: nn.Module, csg: nn.Module) -> list[str]:
    """Copy every tensor of `dense` that `csg` (its CSG-form twin) stores as is: stem, dense convs, norms with
    their running statistics, classifier. Returns the names of the dense filters left to fit. Raises a
    ValueError naming the tensors when the two models do not correspond."""
    source = dense.state_dict()
    target = csg.state_dict()
    generated = {f"{name}.weight" for name, _ in generated_convs(csg)}
    own = {k for k in target if not k.startswith(GENERATORS_ATTR + ".") and not k.endswith(".codes")}
    missing = sorted(own - set(source))
    extra = sorted(set(source) - own - generated)
    wrong = sorted(k for k in own & set(source) if source[k].shape != target[k].shape)
    absent = sorted(generated - set(source))
    if missing or extra or wrong or absent:
        problems = [
            f"{what}: {names[:3]}"
            for what, names in (
                ("tensors the CSG model needs but the dense model lacks", missing + absent),
                ("dense tensors with no place in the CSG model", extra),
                (
                    "tensors of other shapes",
                    [f"{k} {tuple(source[k].shape)} vs {tuple(target[k].shape)}" for k in wrong],
                ),
            )
            if names
        ]
        raise ValueError("The dense model does not match the CSG architecture: " + "; ".join(problems) + ".")
    with torch.no_grad():
        for key in own:
            target[key].copy_(source[key])
    return sorted(generated)


def input_energy(dense: nn.Module, names: list[str], pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean square of each input channel of the convs `names`, on a calibration batch run through `dense`."""
    energy: dict[str, torch.Tensor] = {}
    hooks = []
    for name in names:
        module = dense.get_submodule(name)

        def hook(_module, inputs, _output, name=name) -> None:
            energy[name] = inputs[0].detach().float().pow(2).mean(dim=(0, 2, 3))

        hooks.append(module.register_forward_hook(hook))
    was_training = dense.training
    dense.eval()
    try:
        with torch.no_grad():
            dense(pixel_values)
    finally:
        dense.train(was_training)
        for h in hooks:
            h.remove()
    return energy


def _slices(weight: torch.Tensor, grid: tuple[int, int], s: int) -> tuple[torch.Tensor, torch.Tensor]:
    # filters (O, I, kh, kw) -> rows (n_out * n_in, S*S*kh*kw) in the generator's slice layout, plus the
    # mask of the entries that exist (the rest of an edge block is cropped away)
    n_out, n_in = grid
    out, inp, kh, kw = weight.shape
    padded = weight.new_zeros(n_out * s, n_in * s, kh, kw)
    padded[:out, :inp] = weight
    mask = torch.zeros_like(padded)
    mask[:out, :inp] = 1
    to_rows = lambda t: t.view(n_out, s, n_in, s, kh, kw).permute(0, 2, 1, 3, 4, 5).reshape(n_out * n_in, -1)
    return to_rows(padded), to_rows(mask)


def _channel_weights(energy: torch.Tensor, grid: tuple[int, int], s: int, kernel: tuple[int, int]) -> torch.Tensor:
    n_out, n_in = grid
    per_channel = torch.zeros(n_in * s)
    per_channel[: energy.numel()] = energy / energy.max().clamp_min(1e-12)
    # entry (a, b, kh, kw) of block (bo, bi) reads input channel bi * S + b
    w = per_channel.view(1, n_in, 1, s, 1, 1).expand(n_out, n_in, s, s, *kernel)
    return w.reshape(n_out * n_in, -1)


def _solve_rows(targets: torch.Tensor, weights: torch.Tensor, basis: torch.Tensor, ridge: float) -> torch.Tensor:
    # argmin_c sum_d w_d (t_d - (c @ basis.T)_d)^2 for each row, one solve per distinct weight row
    patterns, inverse = torch.unique(weights, dim=0, return_inverse=True)
    q = basis.shape[1]
    out = targets.new_zeros(targets.shape[0], q)
    eye = torch.eye(q, dtype=basis.dtype)
    for p, w in enumerate(patterns):
        rows = (inverse == p).nonzero().squeeze(1)
        weighted = basis * w[:, None]
        gram = basis.T @ weighted + ridge * eye
        out[rows] = torch.linalg.solve(gram, (targets[rows] @ weighted).T).T
    return out


def fit_generator(
    targets: torch.Tensor, weights: torch.Tensor, masks: torch.Tensor, rank: int, iterations: int = 12
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted rank-`rank` factorisation `targets ~ codes @ basis.T` (float64 inside)."""
    t, w = targets.double(), weights.double()
    full = masks.bool().all(dim=1)
    # start from the rows with no cropped entries: for filters that a generator made, they span its exact
    # row space, and every later step is then exact too
    start = t[full] if int(full.sum()) >= rank else t * w.sqrt()
    basis = torch.linalg.svd(start, full_matrices=False).Vh[:rank].T
    if basis.shape[1] < rank:  # fewer slices than code_dim: pad the basis with zeros
        basis = torch.cat([basis, basis.new_zeros(basis.shape[0], rank - basis.shape[1])], dim=1)
    ridge = 1e-9
    for _ in range(iterations):
        codes = _solve_rows(t, w, basis, ridge)
        basis = _solve_rows(t.T.contiguous(), w.T.contiguous(), codes, ridge)
    codes = _solve_rows(t, w, basis, ridge)
    return codes, basis


@torch.no_grad()
def fit_codes_and_generators(
    dense: nn.Module,
    csg: nn.Module,
    fit: str = "least_squares",
    calibration: torch.Tensor | None = None,
    iterations: int = 12,
) -> dict[str, Any]:
    """Fit `csg`'s codes and (linear) generators to `dense`'s filters, in place. Returns the fit's figures:
    per layer the relative filter error `|W - W_fit| / |W|`, and per generator and overall the share of
    filter energy kept (`1 - error^2` over all its layers)."""
    if fit not in FITS:
        raise ValueError(f"Unknown fit {fit!r}; choose one of {FITS}.")
    convs = dict(generated_convs(csg))
    by_kernel: dict[str, list[str]] = {}
    for name, conv in convs.items():
        if conv.generator.hidden is not None:
            raise ValueError(
                "from_dense fits linear generators only (generator_hidden_dim=0): a hidden layer makes the fit "
                "non-linear. Convert with generator_hidden_dim=0."
            )
        key = next(k for k, g in getattr(csg, GENERATORS_ATTR).items() if g is conv.generator)
        by_kernel.setdefault(key, []).append(name)
    energy = {}
    if fit == "activations":
        if calibration is None:
            raise ValueError('fit="activations" needs a calibration batch of images (calibration=pixel_values).')
        energy = input_energy(dense, list(convs), calibration)
    layers: dict[str, float] = {}
    generators: dict[str, float] = {}
    for key, names in by_kernel.items():
        generator = getattr(csg, GENERATORS_ATTR)[key]
        s = generator.slice_size
        parts = []
        for name in names:
            conv = convs[name]
            weight = dense.get_submodule(name).weight.detach().float() / conv.fan_in_scale
            rows, mask = _slices(weight, conv.grid, s)
            w = mask if fit == "least_squares" else mask * _channel_weights(energy[name], conv.grid, s, generator.kernel_size)
            parts.append((name, rows, mask, w))
        targets = torch.cat([p[1] for p in parts])
        codes, basis = fit_generator(
            targets, torch.cat([p[3] for p in parts]), torch.cat([p[2] for p in parts]), generator.code_dim, iterations
        )
        generator.proj.weight.copy_(basis.to(generator.proj.weight.dtype))
        start, num, den = 0, 0.0, 0.0
        for name, rows, _mask, _w in parts:
            conv = convs[name]
            conv.codes.copy_(codes[start : start + rows.shape[0]].to(conv.codes.dtype))
            start += rows.shape[0]
            original = dense.get_submodule(name).weight.detach().double()
            fitted = conv.generate_weight().detach().double()
            err, norm = (original - fitted).pow(2).sum().item(), original.pow(2).sum().item()
            layers[name] = math.sqrt(err / norm) if norm else 0.0
            num, den = num + err, den + norm
        generators[key] = 1 - num / den if den else 1.0
    total_err = sum(layers[n] ** 2 * dense.get_submodule(n).weight.double().pow(2).sum().item() for n in layers)
    total = sum(dense.get_submodule(n).weight.double().pow(2).sum().item() for n in layers)
    return {
        "fit": fit,
        "relative_filter_error": layers,
        "energy_kept": generators,
        "energy_kept_overall": 1 - total_err / total if total else 1.0,
    }


def load_dense(source, revision: str | None = None) -> tuple[nn.Module, dict[str, Any], str | None]:
    """A dense timm model from a model object, a local folder or a Hub repo id (`repo@revision`, timm's `hf-hub:`
    format, TimmWrapper repos, csg-hub's `push_timm` exports), the `CSGConfig` arguments that describe it
    (architecture, channels, size, normalization, labels) and its name for `base_model` (None for objects).
    Only safetensors weights are read."""
    import timm

    if isinstance(source, nn.Module):
        if "architecture" not in (getattr(source, "pretrained_cfg", None) or {}):
            raise ValueError(
                f"from_dense takes timm models (with a pretrained_cfg naming the architecture), got "
                f"{type(source).__name__}: build it with timm.create_model."
            )
        kwargs = csg_kwargs_from_model(source)
        kwargs.pop("model_args", None)
        return source, kwargs, None
    where = ModelSource.parse(source, revision)
    config = where.config_json()
    if config.get("model_type") == "csg":
        raise ValueError(f"{where.name} is already a CSG model (model_type 'csg'); load it with from_pretrained.")
    if "architecture" not in config:
        raise ValueError(
            f"{where.name} is not a timm model: its config.json has no 'architecture' (model_type "
            f"{config.get('model_type')!r}). from_dense converts timm CNNs."
        )
    if not timm.is_model(config["architecture"]):
        raise ValueError(f"{where.name}: unknown timm architecture {config['architecture']!r} (timm {timm.__version__}).")
    model = create_pretrained(where)
    kwargs = csg_kwargs_from_config_json(config)
    keep = ("architecture", "in_chans", "image_size", "image_mean", "image_std", "model_args", "id2label", "num_labels")
    return model, {k: kwargs[k] for k in keep if kwargs.get(k) is not None}, where.name
