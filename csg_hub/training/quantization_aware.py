"""Quantization-aware training: the forward pass sees each stored tensor as it will load (`storage.round_trip`
in the model's storage dtype), the optimizer updates the float weights underneath (straight-through estimator).

The swap is in place (the CSG layers read their parameters directly, so a parametrization cannot intercept
them): before each forward the float values are kept aside and the parameters take their stored values; the
float values come back once a parameter's gradient has been accumulated (training), or right after the forward
when no gradient will come (evaluation, `torch.no_grad`). The optimizer and checkpoints thus always see the
float weights, and saving the model stores exactly the values the last forward pass used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..storage import round_trip, stored_keys

if TYPE_CHECKING:
    from typing import Self  # Python 3.11


class QuantizationAware:
    """Train `model` against its storage (`dtype`, `scope`, `group_size`; default: the model's config).

    Use as a context manager around training and evaluation; on exit the hooks are removed and the float
    weights are in place.
    """

    def __init__(self, model: nn.Module, dtype: str | None = None, scope: str | None = None,
                 group_size: int | None = None) -> None:  # fmt: skip
        config = getattr(model, "config", None)
        self.dtype = dtype or getattr(config, "storage_dtype", None)
        scope = scope or getattr(config, "storage_scope", "csg")
        self.group_size = group_size or getattr(config, "storage_group_size", None)
        if self.dtype in (None, "float32"):
            raise ValueError("Quantization-aware training needs a reduced storage dtype (e.g. storage_dtype='int4').")
        self.model = model
        self.params = [model.get_parameter(key) for key in stored_keys(model, scope)]
        self._floats: dict[nn.Parameter, torch.Tensor] = {}
        # the stored values of each parameter, with the version its floats had when they were put back: an
        # evaluation's forwards (no update in between) round the same floats once, not once per batch
        self._stored: dict[nn.Parameter, tuple[int, torch.Tensor]] = {}
        self._handles: list = []

    def __enter__(self) -> Self:
        self._handles = [
            self.model.register_forward_pre_hook(self._to_stored),
            self.model.register_forward_hook(self._after_forward),
            *(p.register_post_accumulate_grad_hook(self._restore) for p in self.params if p.requires_grad),
        ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for p in list(self._floats):
            self._restore(p)

    @torch.no_grad()
    def _to_stored(self, module: nn.Module, args) -> None:
        kwargs = {"group_size": self.group_size} if self.group_size else {}
        for p in self.params:
            if p not in self._floats:  # a second forward before the backward keeps the first's float values
                version, stored = self._stored.get(p, (None, None))
                if version != p._version:
                    stored = round_trip(p, self.dtype, **kwargs)
                self._floats[p] = p.detach().clone()
                p.copy_(stored)
                self._stored[p] = (None, stored)

    def _after_forward(self, module: nn.Module, args, output) -> None:
        for p in self.params:
            if not (torch.is_grad_enabled() and p.requires_grad):
                self._restore(p)

    @torch.no_grad()
    def _restore(self, p: torch.Tensor) -> None:
        stored_float = self._floats.pop(p, None)
        if stored_float is not None:
            p.copy_(stored_float)
            self._stored[p] = (p._version, self._stored[p][1])  # valid until the floats change
