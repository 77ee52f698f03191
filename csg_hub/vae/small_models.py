"""The weight-VAE paper's four small classifiers (Cheng et al., arXiv 2408.14513), for 1x28x28 images.

Each model records the name and keyword arguments it was built with (`model.spec`), so a compressed
copy can be rebuilt from JSON alone (`build_small_model(**spec)`).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from ..data import FASHION_MNIST_MEAN, FASHION_MNIST_STD

# What `csg_hub.data.fashion_mnist_loader` feeds these models, in the timm data-config format.
SMALL_MODEL_DATA_CONFIG = {"input_size": (1, 28, 28), "mean": FASHION_MNIST_MEAN, "std": FASHION_MNIST_STD}


class FNN(nn.Module):
    """Fully connected ReLU network; the paper's widths [784, 200, 100, 60, 30, 10] have 185,300 parameters."""

    def __init__(self, widths: tuple[int, ...] = (784, 200, 100, 60, 30, 10)) -> None:
        super().__init__()
        self.spec = {"name": "fnn", "kwargs": {"widths": list(widths)}}
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)


class SmallCNN(nn.Module):
    """Two 3x3 conv + max-pool stages and a two-layer head: 119,530 parameters by default (the paper's has 122,270;
    its exact layout is not published)."""

    def __init__(self, channels: tuple[int, int] = (32, 64), hidden: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.spec = {
            "name": "cnn",
            "kwargs": {"channels": list(channels), "hidden": hidden, "num_classes": num_classes},
        }
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixel_values))


class RowSequenceClassifier(nn.Module):
    """A 2-layer RNN or LSTM reading the image's rows as time steps, then a linear head on the last step.

    With hidden size 128 the RNN has 54,538 parameters and the LSTM 214,282, as in the paper.
    """

    def __init__(self, cell: str = "lstm", hidden: int = 128, num_layers: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        if cell not in ("rnn", "lstm"):
            raise ValueError(f"cell must be 'rnn' or 'lstm', got {cell!r}.")
        self.spec = {"name": cell, "kwargs": {"hidden": hidden, "num_layers": num_layers, "num_classes": num_classes}}
        recurrent = nn.RNN if cell == "rnn" else nn.LSTM
        self.rnn = recurrent(28, hidden, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        rows = pixel_values.reshape(pixel_values.shape[0], 28, 28)
        out, _ = self.rnn(rows)
        return self.head(out[:, -1])


SMALL_MODELS = {
    "fnn": FNN,
    "cnn": SmallCNN,
    "rnn": lambda **kw: RowSequenceClassifier("rnn", **kw),
    "lstm": lambda **kw: RowSequenceClassifier("lstm", **kw),
}


def build_small_model(name: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """One of the paper's small models by name (`fnn`, `cnn`, `rnn`, `lstm`), randomly initialised."""
    if name not in SMALL_MODELS:
        raise ValueError(f"Unknown small model {name!r}; choose one of {sorted(SMALL_MODELS)}.")
    kwargs = dict(kwargs or {})
    for key in ("widths", "channels"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    return SMALL_MODELS[name](**kwargs)
