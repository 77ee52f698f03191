import json

import pytest
import torch
from helpers import ARCHITECTURES, make_config
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification
from transformers.modeling_outputs import ImageClassifierOutput

import csg_hub


def _saved(tmp_path, architecture="resnet18", **overrides):
    model = csg_hub.CSGForImageClassification(make_config(architecture, **overrides)).eval()
    model.save_pretrained(tmp_path)
    return model


def _file_tensors(path):
    return load_file(path / "model.safetensors")


# the round trips of resnet18/50 and densenet121 under the default policy take 2-6 s each: the slow tier
ROUND_TRIPS = [
    pytest.param(a, o, marks=pytest.mark.slow) if a in ("resnet18", "resnet50", "densenet121") and not o else (a, o)
    for a, o in ARCHITECTURES
]


@pytest.mark.parametrize(("architecture", "overrides"), ROUND_TRIPS)
def test_save_load_round_trip(tmp_path, architecture, overrides, pixel_values):
    model = _saved(tmp_path, architecture, **overrides)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    assert type(loaded) is csg_hub.CSGForImageClassification

    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    with torch.no_grad():
        assert torch.equal(model(pixel_values).logits, loaded(pixel_values).logits)

    # Only generator, codes and non-generated layers are stored.
    tensors = _file_tensors(tmp_path)
    generated = {f"timm_model.{name}.weight" for name, _ in csg_hub.generated_convs(model.timm_model)}
    assert generated and not generated & tensors.keys()
    assert any(k.startswith("timm_model.csg_generators.") for k in tensors)

    # The report counts exactly what the file holds.
    report = csg_hub.parameter_report(loaded)
    assert report["stored_params"] + report["stored_buffers"] == sum(t.numel() for t in tensors.values())
    params = {n for n, _ in loaded.named_parameters()}
    assert report["stored_params"] == sum(t.numel() for k, t in tensors.items() if k in params)


def test_resnet18_default_stores_5x_fewer_parameters():
    report = csg_hub.parameter_report(csg_hub.CSGForImageClassification(make_config()))
    assert report["ratio"] >= 5
    assert report["generated_layers"] == 16 and report["dense_layers"] == 4
    b = report["breakdown"]
    assert b["generator"] == 93_312 and b["classifier"] == 512 * 10 + 10
    assert b["dense_convs"] == 7 * 7 * 64 + 64 * 128 + 128 * 256 + 256 * 512


def test_plain_timm_model_reports_ratio_one():
    import timm

    report = csg_hub.parameter_report(timm.create_model("resnet18", num_classes=10))
    assert report["ratio"] == 1 and report["generated_layers"] == 0


def test_forward_outputs_and_loss(pixel_values):
    model = csg_hub.CSGForImageClassification(make_config())
    out = model(pixel_values, labels=torch.tensor([3, 4]))
    assert isinstance(out, ImageClassifierOutput)
    assert out.logits.shape == (2, 10) and out.loss.ndim == 0
    assert model(pixel_values).loss is None
    assert model(pixel_values, return_dict=False)[0].shape == (2, 10)


def test_auto_classes_and_headless_model(tmp_path, pixel_values):
    config = make_config(id2label={i: f"c{i}" for i in range(10)})
    assert isinstance(AutoConfig.for_model("csg"), csg_hub.CSGConfig)
    model = csg_hub.CSGForImageClassification(config)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "csg" and saved["architecture"] == "resnet18"
    assert AutoConfig.from_pretrained(tmp_path).id2label[3] == "c3"
    backbone = AutoModel.from_pretrained(tmp_path)
    assert type(backbone) is csg_hub.CSGModel
    out = backbone(pixel_values)
    assert out.pooler_output.shape == (2, 512) and out.last_hidden_state.shape[:2] == (2, 512)
    # the headless model's backbone tensors are the classifier's
    assert torch.equal(backbone.timm_model.layer1[0].conv1.codes, model.timm_model.layer1[0].conv1.codes)


# --- bad input: each a clear error, never a silently re-initialised model ---------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"code_dim": 0}, "code_dim must be a positive integer"),
        ({"slice_size": -12}, "slice_size must be a positive integer"),
        ({"generator_hidden_dim": -1}, "generator_hidden_dim must be >= 0"),
        ({"generator_activation": "nope"}, "generator_activation 'nope' is unknown"),
        ({"image_mean": [0.1, 0.2]}, "image_mean has 2 values but in_chans is 1"),
        ({"architecture": "resnet181"}, "Unknown timm architecture 'resnet181'.*resnet18"),
    ],
)
def test_invalid_config_values(overrides, message):
    with pytest.raises(Exception, match=message):
        make_config(**overrides)


def test_checkpoint_shapes_disagreeing_with_config(tmp_path):
    _saved(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["code_dim"] = 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(csg_hub.CheckpointError, match="does not fit this config.*codes.*72.*64"):
        AutoModelForImageClassification.from_pretrained(tmp_path)


def test_checkpoint_missing_tensors(tmp_path):
    _saved(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["generate_pointwise"] = True  # now the 1x1 downsamples need codes the file lacks
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(csg_hub.CheckpointError, match="lacks 4 tensor"):
        csg_hub.CSGForImageClassification.from_pretrained(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_safetensors(tmp_path, damage):
    _saved(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\xff" * 64)
    with pytest.raises(csg_hub.CheckpointError, match="truncated or corrupt"):
        AutoModelForImageClassification.from_pretrained(tmp_path)


def test_missing_checkpoint_file(tmp_path):
    _saved(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(OSError, match="model.safetensors"):
        AutoModelForImageClassification.from_pretrained(tmp_path)
    with pytest.raises(OSError):
        AutoModelForImageClassification.from_pretrained(tmp_path / "nowhere")


def test_pickle_checkpoints_are_never_loaded(tmp_path):
    model = _saved(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError, match="model.safetensors"):
        csg_hub.CSGForImageClassification.from_pretrained(tmp_path)
