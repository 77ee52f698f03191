"""A model in weight-VAE form (`CompressedModel`), and `compress`: model -> chunks -> VAE -> latents;
`compress_many`: several models, one VAE trained on all their chunks, one latents artifact each."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..training import load_into
from .chunks import Selection, check_manifest, flatten_parameters, unflatten_parameters
from .model import WeightVAE, WeightVAEConfig
from .model_config import build_model, describe_model
from .training import VAETrainingConfig, distillation_loss, refine_latents, train_weight_vae

LATENT_DTYPES = {"float16": torch.float16, "float32": torch.float32}


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

    def latent_tensors(self) -> dict[str, torch.Tensor]:
        """What `latents.safetensors` holds: the latents and, when the VAE normalises, their statistics."""
        return {"latents": self.latents, **({"stats": self.stats} if self.stats is not None else {})}

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
        load_into(model, {**self.kept, **decoded}, "The weight-VAE artifact")
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


def train_shared_vae(
    models: Sequence[nn.Module],
    selection: Selection = "all",
    vae_config: WeightVAEConfig | None = None,
    training: VAETrainingConfig | None = None,
    progress: bool = True,
) -> tuple[WeightVAE, list[dict[str, float]]]:
    """One VAE trained on the chunks of all `models` (each model's selected tensors flattened and chunked on
    its own, so no chunk mixes two models; the chunks then concatenated). Returns the VAE and its history."""
    if not models:
        raise ValueError("train_shared_vae needs at least one model.")
    vae_config = vae_config or WeightVAEConfig()
    chunks = torch.cat([flatten_parameters(m, selection, vae_config.chunk_size)[0] for m in models])
    return train_weight_vae(chunks, vae_config, training or VAETrainingConfig(), progress=progress)


def compress_many(
    models: Sequence[nn.Module],
    selection: Selection = "all",
    vae_config: WeightVAEConfig | None = None,
    training: VAETrainingConfig | None = None,
    vae: WeightVAE | None = None,
    latent_dtype: str = "float16",
    progress: bool = True,
) -> list[CompressedModel]:
    """Compress several models with one shared decoder: a VAE trained on all their chunks
    (`train_shared_vae`), or the given `vae`; then `compress` each model with it (its own latents, refined
    against its own chunks). Every artifact holds the same `vae` object, and its `history` is the shared
    training's. Save the decoder once and each artifact's latents pinned to it (`push_decoder`, `push_latents`)."""
    if vae is not None and vae_config is not None:
        raise ValueError("Pass either vae (reuse a trained VAE) or vae_config (train a new one), not both.")
    training = training or VAETrainingConfig()
    history: list[dict[str, float]] = []
    if vae is None:
        vae, history = train_shared_vae(models, selection, vae_config, training, progress=progress)
    artifacts = []
    for model in models:
        artifact = compress(model, selection, training=training, vae=vae, latent_dtype=latent_dtype, progress=progress)
        artifact.history = history
        artifacts.append(artifact)
    return artifacts
