"""Shared non-fixture helpers of the test suite (`from helpers import ...`; pytest puts tests/ on sys.path).

The Hub environment (`HF_ENDPOINT` and the rest) is set up by conftest.py before anything imports
huggingface_hub; `HUB_PORT` is read back from it here.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import csg_hub

_endpoint = urlparse(os.environ.get("HF_ENDPOINT", ""))
if _endpoint.hostname != "127.0.0.1" or _endpoint.port is None:
    raise RuntimeError(
        "tests/helpers.py expects conftest.py's environment (HF_ENDPOINT=http://127.0.0.1:<port>); "
        f"got HF_ENDPOINT={os.environ.get('HF_ENDPOINT')!r}. Run the tests with pytest."
    )
# the port of the session's Hub-protocol server (conftest's `hub_server` fixture)
HUB_PORT: int = _endpoint.port


def make_config(architecture: str = "resnet18", **overrides) -> csg_hub.CSGConfig:
    """A 1-channel, 10-class config for tiny synthetic inputs."""
    kwargs = {"architecture": architecture, "in_chans": 1, "num_labels": 10, "image_size": 32, **overrides}
    return csg_hub.CSGConfig(**kwargs)


ALL_CONVS = {"generate_pointwise": True, "generate_grouped": True}
# The families every CSG feature is checked on, with the policy each is checked under.
ARCHITECTURES = [
    ("resnet18", {}),
    ("resnet50", {}),
    ("densenet121", {}),
    ("efficientnet_b0", ALL_CONVS),
    ("convnext_atto", {}),
    ("resnet18", {**ALL_CONVS, "generator_hidden_dim": 64}),
]
