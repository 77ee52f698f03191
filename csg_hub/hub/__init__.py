"""The Hub side: model cards, pushing (with optional remote code), and timm interop. Depends on the
configuration and the layers, never on the modeling module (models call into it, not the reverse)."""

from .cards import accuracy_result, model_card
from .push import push_model
from .timm_interop import config_from_timm, push_timm, read_config_json, save_timm

__all__ = [
    "accuracy_result",
    "config_from_timm",
    "model_card",
    "push_model",
    "push_timm",
    "read_config_json",
    "save_timm",
]
