"""Training a weight VAE on a model's chunks, and fitting latents to them (optionally by distillation)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..timm_utils import logits
from .chunks import split_chunks
from .model import WeightVAE, WeightVAEConfig, elbo_loss


@dataclass
class VAETrainingConfig:
    """How a weight VAE is trained and the latents are fitted.

    The data are the paper's: `copies` noisy copies of the true chunks (`noise_fraction` of the positions
    get Gaussian noise of std `noise_scale` times the weights' std), split by copy into train and
    validation; Adam, halving the step size when the validation ELBO stalls, and early stopping after
    `patience` epochs without a relative improvement of `min_delta`. `refine_steps` then fits the latents (and
    normalisation statistics) of the true chunks directly to them through the frozen decoder; when
    `csg_hub.compress` is given batches of inputs, a distillation loss weighted by
    `distill_weight` joins the reconstruction loss.
    """

    copies: int = 100
    val_fraction: float = 0.2
    noise_fraction: float = 0.1
    noise_scale: float = 0.1
    epochs: int = 500
    patience: int = 10
    min_delta: float = 0.01
    batch_size: int = 256
    lr: float = 1e-3
    beta: float = 1e-3
    refine_steps: int = 500
    refine_lr: float = 1e-2
    distill_weight: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.patience < 1 or self.refine_steps < 0:
            raise ValueError("VAETrainingConfig needs epochs >= 1, patience >= 1 and refine_steps >= 0.")
        n_val = round(self.copies * self.val_fraction)
        if self.copies < 2 or not 1 <= n_val < self.copies:
            raise ValueError(
                f"copies={self.copies} with val_fraction={self.val_fraction} leaves no training or validation copy."
            )


def paper_recipe(chunk_size: int = 2048, latent_dim: int = 64) -> tuple[WeightVAEConfig, VAETrainingConfig]:
    """The paper's setting as far as it is published: raw weights, full ELBO (beta 1), no latent refinement."""
    return (
        WeightVAEConfig(chunk_size=chunk_size, latent_dim=latent_dim, normalize="none"),
        VAETrainingConfig(beta=1.0, refine_steps=0),
    )


def _noisy_copy(chunks: torch.Tensor, copy_index: int, config: VAETrainingConfig, scale: float) -> torch.Tensor:
    # Each copy's noise comes from its own seed: the 100 copies are fixed, as in the paper, but never all
    # held in memory at once (100 copies of a ResNet-18 would be 4.5 GB).
    gen = torch.Generator().manual_seed(config.seed * 1_000_003 + copy_index)
    where = torch.rand(chunks.shape, generator=gen) < config.noise_fraction
    return chunks + where * torch.randn(chunks.shape, generator=gen) * scale


def _batches(chunks: torch.Tensor, copy_ids: list[int], config: VAETrainingConfig, scale: float, shuffle: bool):
    per_group = max(1, math.ceil(config.batch_size / len(chunks)))
    order = torch.randperm(len(copy_ids)).tolist() if shuffle else range(len(copy_ids))
    ids = [copy_ids[i] for i in order]
    for g in range(0, len(ids), per_group):
        rows = torch.cat([_noisy_copy(chunks, c, config, scale) for c in ids[g : g + per_group]])
        if shuffle:
            rows = rows[torch.randperm(len(rows))]
        yield from rows.split(config.batch_size)


def _epoch(
    vae: WeightVAE, batches, beta: float, optimizer: torch.optim.Optimizer | None, model_stats: torch.Tensor | None
) -> dict[str, float]:
    totals, count = torch.zeros(3), 0
    for x in batches:
        # per-model statistics are the true model's; per-chunk ones belong to each (noisy) chunk
        stats = vae.chunk_stats(x) if vae.config.normalize == "chunk" else model_stats
        target = vae.normalize(x, stats)
        recon, mu, logvar = vae(target)
        losses = elbo_loss(recon, target, mu, logvar, beta)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            losses[0].backward()
            optimizer.step()
        totals += torch.stack([v.detach() for v in losses]) * len(x)
        count += len(x)
    loss, rec, kl = (totals / count).tolist()
    return {"loss": loss, "reconstruction": rec, "kl": kl}


def train_weight_vae(
    chunks: torch.Tensor,
    vae_config: WeightVAEConfig,
    config: VAETrainingConfig,
    progress: bool = True,
) -> tuple[WeightVAE, list[dict[str, float]]]:
    """Train a `WeightVAE` on noisy copies of `chunks` (see `VAETrainingConfig`); returns the VAE with the
    best validation weights, in eval mode, and the per-epoch history."""
    if chunks.ndim != 2 or chunks.shape[1] != vae_config.chunk_size:
        raise ValueError(f"chunks must have shape (N, {vae_config.chunk_size}), got {tuple(chunks.shape)}.")
    torch.manual_seed(config.seed)
    vae = WeightVAE(vae_config)
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.lr)
    # halving the step size when validation stalls settles the noisy Adam updates, so early stopping
    # ends on a converged model rather than on noise
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, config.patience // 4))
    n_val = round(config.copies * config.val_fraction)
    train_ids, val_ids = list(range(n_val, config.copies)), list(range(n_val))
    scale = config.noise_scale * chunks.std().item()
    model_stats = vae.chunk_stats(chunks)
    best = anchor = math.inf
    best_state, waited, history = None, 0, []
    bar = tqdm(range(config.epochs), desc="weight-VAE", unit="epoch", disable=not progress)
    for epoch in bar:
        vae.train()
        train = _epoch(vae, _batches(chunks, train_ids, config, scale, True), config.beta, optimizer, model_stats)
        vae.eval()
        with torch.no_grad():
            val = _epoch(vae, _batches(chunks, val_ids, config, scale, False), config.beta, None, model_stats)
        record = {"epoch": epoch + 1, **train}
        record.update({f"val_{k}": v for k, v in val.items()})
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4g}", val=f"{val['loss']:.4g}")
        scheduler.step(val["loss"])
        record["lr"] = optimizer.param_groups[0]["lr"]
        if val["loss"] < best:
            best, best_state = val["loss"], copy.deepcopy(vae.state_dict())
        # patience runs out on small gains too: only a relative gain of min_delta restarts it
        if val["loss"] < anchor * (1 - config.min_delta):
            anchor, waited = val["loss"], 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    bar.close()
    vae.load_state_dict(best_state)
    return vae.eval(), history


def refine_latents(
    vae: WeightVAE,
    latents: torch.Tensor,
    stats: torch.Tensor | None,
    chunks: torch.Tensor,
    steps: int,
    lr: float = 1e-2,
    numel: int | None = None,
    task_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fit latents (and normalisation statistics) to the true `chunks` through the frozen decoder.

    Minimises the relative squared error over the first `numel` values (the padding is ignored), plus
    `task_loss(decoded_chunks)` when given (e.g. a distillation loss on a few batches). Starting from
    zeros this also compresses with a decoder that has no encoder.
    """
    target = chunks.reshape(-1)[: numel or chunks.numel()]
    variance = target.var().clamp_min(1e-12)
    z = latents.detach().clone().requires_grad_(True)
    s = None if stats is None else stats.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([t for t in (z, s) if t is not None], lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
    for p in vae.parameters():
        p.requires_grad_(False)
    try:
        for _ in tqdm(range(steps), desc="refine latents", unit="step", disable=not progress):
            decoded = vae.decompress_chunks(z, s)
            loss = F.mse_loss(decoded.reshape(-1)[: len(target)], target) / variance
            if task_loss is not None:
                loss = loss + task_loss(decoded)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    finally:
        for p in vae.parameters():
            p.requires_grad_(True)
    return z.detach(), None if s is None else s.detach()


def distillation_loss(
    model: nn.Module,
    manifest: dict[str, Any],
    batches: Iterable[tuple[torch.Tensor, Any]],
    weight: float = 1.0,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A `task_loss` for `refine_latents`: KL divergence from `model`'s predictions to those of `model` with the
    decoded tensors, one batch of `batches` per call (labels unused; `batches` is re-iterated when exhausted).

    This spends the latents' freedom on what the model computes rather than on every weight's value.
    """
    model.eval()
    frozen = model.state_dict()  # detached: the model's own tensors get no gradient
    device = next(model.parameters()).device
    stream = iter(batches)

    def next_inputs() -> torch.Tensor:
        nonlocal stream
        try:
            return next(stream)[0].to(device)
        except StopIteration:
            stream = iter(batches)
            return next(stream)[0].to(device)

    def loss(chunks: torch.Tensor) -> torch.Tensor:
        inputs = next_inputs()
        with torch.no_grad():
            target = logits(model(inputs)).float().log_softmax(-1)
        decoded = {k: v.to(device) for k, v in split_chunks(chunks, manifest).items()}
        student = logits(torch.func.functional_call(model, {**frozen, **decoded}, (inputs,))).float()
        return weight * F.kl_div(student.log_softmax(-1), target, log_target=True, reduction="batchmean")

    return loss
