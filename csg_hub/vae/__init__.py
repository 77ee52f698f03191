"""Weight-VAE compression ("Variational Autoencoder-based Neural Network Model Compression", Cheng et al.,
arXiv 2408.14513). Data flows one way: model -> `chunks` (flatten, manifest) -> `model` / `training` (the
VAE) -> `compressed` (latents) -> `accounting`, `baselines`, `cards` -> `artifacts` (disk and Hub)."""

from .accounting import compression_report, format_compression_report
from .artifacts import load_decoder, load_latents, pull_latents, push_decoder, push_latents, save_decoder, save_latents
from .baselines import comparison_table, round_trip
from .chunks import flatten_parameters, load_parameters, select_tensors, unflatten_parameters
from .compressed import CompressedModel, compress, compress_many, train_shared_vae
from .model import WeightVAE, WeightVAEConfig
from .training import VAETrainingConfig, paper_recipe, train_weight_vae

__all__ = [
    "CompressedModel",
    "VAETrainingConfig",
    "WeightVAE",
    "WeightVAEConfig",
    "comparison_table",
    "compress",
    "compress_many",
    "compression_report",
    "flatten_parameters",
    "format_compression_report",
    "load_decoder",
    "load_latents",
    "load_parameters",
    "paper_recipe",
    "pull_latents",
    "push_decoder",
    "push_latents",
    "round_trip",
    "save_decoder",
    "save_latents",
    "select_tensors",
    "train_shared_vae",
    "train_weight_vae",
    "unflatten_parameters",
]
