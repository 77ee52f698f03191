"""The CSG layers: the shared slice generator and the reparameterization of a timm model's convs (timm's
`layers/` style: one module per concept)."""

from .generator import SliceGenerator
from .reparameterize import GeneratedConv, clear_filter_cache, generated_convs, materialize, reparameterize

__all__ = ["GeneratedConv", "SliceGenerator", "clear_filter_cache", "generated_convs", "materialize", "reparameterize"]
