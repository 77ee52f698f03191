import pytest
import torch

import csg_hub


def make_config(architecture: str = "resnet18", **overrides) -> csg_hub.CSGConfig:
    """A 1-channel, 10-class config for tiny synthetic inputs."""
    kwargs = {"architecture": architecture, "in_chans": 1, "num_labels": 10, "image_size": 32, **overrides}
    return csg_hub.CSGConfig(**kwargs)


ALL_CONVS = {"generate_pointwise": True, "generate_grouped": True}


@pytest.fixture
def pixel_values() -> torch.Tensor:
    return torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
