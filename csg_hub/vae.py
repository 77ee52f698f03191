"""Weight-VAE compression ("Variational Autoencoder-based Neural Network Model Compression", Cheng et al.,
arXiv 2408.14513).

A model's parameters (all of them or a selection) are flattened into one sequence and cut into chunks of
`chunk_size` values, the last one zero-padded. A fully connected VAE maps each chunk to `latent_dim` values;
a model is then stored as one latent vector per chunk plus the tensors left out of the selection. The decoder
is a separate network that many models can share, and it has to be counted: the paper's ~32x is 2048 / 64 and
leaves the decoder out (`csg_hub.compression.compression_report` gives both numbers).
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .reparameterize import GENERATORS_ATTR, GeneratedConv

MANIFEST_FORMAT = "csg-hub-weight-chunks"
MANIFEST_VERSION = 1
SELECTION_PRESETS = ("all", "csg", "convs")
NORMALIZATIONS = ("none", "global", "chunk")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}

Selection = str | Sequence[str]


# --- flattening ----------------------------------------------------------------------------------


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def select_tensors(model: nn.Module, selection: Selection = "all") -> list[str]:
    """State-dict names of the floating-point tensors that `selection` picks, in state-dict order.

    `selection` is a preset — `"all"` (every parameter), `"csg"` (codes and generator tensors of a CSG
    model), `"convs"` (the weights of ordinary convolutions) — or fnmatch patterns on state-dict names
    (`"layer4.*"`, `["*.weight", "fc.bias"]`), which may also pick buffers.
    """
    floating = [k for k, v in model.state_dict().items() if v.is_floating_point()]
    if isinstance(selection, str) and selection == "all":
        names = set(dict(model.named_parameters()))
    elif isinstance(selection, str) and selection == "csg":
        names = {_join(n, "codes") for n, m in model.named_modules() if isinstance(m, GeneratedConv)}
        names |= {k for k in floating if GENERATORS_ATTR in k.split(".")}
        if not names:
            raise ValueError(
                "Selection 'csg' found no codes or generator tensors: the model is not in CSG form "
                "(build it with csg_hub.CSGForImageClassification or csg_hub.reparameterize)."
            )
    elif isinstance(selection, str) and selection == "convs":
        names = {
            _join(n, "weight")
            for n, m in model.named_modules()
            if isinstance(m, nn.modules.conv._ConvNd) and isinstance(m._parameters.get("weight"), nn.Parameter)
        }
        if not names:
            raise ValueError("Selection 'convs' found no convolution with a weight Parameter in this model.")
    else:
        patterns = [selection] if isinstance(selection, str) else list(selection)
        names = set()
        for pattern in patterns:
            hits = {k for k in floating if fnmatch.fnmatchcase(k, pattern)}
            if not hits:
                raise ValueError(
                    f"Selection pattern {pattern!r} matches no floating-point tensor of the model "
                    f"(presets: {', '.join(SELECTION_PRESETS)}; names look like {floating[:3]})."
                )
            names |= hits
    return [k for k in floating if k in names]


def flatten_parameters(
    model: nn.Module, selection: Selection = "all", chunk_size: int = 2048
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The selected tensors as float32 chunks `(num_chunks, chunk_size)`, the last one zero-padded, and a
    JSON-able manifest (names, shapes, dtypes, offsets, sizes, padding) that `unflatten_parameters` inverts."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
    state = model.state_dict()
    entries, pieces, offset = [], [], 0
    for name in select_tensors(model, selection):
        tensor = state[name].detach()
        entries.append(
            {
                "name": name,
                "shape": list(tensor.shape),
                "dtype": str(tensor.dtype).removeprefix("torch."),
                "offset": offset,
                "numel": tensor.numel(),
            }
        )
        pieces.append(tensor.reshape(-1).to("cpu", torch.float32))
        offset += tensor.numel()
    num_chunks = max(1, math.ceil(offset / chunk_size))
    padding = num_chunks * chunk_size - offset
    flat = torch.cat([*pieces, torch.zeros(padding)])
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "selection": selection if isinstance(selection, str) else list(selection),
        "chunk_size": chunk_size,
        "num_chunks": num_chunks,
        "numel": offset,
        "padding": padding,
        "tensors": entries,
    }
    return flat.view(num_chunks, chunk_size), manifest


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"Manifest dtype {name!r} is not a floating-point torch dtype.")
    return dtype


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Raise ValueError unless `manifest` is a consistent chunk manifest (offsets, sizes, padding)."""
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(
            f"Not a {MANIFEST_FORMAT} v{MANIFEST_VERSION} manifest "
            f"(format {manifest.get('format')!r}, version {manifest.get('version')!r})."
        )
    offset = 0
    for entry in manifest["tensors"]:
        if entry["offset"] != offset or entry["numel"] != math.prod(entry["shape"]):
            raise ValueError(f"Manifest entry {entry['name']!r} is inconsistent (offset, shape or numel).")
        _dtype(entry["dtype"])
        offset += entry["numel"]
    chunk, count = manifest["chunk_size"], manifest["num_chunks"]
    if offset != manifest["numel"] or count * chunk - offset != manifest["padding"] or not 0 <= manifest["padding"]:
        raise ValueError(
            f"Manifest sizes disagree: tensors hold {offset} values, numel says {manifest['numel']}, "
            f"{count} chunks of {chunk} with padding {manifest['padding']}."
        )


def split_chunks(chunks: torch.Tensor, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Differentiable views of `chunks` as the manifest's tensors (shapes only; dtype stays float32)."""
    flat = chunks.reshape(-1)
    return {e["name"]: flat[e["offset"] : e["offset"] + e["numel"]].view(e["shape"]) for e in manifest["tensors"]}


def unflatten_parameters(chunks: torch.Tensor, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Inverse of `flatten_parameters`: chunks -> `{name: tensor}` with the manifest's shapes and dtypes."""
    validate_manifest(manifest)
    expected = (manifest["num_chunks"], manifest["chunk_size"])
    if tuple(chunks.shape) != expected:
        raise ValueError(f"Chunks have shape {tuple(chunks.shape)} but the manifest describes {expected}.")
    dtypes = {e["name"]: _dtype(e["dtype"]) for e in manifest["tensors"]}
    return {k: v.detach().to(dtypes[k]).clone() for k, v in split_chunks(chunks, manifest).items()}


def check_manifest(manifest: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> None:
    """Raise ValueError, naming the tensor and both shapes, when `manifest` does not fit `state_dict`."""
    for entry in manifest["tensors"]:
        name, shape = entry["name"], tuple(entry["shape"])
        if name not in state_dict:
            raise ValueError(
                f"Manifest tensor {name!r} (shape {shape}) is not in the model's state dict: the latents were "
                "made for another architecture or config."
            )
        actual = tuple(state_dict[name].shape)
        if actual != shape:
            raise ValueError(
                f"Manifest tensor {name!r} has shape {shape} but the model's has shape {actual}: the latents "
                "were made for another architecture or config."
            )


@torch.no_grad()
def load_parameters(model: nn.Module, chunks: torch.Tensor, manifest: dict[str, Any]) -> nn.Module:
    """Write the tensors held in `chunks` into `model` in place (after `check_manifest`); returns `model`."""
    state = model.state_dict()
    check_manifest(manifest, state)
    for name, tensor in unflatten_parameters(chunks, manifest).items():
        state[name].copy_(tensor)
    return model


# --- the VAE -------------------------------------------------------------------------------------


@dataclass
class WeightVAEConfig:
    """Shape of a weight VAE.

    `normalize` standardises what the VAE sees: `"none"` (the paper: raw weights), `"global"` (one
    mean/std per model) or `"chunk"` (one mean/std per chunk). The statistics are stored with the latents
    (2 values per chunk, or 2 per model) and counted as latent values.
    """

    chunk_size: int = 2048
    latent_dim: int = 64
    encoder_hidden: tuple[int, ...] = (512,)
    decoder_hidden: tuple[int, ...] = (512,)
    activation: str = "relu"
    normalize: str = "chunk"

    def __post_init__(self) -> None:
        self.encoder_hidden = tuple(int(w) for w in self.encoder_hidden)
        self.decoder_hidden = tuple(int(w) for w in self.decoder_hidden)
        if self.chunk_size < 1 or self.latent_dim < 1 or any(w < 1 for w in self.encoder_hidden + self.decoder_hidden):
            raise ValueError(f"WeightVAEConfig sizes must be positive integers: {self}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}.")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"Unknown normalize {self.normalize!r}; choose one of {NORMALIZATIONS}.")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightVAEConfig:
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown WeightVAEConfig keys {sorted(unknown)}; was it written by a newer csg-hub?")
        return cls(**data)


def _mlp(widths: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class WeightVAE(nn.Module):
    """Fully connected VAE over weight chunks: encoder -> (mu, logvar) -> reparameterization -> decoder.

    Compression stores the posterior means (decoding is deterministic). `with_encoder=False` builds the
    decoder alone, which is all that decompression needs (and what a decoder repo holds).
    """

    def __init__(self, config: WeightVAEConfig, with_encoder: bool = True) -> None:
        super().__init__()
        self.config = config
        act = ACTIVATIONS[config.activation]
        self.encoder = (
            _mlp([config.chunk_size, *config.encoder_hidden, 2 * config.latent_dim], act) if with_encoder else None
        )
        self.decoder = _mlp([config.latent_dim, *config.decoder_hidden, config.chunk_size], act)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised chunks `(N, chunk_size)` -> `(mu, logvar)`, each `(N, latent_dim)`."""
        if self.encoder is None:
            raise RuntimeError("This WeightVAE holds only a decoder; fit latents with refine_latents instead.")
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents `(N, latent_dim)` -> normalised chunks `(N, chunk_size)`."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(reconstruction, mu, logvar)`; samples z in training mode, uses the mean in eval mode."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decode(z), mu, logvar

    def chunk_stats(self, chunks: torch.Tensor) -> torch.Tensor | None:
        """Per-chunk `(N, 2)` or per-model `(1, 2)` (mean, std) for the config's normalisation, or None."""
        mode = self.config.normalize
        if mode == "none":
            return None
        dims = (1,) if mode == "chunk" else (0, 1)
        mean = chunks.mean(dim=dims, keepdim=True)
        std = chunks.std(dim=dims, keepdim=True).clamp_min(1e-8)
        return torch.cat([mean.expand(-1, 1), std.expand(-1, 1)], dim=1).reshape(-1, 2)

    @staticmethod
    def normalize(chunks: torch.Tensor, stats: torch.Tensor | None) -> torch.Tensor:
        return chunks if stats is None else (chunks - stats[:, :1]) / stats[:, 1:]

    @staticmethod
    def denormalize(chunks: torch.Tensor, stats: torch.Tensor | None) -> torch.Tensor:
        return chunks if stats is None else chunks * stats[:, 1:] + stats[:, :1]

    @torch.no_grad()
    def compress_chunks(self, chunks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(latents, stats)` of weight chunks: posterior means, and the normalisation statistics."""
        stats = self.chunk_stats(chunks)
        mu, _ = self.encode(self.normalize(chunks, stats))
        return mu, stats

    def decompress_chunks(self, latents: torch.Tensor, stats: torch.Tensor | None) -> torch.Tensor:
        """Weight chunks from latents and normalisation statistics (deterministic)."""
        return self.denormalize(self.decode(latents), stats)

    def num_decoder_params(self) -> int:
        return sum(p.numel() for p in self.decoder.parameters())


def elbo_loss(
    recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(loss, reconstruction, kl)` per chunk: squared error summed over the chunk (unit-variance Gaussian
    likelihood) plus `beta` times KL(q(z|x) || N(0, I))."""
    rec = (recon - target).pow(2).sum(dim=1).mean()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1).mean()
    return rec + beta * kl, rec, kl


# --- training ------------------------------------------------------------------------------------


@dataclass
class VAETrainingConfig:
    """How a weight VAE is trained and the latents are fitted.

    The data are the paper's: `copies` noisy copies of the true chunks (`noise_fraction` of the positions
    get Gaussian noise of std `noise_scale` times the weights' std), split by copy into train and
    validation; Adam, halving the step size when the validation ELBO stalls, and early stopping after
    `patience` epochs without a relative improvement of `min_delta`. `refine_steps` then fits the latents (and
    normalisation statistics) of the true chunks directly to them through the frozen decoder; when
    `csg_hub.compression.compress` is given batches of inputs, a distillation loss weighted by
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
            target = _as_logits(model(inputs)).log_softmax(-1)
        decoded = {k: v.to(device) for k, v in split_chunks(chunks, manifest).items()}
        student = _as_logits(torch.func.functional_call(model, {**frozen, **decoded}, (inputs,)))
        return weight * F.kl_div(student.log_softmax(-1), target, log_target=True, reduction="batchmean")

    return loss


def _as_logits(output: Any) -> torch.Tensor:
    return (output if isinstance(output, torch.Tensor) else output.logits).float()


# --- after decoding ------------------------------------------------------------------------------


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, Any]], num_batches: int = 10
) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics from `num_batches` batches of `(inputs, labels)`.

    Decoded weights are close to, not equal to, the originals, so the stored statistics no longer match
    the activations they normalise. Returns `model` in its previous train/eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return model
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches seen
    model.train()
    device = next(model.parameters()).device
    for i, (inputs, _) in enumerate(batches):
        if i >= num_batches:
            break
        model(inputs.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.train(was_training)
