"""csg-hub: parameter-efficient timm CNNs whose filters come from a Convolutional Slice Generator."""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

from .configuration import CSGConfig
from .errors import CheckpointError
from .hub import accuracy_result, model_card, push_model, push_timm, save_timm
from .image_processing import CSGImageProcessor
from .layers import SliceGenerator, generated_convs, materialize, reparameterize
from .modeling import CSGForImageClassification, CSGModel, CSGPreTrainedModel
from .report import format_report, parameter_report
from .timm_utils import config_from_timm
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
from .zoo import PretrainedInfo, list_pretrained, pretrained_info

__version__ = "0.1.0"


def __getattr__(name: str):
    # transformers' Trainer pulls in accelerate and its optional integrations: loaded on first use only
    if name == "CSGTrainer":
        from .trainer import CSGTrainer

        return CSGTrainer
    raise AttributeError(f"module 'csg_hub' has no attribute {name!r}")

AutoConfig.register(CSGConfig.model_type, CSGConfig, exist_ok=True)
AutoModel.register(CSGConfig, CSGModel, exist_ok=True)
AutoModelForImageClassification.register(CSGConfig, CSGForImageClassification, exist_ok=True)
# one class for both backends: its transform is torchvision's, whichever backend a caller asks for
AutoImageProcessor.register(
    CSGConfig, image_processor_classes={"torchvision": CSGImageProcessor, "pil": CSGImageProcessor}, exist_ok=True
)

__all__ = [
    "CSGConfig",
    "CSGForImageClassification",
    "CSGImageProcessor",
    "CSGModel",
    "CSGPreTrainedModel",
    "CSGTrainer",
    "CheckpointError",
    "CompressedModel",
    "PretrainedInfo",
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
    "list_pretrained",
    "load_decoder",
    "load_latents",
    "materialize",
    "model_card",
    "parameter_report",
    "pretrained_info",
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
