import os
import socket
import tempfile
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# huggingface_hub reads these at import time, so they are set before anything imports it (helpers.py
# imports csg_hub, so it comes after): every Hub call in the suite goes to the Hub-protocol server below,
# with a cache of its own and no Xet.
os.environ.update(
    HF_ENDPOINT=f"http://127.0.0.1:{_free_port()}",
    HF_HOME=tempfile.mkdtemp(prefix="csg-hf-home-"),
    HF_HUB_DISABLE_XET="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_TOKEN="test-token",
    # transformers otherwise asks a Hub Space to convert pickles when model.safetensors is missing
    DISABLE_SAFETENSORS_CONVERSION="1",
)
os.environ.pop("HF_HUB_OFFLINE", None)

import pytest
import torch
from helpers import HUB_PORT  # after the environment above: it reads HF_ENDPOINT


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    """A Hub-protocol server on 127.0.0.1 that `HF_ENDPOINT` points at for the whole session."""
    from csg_hub.testing.hub_server import HubServer

    server = HubServer(root=Path(tmp_path_factory.mktemp("hub")), port=HUB_PORT)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pixel_values() -> torch.Tensor:
    return torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
