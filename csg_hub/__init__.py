"""csg-hub: parameter-efficient timm CNNs whose filters come from a Convolutional Slice Generator."""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .configuration import CSGConfig
from .generator import SliceGenerator
from .modeling import CheckpointError, CSGForImageClassification, CSGModel, CSGPreTrainedModel
from .report import format_report, parameter_report
from .reparameterize import generated_convs, materialize, reparameterize

__version__ = "0.1.0"

AutoConfig.register(CSGConfig.model_type, CSGConfig, exist_ok=True)
AutoModel.register(CSGConfig, CSGModel, exist_ok=True)
AutoModelForImageClassification.register(CSGConfig, CSGForImageClassification, exist_ok=True)

__all__ = [
    "CSGConfig",
    "CSGModel",
    "CSGForImageClassification",
    "CSGPreTrainedModel",
    "CheckpointError",
    "SliceGenerator",
    "reparameterize",
    "materialize",
    "generated_convs",
    "parameter_report",
    "format_report",
]
