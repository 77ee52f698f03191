"""The weight VAE ("Variational Autoencoder-based Neural Network Model Compression", Cheng et al.,
arXiv 2408.14513): a fully connected VAE that maps each chunk of `chunk_size` weights to `latent_dim` values.

The decoder is a separate network that many models can share, and it has to be counted: the paper's
~32x is 2048 / 64 and leaves the decoder out (`csg_hub.compression_report` gives both numbers).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

NORMALIZATIONS = ("none", "global", "chunk")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


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

    def decoder_tensors(self) -> dict[str, torch.Tensor]:
        """What `decoder.safetensors` holds: the decoder's state dict under `decoder.`."""
        return {f"decoder.{k}": v for k, v in self.decoder.state_dict().items()}

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
