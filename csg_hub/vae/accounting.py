"""The honest accounting of a weight-VAE artifact: values and bytes stored against the original model,
with and without the decoder, plus reconstruction error and accuracy before and after decoding."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from ..evaluation import evaluate as evaluate_loader
from .compressed import CompressedModel


def safetensors_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """The size of `tensors` as one safetensors file."""
    return len(save({k: v.contiguous() for k, v in tensors.items()})) if tensors else 0


def compression_report(
    artifact: CompressedModel,
    original: nn.Module | None = None,
    evaluate: Callable[[nn.Module], float] | Iterable | None = None,
    num_models: int = 1,
    print_report: bool = True,
) -> dict[str, Any]:
    """What the artifact stores against what the original model holds, counted honestly.

    - `latents_only_ratio`: compressed values / latent values (with the normalisation statistics) — the
      paper's ~32x, which leaves the decoder out;
    - `total_ratio`: all original values / (latent values + kept values + decoder parameters);
    - `amortized_ratio`: the same with the decoder shared by `num_models` models;
    - bytes on disk of latents, kept tensors and decoder (safetensors), against the original state dict;
    - reconstruction MSE (and relative to the weights' variance) when `original` is given;
    - top-1 before and after decoding when `evaluate` is given: a callback `model -> accuracy (%)` or a
      loader of `(inputs, labels)` for `csg_hub.evaluation.evaluate`.
    """
    if num_models < 1:
        raise ValueError(f"num_models must be >= 1, got {num_models}.")
    latent_values = sum(t.numel() for t in artifact.latent_tensors().values())
    compressed = artifact.manifest["numel"]
    kept_values = sum(t.numel() for t in artifact.kept.values())
    decoder_params = artifact.vae.num_decoder_params()
    original_values = compressed + kept_values
    report: dict[str, Any] = {
        "num_chunks": artifact.manifest["num_chunks"],
        "chunk_size": artifact.manifest["chunk_size"],
        "latent_dim": artifact.vae.config.latent_dim,
        "latent_dtype": str(artifact.latents.dtype).removeprefix("torch."),
        "original_values": original_values,
        "compressed_values": compressed,
        "latent_values": latent_values,
        "kept_values": kept_values,
        "decoder_params": decoder_params,
        "num_models": num_models,
        "latents_only_ratio": compressed / latent_values,
        "total_ratio": original_values / (latent_values + kept_values + decoder_params),
        "amortized_ratio": original_values / (latent_values + kept_values + decoder_params / num_models),
        "latents_bytes": safetensors_bytes(artifact.latent_tensors()),
        "kept_bytes": safetensors_bytes(artifact.kept),
        "decoder_bytes": safetensors_bytes(artifact.vae.decoder_tensors()),
    }
    decoded = artifact.to_model()
    if original is not None:
        state = original.state_dict()
        report["original_bytes"] = safetensors_bytes({k: v.detach().cpu() for k, v in state.items()})
        decoded_state = decoded.state_dict()
        names = [e["name"] for e in artifact.manifest["tensors"]]
        truth = torch.cat([state[k].detach().cpu().float().reshape(-1) for k in names])
        err = torch.cat([decoded_state[k].float().reshape(-1) for k in names]) - truth
        report["mse"] = err.pow(2).mean().item()
        report["relative_mse"] = report["mse"] / truth.var().clamp_min(1e-30).item()
        report["max_abs_error"] = err.abs().max().item()
    if evaluate is not None:
        score = evaluate if callable(evaluate) else lambda m: evaluate_loader(m, evaluate, progress=False)["top1"]
        if original is not None:
            report["accuracy_before"] = score(original)
        report["accuracy_after"] = score(decoded)
    if print_report:
        print(format_compression_report(report))
    return report


def format_compression_report(report: dict[str, Any]) -> str:
    """`compression_report`'s numbers as a markdown table."""
    rows = [
        ("original values (params + buffers)", f"{report['original_values']:,}"),
        ("compressed by the VAE", f"{report['compressed_values']:,}"),
        (
            f"latent values ({report['num_chunks']} chunks x {report['latent_dim']} + normalisation stats)",
            f"{report['latent_values']:,}",
        ),
        ("kept as-is", f"{report['kept_values']:,}"),
        ("decoder parameters", f"{report['decoder_params']:,}"),
        (
            "**latents-only ratio** (compressed / latent values; ignores the decoder)",
            f"{report['latents_only_ratio']:.2f}x",
        ),
        ("**total ratio** (original / (latents + kept + decoder))", f"{report['total_ratio']:.2f}x"),
        (f"amortized ratio (decoder shared by {report['num_models']} models)", f"{report['amortized_ratio']:.2f}x"),
        (
            f"bytes: latents ({report['latent_dtype']}) / kept / decoder",
            f"{report['latents_bytes']:,} / {report['kept_bytes']:,} / {report['decoder_bytes']:,}",
        ),
    ]
    if "original_bytes" in report:
        rows.append(("bytes: original state dict", f"{report['original_bytes']:,}"))
    if "mse" in report:
        rows.append(
            ("reconstruction MSE (relative to weight variance)", f"{report['mse']:.3g} ({report['relative_mse']:.3g})")
        )
    if "accuracy_after" in report:
        before = f"{report['accuracy_before']:.2f}%" if "accuracy_before" in report else "n/a"
        rows.append(("top-1 before -> after decoding", f"{before} -> {report['accuracy_after']:.2f}%"))
    return "| | |\n|---|---:|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
