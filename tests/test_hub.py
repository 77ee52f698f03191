"""push_to_hub / from_pretrained over the Hub protocol, model cards, timm interop, remote code."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import timm
import torch
from helpers import make_config
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError
from transformers import AutoModelForImageClassification

import csg_hub

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _repo(prefix="resnet18-csg"):
    return f"csg-test/{prefix}-{uuid.uuid4().hex[:8]}"


def _model(**overrides):
    labels = {i: f"class{i}" for i in range(10)}
    return csg_hub.CSGForImageClassification(make_config(id2label=labels, **overrides)).eval()


def _run_python(code: str, **env) -> str:
    """Run `code` in a fresh interpreter (no csg_hub imported unless the code does) with the suite's Hub env."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_push_and_pull_by_repo_id_and_revision(hub_server, pixel_values):
    repo = _repo()
    model = _model()
    first = model.push_to_hub(repo, results=[csg_hub.accuracy_result(12.5, "local/synthetic", num_samples=2)])
    assert sorted(HfApi().list_repo_files(repo)) == [".eval_results/local__synthetic.yaml", ".gitattributes",
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json"]  # fmt: skip

    loaded = AutoModelForImageClassification.from_pretrained(repo)
    assert type(loaded) is csg_hub.CSGForImageClassification
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    with torch.no_grad():
        assert torch.equal(model(pixel_values).logits, loaded(pixel_values).logits)

    # a second push changes the weights; the first commit's sha still loads the first weights
    with torch.no_grad():
        model.timm_model.fc.bias.add_(1.0)
    model.push_to_hub(repo)
    latest = csg_hub.CSGForImageClassification.from_pretrained(repo)
    assert torch.equal(latest.timm_model.fc.bias, model.timm_model.fc.bias)
    pinned = csg_hub.CSGForImageClassification.from_pretrained(repo, revision=first.oid)
    assert torch.equal(pinned.timm_model.fc.bias, loaded.timm_model.fc.bias)

    # a second load needs no network
    expected = loaded(pixel_values).logits.sum().item()
    out = _run_python(
        "import torch, csg_hub\n"
        "from transformers import AutoModelForImageClassification\n"
        f"m = AutoModelForImageClassification.from_pretrained({repo!r}, revision={first.oid!r})\n"
        "x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))\n"
        "print(m(x).logits.sum().item())\n",
        HF_HUB_OFFLINE="1",
        HF_ENDPOINT="http://127.0.0.1:9",  # nothing listens there: any request would fail
    )
    assert float(out.split()[-1]) == pytest.approx(expected, abs=1e-6)


def test_model_card_metadata_and_round_trip(hub_server):
    repo = _repo()
    model = _model()
    result = csg_hub.accuracy_result(91.37, "zalando-datasets/fashion_mnist", dataset_name="Fashion-MNIST")
    model.push_to_hub(repo, results=[result], training_command="python scripts/train.py --x", dense_baseline=93.0)
    card = ModelCard.load(repo)
    card.validate()  # the Hub's YAML validation endpoint
    assert card.data.library_name == "transformers" and card.data.license == "apache-2.0"
    assert {"csg", "resnet18"} <= set(card.data.tags) and "timm" not in card.data.tags  # timm cannot load it
    assert card.data.datasets == ["zalando-datasets/fashion_mnist"]
    (loaded,) = card.data.eval_results
    assert (loaded.dataset_type, loaded.dataset_split, loaded.metric_type, loaded.metric_value) == (
        "zalando-datasets/fashion_mnist",
        "test",
        "accuracy",
        91.37,
    )
    report = csg_hub.parameter_report(model)
    assert f"{report['stored_params']:,}" in card.text and f"{report['ratio']:.2f}x" in card.text
    assert "python scripts/train.py --x" in card.text and "Associative Convolutional Layers" in card.text
    size = HfApi().get_paths_info(repo, ["model.safetensors"])[0].size
    assert f"{size:,}" in card.text


def test_push_timm_loads_with_timm_and_transformers(hub_server, pixel_values):
    model = _model()
    with torch.no_grad():
        expected = model(pixel_values).logits
    repo = _repo("resnet18-dense")
    csg_hub.push_timm(model, repo)
    assert json.loads(Path(HfApi().hf_hub_download(repo, "config.json")).read_text())["num_classes"] == 10

    # a grey model is exported with an equivalent RGB stem (transformers feeds TimmWrapper RGB): same logits
    # on grey images given as 3 equal channels
    dense = timm.create_model(f"hf-hub:{repo}", pretrained=True).eval()
    assert dense.pretrained_cfg["input_size"] == (3, 32, 32)
    grey_rgb = pixel_values.expand(-1, 3, -1, -1)
    with torch.no_grad():
        torch.testing.assert_close(dense(grey_rgb), expected, atol=1e-5, rtol=0)
        wrapper = AutoModelForImageClassification.from_pretrained(repo).eval()
        assert type(wrapper).__name__ == "TimmWrapperForImageClassification"
        torch.testing.assert_close(wrapper(grey_rgb).logits, expected, atol=1e-5, rtol=0)
    assert wrapper.config.id2label[3] == "class3"

    # rgb_stem=False keeps the 1-channel input; and back: a CSG model built from the timm repo's
    # architecture, labels and preprocessing
    grey_repo = _repo("resnet18-dense-grey")
    csg_hub.push_timm(model, grey_repo, rgb_stem=False)
    grey = timm.create_model(f"hf-hub:{grey_repo}", pretrained=True).eval()
    assert grey.pretrained_cfg["input_size"] == (1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grey(pixel_values), expected, atol=1e-5, rtol=0)
    config = csg_hub.config_from_timm(grey_repo, code_dim=32)
    assert (config.architecture, config.in_chans, config.image_size, config.num_labels) == ("resnet18", 1, 32, 10)
    assert config.id2label[3] == "class3" and config.code_dim == 32
    assert csg_hub.CSGForImageClassification(config)(pixel_values).logits.shape == (2, 10)


def test_timm_own_push_loads_with_timm(hub_server, pixel_values):
    model = _model()
    repo = _repo("resnet18-timm-push")
    timm.models.push_to_hf_hub(model.to_timm(), repo, safe_serialization=True)
    dense = timm.create_model(f"hf-hub:{repo}", pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(dense(pixel_values), model(pixel_values).logits, atol=1e-5, rtol=0)


def test_remote_code_is_opt_in(hub_server, pixel_values):
    model = _model()
    with torch.no_grad():
        expected = model(pixel_values).logits.sum().item()
    plain, with_code, again = _repo(), _repo("resnet18-code"), _repo("resnet18-again")
    model.push_to_hub(plain)
    assert not [f for f in HfApi().list_repo_files(plain) if f.endswith(".py")]
    model.push_to_hub(with_code, include_code=True)
    files = HfApi().list_repo_files(with_code)
    assert {"modeling.py", "configuration.py", "generator.py", "reparameterize.py"} <= set(files)
    # csg_hub is never imported here: the repo's own code builds the model
    out = _run_python(
        "import sys, torch\n"
        "from transformers import AutoModelForImageClassification\n"
        f"m = AutoModelForImageClassification.from_pretrained({with_code!r}, trust_remote_code=True)\n"
        "x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))\n"
        "value = m(x).logits.sum().item()\n"
        # the remote code pushes with its own card too (the template travels as a module)
        f"m.push_to_hub({again!r})\n"
        # and the Hub widget's path works: pipeline with the repo's own image processor
        "import numpy as np\n"
        "from PIL import Image\n"
        "from transformers import pipeline\n"
        f"p = pipeline('image-classification', model={with_code!r}, trust_remote_code=True)\n"
        "image = Image.fromarray(np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3))\n"
        "top = p(image, top_k=1)[0]['label']\n"
        "x = p.image_processor(image, return_tensors='pt')['pixel_values']\n"
        "assert x.shape == (1, 1, 32, 32), x.shape\n"
        "assert top == m.config.id2label[int(m(x).logits.argmax())]\n"
        "assert 'csg_hub' not in sys.modules, 'csg_hub was imported'\n"
        "print(type(p.image_processor).__name__, type(m).__name__, value)\n"
    )
    processor, name, value = out.split()[-3:]
    assert processor == "CSGImageProcessor" and name == "CSGForImageClassification"
    assert float(value) == pytest.approx(expected, abs=1e-5)
    card = ModelCard.load(again)
    assert "## Compression" in str(card) and card.data.library_name == "transformers"


# --- bad input -----------------------------------------------------------------------------------


def test_unknown_repo_and_revision(hub_server):
    with pytest.raises(OSError, match="not a valid model identifier|does not exist|not found"):
        AutoModelForImageClassification.from_pretrained(f"csg-test/missing-{uuid.uuid4().hex[:8]}")
    repo = _repo()
    _model().push_to_hub(repo)
    with pytest.raises(OSError, match="revision|not a valid git identifier"):
        csg_hub.CSGForImageClassification.from_pretrained(repo, revision="0" * 40)


def test_file_missing_in_repo(hub_server):
    repo = _repo()
    _model().push_to_hub(repo)
    HfApi().delete_file("model.safetensors", repo)
    with pytest.raises(OSError, match="model.safetensors"):
        AutoModelForImageClassification.from_pretrained(repo)


def test_corrupt_downloaded_safetensors(hub_server):
    repo = _repo()
    _model().push_to_hub(repo)
    HfApi().upload_file(path_or_fileobj=b"\x00" * 100, path_in_repo="model.safetensors", repo_id=repo)
    with pytest.raises(csg_hub.CheckpointError, match="truncated or corrupt"):
        AutoModelForImageClassification.from_pretrained(repo)


def test_server_error_is_reported(hub_server):
    repo = _repo()
    _model().push_to_hub(repo)
    hub_server.fail_requests(status=500, count=100, path_contains=repo)
    try:
        with pytest.raises(Exception) as info:
            AutoModelForImageClassification.from_pretrained(repo, force_download=True)
    finally:
        hub_server.fail_requests(count=0)
    chain, error = [], info.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    http = [e for e in chain if isinstance(e, HfHubHTTPError)]
    assert http and http[0].response.status_code == 500 and "500" in str(http[0])
