"""csg-hub: parameter-efficient timm CNNs whose filters come from a Convolutional Slice Generator."""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .configuration import CSGConfig
from .errors import CheckpointError
from .hub import accuracy_result, config_from_timm, model_card, push_model, push_timm, save_timm
from .layers import SliceGenerator, format_report, generated_convs, materialize, parameter_report, reparameterize
from .modeling import CSGForImageClassification, CSGModel, CSGPreTrainedModel
from .training import recalibrate_batchnorm
from .vae import (
    CompressedModel,
    VAETrainingConfig,
    WeightVAE,
    WeightVAEConfig,
    compress,
    compression_report,
    flatten_parameters,
    load_decoder,
    load_latents,
    pull_latents,
    push_decoder,
    push_latents,
    unflatten_parameters,
)

__version__ = "0.1.0"

AutoConfig.register(CSGConfig.model_type, CSGConfig, exist_ok=True)
AutoModel.register(CSGConfig, CSGModel, exist_ok=True)
AutoModelForImageClassification.register(CSGConfig, CSGForImageClassification, exist_ok=True)

__all__ = [
    "CSGConfig",
    "CSGForImageClassification",
    "CSGModel",
    "CSGPreTrainedModel",
    "CheckpointError",
    "CompressedModel",
    "SliceGenerator",
    "VAETrainingConfig",
    "WeightVAE",
    "WeightVAEConfig",
    "accuracy_result",
    "compress",
    "compression_report",
    "config_from_timm",
    "flatten_parameters",
    "format_report",
    "generated_convs",
    "load_decoder",
    "load_latents",
    "materialize",
    "model_card",
    "parameter_report",
    "pull_latents",
    "push_decoder",
    "push_latents",
    "push_model",
    "push_timm",
    "recalibrate_batchnorm",
    "reparameterize",
    "save_timm",
    "unflatten_parameters",
]
