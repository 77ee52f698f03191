"""Weight-VAE compressed models as Hub artifacts, and the honest accounting of what they save.

Two kinds of repo:

- a **decoder repo** (`decoder.safetensors` + `config.json`): the VAE's decoder, shareable by many models;
- a **latents repo** per model: `latents.safetensors` (one latent vector per chunk, plus the normalisation
  statistics), `kept.safetensors` (tensors left out of the selection), `manifest.json` (how the chunks map
  back to tensors), `model_config.json` (what to rebuild: a CSG config, a timm config or one of
  `csg_hub.small_models`), `config.json` (the decoder's repo id and exact commit, and the VAE config) and
  a card with the accounting table.

Everything is read from safetensors and JSON; nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from huggingface_hub import CommitInfo, HfApi, ModelCard, ModelCardData, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from safetensors import SafetensorError
from safetensors.torch import load_file, save, save_file
from torch import nn

from .configuration import CSGConfig
from .evaluation import evaluate as evaluate_loader
from .modeling import CheckpointError, CSGForImageClassification, CSGPreTrainedModel
from .small_models import SMALL_MODELS, build_small_model
from .vae import (
    Selection,
    VAETrainingConfig,
    WeightVAE,
    WeightVAEConfig,
    check_manifest,
    distillation_loss,
    flatten_parameters,
    refine_latents,
    train_weight_vae,
    unflatten_parameters,
    validate_manifest,
)

LATENTS_FORMAT = "csg-hub-weight-vae-latents"
DECODER_FORMAT = "csg-hub-weight-vae-decoder"
FORMAT_VERSION = 1
LATENT_DTYPES = {"float16": torch.float16, "float32": torch.float32}
VAE_CITATION = """@article{cheng2024vae,
  title   = {Variational Autoencoder-based Neural Network Model Compression},
  author  = {Cheng, Liang and Guan, Peiyuan and Taherkordi, Amir and Liu, Lei and Lan, Dapeng},
  journal = {arXiv preprint arXiv:2408.14513},
  year    = {2024}
}"""

# --- what model to rebuild -----------------------------------------------------------------------

DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def describe_model(model: nn.Module) -> dict[str, Any]:
    """The JSON that `build_model` rebuilds `model`'s architecture from (`model_config.json`).

    A CSG classifier gives its `CSGConfig` (model_type "csg"), a timm model a timm config
    (`architecture`, `num_classes`, `model_args`), a `csg_hub.small_models` model its name and arguments.
    """
    if isinstance(model, CSGForImageClassification):
        return model.config.to_dict()
    if isinstance(model, CSGPreTrainedModel):
        raise TypeError(f"Only CSGForImageClassification can be rebuilt, not {type(model).__name__}.")
    spec = getattr(model, "spec", None)
    if isinstance(spec, dict) and spec.get("name") in SMALL_MODELS:
        return {"small_model": spec["name"], "kwargs": spec["kwargs"]}
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if timm.is_model(cfg.get("architecture", "")):
        first = cfg.get("first_conv")
        stem = model.get_submodule(first if isinstance(first, str) else first[0]) if first else None
        model_args = {"in_chans": stem.in_channels} if stem is not None else {}
        # the preprocessing the weights were trained with; timm's defaults are ImageNet's
        data_config = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items() if k in DATA_CONFIG_KEYS}
        return {
            "architecture": cfg["architecture"],
            "num_classes": model.num_classes,
            "model_args": model_args,
            "data_config": data_config,
        }
    raise ValueError(
        f"Cannot tell how to rebuild a {type(model).__name__}: pass model_config= (a CSGConfig dict, a timm config "
        "{'architecture': ..., 'num_classes': ..., 'model_args': {...}}, or {'small_model': name, 'kwargs': {...}})."
    )


def build_model(model_config: dict[str, Any]) -> nn.Module:
    """A randomly initialised model of the architecture `model_config` (from `describe_model`) names."""
    if model_config.get("model_type") == CSGConfig.model_type:
        return CSGForImageClassification(CSGConfig.from_dict(model_config))
    if "small_model" in model_config:
        return build_small_model(model_config["small_model"], model_config.get("kwargs"))
    if "architecture" in model_config:
        model = timm.create_model(
            model_config["architecture"],
            pretrained=False,
            num_classes=model_config.get("num_classes", 1000),
            **(model_config.get("model_args") or {}),
        )
        data_config = {
            k: tuple(v) if isinstance(v, list) else v for k, v in model_config.get("data_config", {}).items()
        }
        model.pretrained_cfg = {**model.pretrained_cfg, **data_config}
        return model
    raise ValueError(
        "model_config.json names no model: expected model_type 'csg', a timm 'architecture' or a 'small_model'."
    )


# --- the artifact --------------------------------------------------------------------------------


@dataclass
class CompressedModel:
    """A model in weight-VAE form: latents (stored dtype), normalisation statistics, kept tensors, the chunk
    manifest, the architecture to rebuild, and the VAE whose decoder turns latents back into weights."""

    latents: torch.Tensor
    stats: torch.Tensor | None
    kept: dict[str, torch.Tensor]
    manifest: dict[str, Any]
    model_config: dict[str, Any]
    vae: WeightVAE
    history: list[dict[str, float]] = field(default_factory=list)

    @torch.no_grad()
    def decoded_tensors(self) -> dict[str, torch.Tensor]:
        """The compressed tensors as the decoder rebuilds them."""
        stats = None if self.stats is None else self.stats.float()
        chunks = self.vae.decompress_chunks(self.latents.float(), stats)
        return unflatten_parameters(chunks, self.manifest)

    def to_model(self) -> nn.Module:
        """The rebuilt model (eval mode) with decoded and kept tensors loaded."""
        model = build_model(self.model_config)
        state = model.state_dict()
        check_manifest(self.manifest, state)
        decoded = self.decoded_tensors()
        missing = sorted(set(state) - set(decoded) - set(self.kept))
        if missing:
            raise ValueError(f"The artifact lacks {len(missing)} tensor(s) of the model, e.g. {missing[:3]}.")
        for name, tensor in self.kept.items():
            if name not in state or state[name].shape != tensor.shape:
                shape = tuple(state[name].shape) if name in state else "absent"
                raise ValueError(
                    f"Kept tensor {name!r} has shape {tuple(tensor.shape)} but the model's is {shape}: "
                    "kept.safetensors was made for another architecture or config."
                )
        model.load_state_dict({**self.kept, **decoded})
        return model.eval()


def compress(
    model: nn.Module,
    selection: Selection = "all",
    vae_config: WeightVAEConfig | None = None,
    training: VAETrainingConfig | None = None,
    vae: WeightVAE | None = None,
    distill_batches: Iterable[tuple[torch.Tensor, Any]] | None = None,
    latent_dtype: str = "float16",
    model_config: dict[str, Any] | None = None,
    progress: bool = True,
) -> CompressedModel:
    """Compress `model`'s selected tensors (see `csg_hub.vae.select_tensors`) into weight-VAE latents.

    Trains a VAE on the model's own chunks (`vae_config`, `training`), or reuses `vae` (e.g. a shared
    decoder from `load_decoder`; without an encoder the latents are fitted from zeros). The latents are then
    refined against the true chunks for `training.refine_steps` steps — and against the model's own
    predictions on `distill_batches` of `(inputs, labels)` when given — and rounded to `latent_dtype`.
    """
    if latent_dtype not in LATENT_DTYPES:
        raise ValueError(f"latent_dtype must be one of {sorted(LATENT_DTYPES)}, got {latent_dtype!r}.")
    if vae is not None and vae_config is not None:
        raise ValueError("Pass either vae (reuse a trained VAE) or vae_config (train a new one), not both.")
    training = training or VAETrainingConfig()
    needs_refinement = (vae is not None and vae.encoder is None) or distill_batches is not None
    if needs_refinement and training.refine_steps < 1:
        raise ValueError("A decoder without encoder, or distillation, needs training.refine_steps >= 1.")
    model_config = model_config or describe_model(model)
    chunk_size = vae.config.chunk_size if vae is not None else (vae_config or WeightVAEConfig()).chunk_size
    chunks, manifest = flatten_parameters(model, selection, chunk_size)
    history: list[dict[str, float]] = []
    if vae is None:
        vae, history = train_weight_vae(chunks, vae_config or WeightVAEConfig(), training, progress=progress)
    vae = vae.eval()
    if vae.encoder is not None:
        latents, stats = vae.compress_chunks(chunks)
    else:
        latents, stats = torch.zeros(len(chunks), vae.config.latent_dim), vae.chunk_stats(chunks)
    if training.refine_steps:
        task_loss = None
        if distill_batches is not None:
            task_loss = distillation_loss(model, manifest, distill_batches, training.distill_weight)
        latents, stats = refine_latents(
            vae,
            latents,
            stats,
            chunks,
            steps=training.refine_steps,
            lr=training.refine_lr,
            numel=manifest["numel"],
            task_loss=task_loss,
            progress=progress,
        )
    dtype = LATENT_DTYPES[latent_dtype]
    selected = {e["name"] for e in manifest["tensors"]}
    kept = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k not in selected}
    return CompressedModel(
        latents=latents.to(dtype),
        stats=None if stats is None else stats.to(dtype),
        kept=kept,
        manifest=manifest,
        model_config=model_config,
        vae=vae,
        history=history,
    )


# --- accounting ----------------------------------------------------------------------------------


def _bytes(tensors: dict[str, torch.Tensor]) -> int:
    return len(save({k: v.contiguous() for k, v in tensors.items()})) if tensors else 0


def _latent_tensors(artifact: CompressedModel) -> dict[str, torch.Tensor]:
    return {"latents": artifact.latents, **({"stats": artifact.stats} if artifact.stats is not None else {})}


def _decoder_tensors(vae: WeightVAE) -> dict[str, torch.Tensor]:
    return {f"decoder.{k}": v for k, v in vae.decoder.state_dict().items()}


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
    latent_values = sum(t.numel() for t in _latent_tensors(artifact).values())
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
        "latents_bytes": _bytes(_latent_tensors(artifact)),
        "kept_bytes": _bytes(artifact.kept),
        "decoder_bytes": _bytes(_decoder_tensors(artifact.vae)),
    }
    decoded = artifact.to_model()
    if original is not None:
        state = original.state_dict()
        report["original_bytes"] = _bytes({k: v.detach().cpu() for k, v in state.items()})
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


# --- files ---------------------------------------------------------------------------------------


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_decoder(vae: WeightVAE, folder: str | os.PathLike) -> Path:
    """Write `decoder.safetensors`, `config.json` and a card for `vae`'s decoder into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in _decoder_tensors(vae).items()}, folder / "decoder.safetensors")
    _write_json(
        folder / "config.json",
        {
            "format": DECODER_FORMAT,
            "version": FORMAT_VERSION,
            "vae_config": vae.config.to_dict(),
            "decoder_params": vae.num_decoder_params(),
        },
    )
    card_data = ModelCardData(
        library_name="csg-hub", license="apache-2.0", tags=["csg-hub", "weight-vae", "model-compression"]
    )
    ModelCard(
        f"---\n{card_data.to_yaml()}\n---\n\n# Weight-VAE decoder\n\nDecodes weight-VAE latents "
        f"(chunks of {vae.config.chunk_size}, latent {vae.config.latent_dim}) back into model weights; "
        f"{vae.num_decoder_params():,} parameters. Latents repos name this repo and an exact commit in their "
        "`config.json`; load one with `csg_hub.compression.pull_latents(repo_id)`.\n\n"
        f"```bibtex\n{VAE_CITATION}\n```\n"
    ).save(folder / "README.md")
    return folder


def save_latents(
    artifact: CompressedModel,
    folder: str | os.PathLike,
    decoder: dict[str, str],
    report: dict[str, Any] | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write a latents folder. `decoder` is `{"repo_id": ..., "revision": <commit sha>}`, or `{"path": ...}`
    (relative to `folder`) for a decoder folder on disk. `report` (from `compression_report`) fills the card."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in _latent_tensors(artifact).items()}, folder / "latents.safetensors")
    save_file({k: v.contiguous() for k, v in artifact.kept.items()}, folder / "kept.safetensors")
    _write_json(folder / "manifest.json", artifact.manifest)
    _write_json(folder / "model_config.json", artifact.model_config)
    _write_json(
        folder / "config.json",
        {
            "format": LATENTS_FORMAT,
            "version": FORMAT_VERSION,
            "decoder": decoder,
            "vae_config": artifact.vae.config.to_dict(),
            "latent_dtype": str(artifact.latents.dtype).removeprefix("torch."),
            "model_kind": _model_kind(artifact.model_config),
        },
    )
    report = report or compression_report(artifact, print_report=False)
    latents_card(artifact, repo_id or folder.name, decoder, report).save(folder / "README.md")
    return folder


def _model_kind(model_config: dict[str, Any]) -> str:
    if model_config.get("model_type") == CSGConfig.model_type:
        return f"csg/{model_config['architecture']}"
    if "small_model" in model_config:
        return f"small/{model_config['small_model']}"
    return f"timm/{model_config.get('architecture')}"


def latents_card(artifact: CompressedModel, repo_id: str, decoder: dict[str, str], report: dict[str, Any]) -> ModelCard:
    """The card of a latents repo: metadata, the decoder it needs, how to load, the accounting table."""
    kind = _model_kind(artifact.model_config)
    card_data = ModelCardData(
        library_name="csg-hub",
        license="apache-2.0",
        tags=sorted({"csg-hub", "weight-vae", "model-compression", *kind.split("/")}),
        model_name=repo_id.split("/")[-1],
    )
    where = (
        f"[{decoder['repo_id']}](https://huggingface.co/{decoder['repo_id']}) at commit `{decoder['revision']}`"
        if "repo_id" in decoder
        else f"the local folder `{decoder['path']}`"
    )
    comparison = ""
    if "baselines" in report and "accuracy_before" in report:
        comparison = "\nAgainst plain weight round trips, on the same evaluation data:\n\n" + comparison_table(report)
    body = f"""# {repo_id.split("/")[-1]}

A **{kind}** model stored as weight-VAE latents ("Variational Autoencoder-based Neural Network Model
Compression", arXiv 2408.14513): its selected tensors (`{artifact.manifest["selection"]}`) are cut into chunks of
{artifact.manifest["chunk_size"]} values and each chunk is one {artifact.vae.config.latent_dim}-value latent
vector. The decoder that turns latents back into weights lives in {where}.

## Load

```python
from csg_hub.compression import pull_latents

model = pull_latents("{repo_id}")  # downloads latents, decoder (pinned commit) and rebuilds the model
```

## Accounting

{format_compression_report(report)}
{comparison}
The latents-only ratio is the paper's headline number; it leaves the decoder out. The total ratio counts
everything needed to rebuild this one model; the amortized ratio spreads the decoder over the models that
share it.

## Citation

```bibtex
{VAE_CITATION}
```
"""
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


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
    lines = ["| weights | bytes | smaller than fp32 | top-1 |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {size:,} | {original / size:.2f}x | {top1:.2f} |" for name, size, top1 in rows]
    return "\n".join(lines) + "\n"


# --- reading -------------------------------------------------------------------------------------


def _snapshot(repo_or_dir: str | os.PathLike, revision: str | None, what: str) -> Path:
    local = Path(repo_or_dir)
    if local.is_dir():
        return local
    try:
        # one consistent commit of the repo; JSON and safetensors only, never pickles
        return Path(snapshot_download(str(repo_or_dir), revision=revision, allow_patterns=["*.json", "*.safetensors"]))
    except RevisionNotFoundError as err:
        raise CheckpointError(
            f"Revision {revision!r} of the {what} repo {repo_or_dir} does not exist. Check the revision, or push the "
            "decoder again (push_decoder) and re-push the latents (push_latents) so they name an existing commit."
        ) from err
    except RepositoryNotFoundError as err:
        raise CheckpointError(f"The {what} repo {repo_or_dir} does not exist or is not accessible: {err}") from err


def _read_json(folder: Path, name: str, what: str) -> dict[str, Any]:
    path = folder / name
    if not path.exists():
        raise CheckpointError(f"The {what} at {folder} has no {name}; is it a csg-hub weight-VAE {what} repo?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{name} of the {what} at {folder} is not valid JSON: {err}") from err


def _read_safetensors(folder: Path, name: str, what: str) -> dict[str, torch.Tensor]:
    path = folder / name
    if not path.exists():
        raise CheckpointError(f"The {what} at {folder} has no {name}.")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"Could not read {name} of the {what} at {folder}: {err}. The file is truncated or corrupt; "
            "download or push it again."
        ) from err


def _check_format(config: dict[str, Any], expected: str, folder: Path) -> None:
    if config.get("format") != expected or config.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder}/config.json is not a {expected} v{FORMAT_VERSION} config "
            f"(format {config.get('format')!r}, version {config.get('version')!r})."
        )


def load_decoder(repo_or_dir: str | os.PathLike, revision: str | None = None) -> WeightVAE:
    """A decoder-only `WeightVAE` from a decoder repo (Hub id, optionally at `revision`) or folder."""
    folder = _snapshot(repo_or_dir, revision, "decoder")
    config = _read_json(folder, "config.json", "decoder")
    _check_format(config, DECODER_FORMAT, folder)
    vae = WeightVAE(WeightVAEConfig.from_dict(config["vae_config"]), with_encoder=False)
    tensors = _read_safetensors(folder, "decoder.safetensors", "decoder")
    try:
        vae.decoder.load_state_dict({k.removeprefix("decoder."): v for k, v in tensors.items()})
    except RuntimeError as err:
        raise CheckpointError(f"decoder.safetensors at {folder} does not fit its config.json: {err}") from err
    return vae.eval()


def load_latents(repo_or_dir: str | os.PathLike, revision: str | None = None) -> CompressedModel:
    """A `CompressedModel` from a latents repo (Hub id, optionally at `revision`) or folder, with the decoder
    its `config.json` names (at the pinned commit). Raises `CheckpointError` for missing or corrupt files
    and revisions, ValueError when the decoder, the manifest and the latents disagree."""
    folder = _snapshot(repo_or_dir, revision, "latents")
    config = _read_json(folder, "config.json", "latents")
    _check_format(config, LATENTS_FORMAT, folder)
    manifest = _read_json(folder, "manifest.json", "latents")
    validate_manifest(manifest)
    model_config = _read_json(folder, "model_config.json", "latents")
    vae = _decoder_for(config["decoder"], folder, Path(repo_or_dir).is_dir())
    if vae.config.to_dict() != config["vae_config"]:
        raise ValueError(
            f"The decoder {config['decoder']} has VAE config {vae.config.to_dict()} but the latents at {repo_or_dir} "
            f"were made with {config['vae_config']}: re-push the latents against the decoder they were made with."
        )
    if manifest["chunk_size"] != vae.config.chunk_size:
        raise ValueError(
            f"manifest.json has chunk_size {manifest['chunk_size']} but the decoder {vae.config.chunk_size}."
        )
    tensors = _read_safetensors(folder, "latents.safetensors", "latents")
    latents, stats = tensors.get("latents"), tensors.get("stats")
    expected = (manifest["num_chunks"], vae.config.latent_dim)
    if latents is None or tuple(latents.shape) != expected:
        shape = None if latents is None else tuple(latents.shape)
        raise CheckpointError(f"latents.safetensors at {folder} holds latents of shape {shape}, expected {expected}.")
    if (stats is None) != (vae.config.normalize == "none"):
        raise CheckpointError(
            f"latents.safetensors at {folder} {'lacks' if stats is None else 'has'} normalisation statistics but the "
            f"VAE config says normalize={vae.config.normalize!r}."
        )
    return CompressedModel(
        latents=latents,
        stats=stats,
        kept=_read_safetensors(folder, "kept.safetensors", "latents"),
        manifest=manifest,
        model_config=model_config,
        vae=vae,
    )


def _decoder_for(decoder: dict[str, str], folder: Path, local: bool) -> WeightVAE:
    if "path" in decoder:
        if not local:
            raise CheckpointError(
                "This latents repo refers to a decoder folder on someone's disk; re-push it with push_latents, "
                "which records the decoder's repo id and commit."
            )
        return load_decoder(folder / decoder["path"])
    try:
        return load_decoder(decoder["repo_id"], decoder["revision"])
    except EntryNotFoundError as err:
        raise CheckpointError(f"The decoder {decoder} lacks a file: {err}") from err


def pull_latents(repo_or_dir: str | os.PathLike, revision: str | None = None) -> nn.Module:
    """Download a latents repo and its pinned decoder and rebuild the model (eval mode): a
    `CSGForImageClassification`, a timm model or a `csg_hub.small_models` model."""
    return load_latents(repo_or_dir, revision).to_model()


# --- pushing -------------------------------------------------------------------------------------


def push_decoder(
    vae: WeightVAE,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
) -> CommitInfo:
    """Upload `vae`'s decoder (`decoder.safetensors`, `config.json`, card); the commit's `oid` is the revision
    latents repos pin."""
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp:
        save_decoder(vae, tmp)
        return api.upload_folder(
            repo_id=repo_id, folder_path=tmp, commit_message=commit_message or "Upload weight-VAE decoder"
        )


def push_latents(
    artifact: CompressedModel,
    repo_id: str,
    decoder_repo_id: str,
    decoder_revision: str | None = None,
    *,
    report: dict[str, Any] | None = None,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
) -> CommitInfo:
    """Upload a latents repo that names `decoder_repo_id` at the exact commit `decoder_revision` resolves to
    (the latest when None). The decoder there must have the artifact's VAE config."""
    api = HfApi(token=token)
    try:
        sha = api.model_info(decoder_repo_id, revision=decoder_revision).sha
    except (RevisionNotFoundError, RepositoryNotFoundError) as err:
        raise CheckpointError(
            f"Decoder {decoder_repo_id} at revision {decoder_revision!r} does not exist; push it with push_decoder first."
        ) from err
    remote = load_decoder(decoder_repo_id, sha)
    ours = artifact.vae.decoder.state_dict()
    same = remote.config == artifact.vae.config and all(
        torch.equal(v, ours[k]) for k, v in remote.decoder.state_dict().items()
    )
    if not same:
        raise ValueError(
            f"The decoder {decoder_repo_id}@{sha} is not the one these latents were made with (VAE config "
            f"{remote.config.to_dict()} vs {artifact.vae.config.to_dict()}, or other weights): push this "
            "artifact's decoder (push_decoder) and name that commit."
        )
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp:
        save_latents(artifact, tmp, {"repo_id": decoder_repo_id, "revision": sha}, report=report, repo_id=repo_id)
        return api.upload_folder(
            repo_id=repo_id, folder_path=tmp, commit_message=commit_message or "Upload weight-VAE latents"
        )
