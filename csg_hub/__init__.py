"""csg-hub: parameter-efficient timm CNNs whose filters come from a Convolutional Slice Generator."""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .cards import accuracy_result, model_card
from .configuration import CSGConfig
from .generator import SliceGenerator
from .hub import config_from_timm, push_model, push_timm
from .modeling import CheckpointError, CSGForImageClassification, CSGModel, CSGPreTrainedModel
from .reparameterize import generated_convs, materialize, reparameterize
from .report import format_report, parameter_report

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
    "SliceGenerator",
    "accuracy_result",
    "config_from_timm",
    "format_report",
    "generated_convs",
    "materialize",
    "model_card",
    "parameter_report",
    "push_model",
    "push_timm",
    "reparameterize",
]
