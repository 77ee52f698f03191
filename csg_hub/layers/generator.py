"""The Convolutional Slice Generator: code vectors in, convolution filter slices out."""

from __future__ import annotations

import math

import torch
from timm.layers import get_act_layer
from torch import nn


class SliceGenerator(nn.Module):
    """Maps code vectors of length ``code_dim`` to filter slices of shape ``(S, S, kh, kw)``.

    The default is the paper's generator: one bias-free ``Linear(code_dim -> S*S*kh*kw)``.
    With ``hidden_dim > 0`` a hidden layer and an activation come first.

    Weights are initialised so that generated slices have unit variance when codes do;
    each generated layer rescales its filters to its own fan-in (see ``reparameterize``).
    """

    def __init__(
        self,
        code_dim: int,
        slice_size: int,
        kernel_size: tuple[int, int],
        hidden_dim: int = 0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.code_dim = code_dim
        self.slice_size = slice_size
        self.kernel_size = tuple(kernel_size)
        out_features = slice_size * slice_size * math.prod(self.kernel_size)
        if hidden_dim > 0:
            self.hidden = nn.Linear(code_dim, hidden_dim)
            self.act = get_act_layer(activation)()
            self.proj = nn.Linear(hidden_dim, out_features, bias=False)
        else:
            self.hidden = None
            self.act = None
            self.proj = nn.Linear(code_dim, out_features, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.proj.weight.is_meta:  # from_pretrained builds on the meta device: nothing to initialise
            return
        if self.hidden is not None:
            nn.init.kaiming_normal_(self.hidden.weight, nonlinearity="relu")
            nn.init.zeros_(self.hidden.bias)
        nn.init.normal_(self.proj.weight, std=self.proj.in_features**-0.5)

    def forward(self, codes: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``codes`` of shape ``(N, code_dim)`` -> slices of shape ``(N, S, S, kh, kw)``, times ``scale``."""
        x = codes
        if self.hidden is not None:
            x = self.act(self.hidden(x))
        if scale != 1.0:
            # the projection is linear and bias-free: scaling its input is scaling its output, on a tensor
            # S*S*kh*kw / code_dim times smaller (and the same in backward)
            x = x * scale
        x = self.proj(x)
        return x.view(-1, self.slice_size, self.slice_size, *self.kernel_size)

    def extra_repr(self) -> str:
        kh, kw = self.kernel_size
        return f"code_dim={self.code_dim}, slice={self.slice_size}x{self.slice_size}x{kh}x{kw}"
