"""The CSG layers: the shared slice generator, the reparameterization of a timm model's convs, and the
parameter report (timm's `layers/` style: one module per concept)."""

from .generator import SliceGenerator
from .reparameterize import GeneratedConv, clear_filter_cache, generated_convs, materialize, reparameterize
from .report import format_report, inference_macs, parameter_report

__all__ = [
    "GeneratedConv",
    "SliceGenerator",
    "clear_filter_cache",
    "format_report",
    "generated_convs",
    "inference_macs",
    "materialize",
    "parameter_report",
    "reparameterize",
]
