"""csg-hub: parameter-efficient timm CNNs whose filters come from a Convolutional Slice Generator."""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .cards import accuracy_result, model_card
from .compression import (
    CompressedModel,
    compress,
    compression_report,
    load_decoder,
    load_latents,
    pull_latents,
    push_decoder,
    push_latents,
)
from .configuration import CSGConfig
from .generator import SliceGenerator
from .hub import config_from_timm, push_model, push_timm, save_timm
from .modeling import CheckpointError, CSGForImageClassification, CSGModel, CSGPreTrainedModel
from .reparameterize import generated_convs, materialize, reparameterize
from .report import format_report, parameter_report
from .vae import (
    VAETrainingConfig,
    WeightVAE,
    WeightVAEConfig,
    flatten_parameters,
    recalibrate_batchnorm,
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
