"""Reduced-precision checkpoints: fp16 / bf16 / int8 storage of codes and generators (or every weight
matrix), dequantized on load, with strict loading kept."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
from helpers import ARCHITECTURES, make_config

import csg_hub
from csg_hub.integrity import write_safetensors
from csg_hub.storage import SCALE_SUFFIX, decode, encode, stored_keys


def _model(**overrides) -> csg_hub.CSGForImageClassification:
    torch.manual_seed(0)
    return csg_hub.CSGForImageClassification(make_config("test_resnet", slice_size=8, code_dim=16, **overrides)).eval()


def test_int8_rows_round_trip_within_half_a_step():
    tensor = torch.randn(64, 16) * torch.logspace(-3, 1, 64)[:, None]  # rows of very different ranges
    stored = encode({"w": tensor}, ["w"], "int8")
    assert stored["w"].dtype == torch.int8 and stored["w" + SCALE_SUFFIX].shape == (64,)
    back = decode(stored, ["w"], "int8")["w"]
    step = tensor.abs().amax(dim=1, keepdim=True) / 127
    assert ((back - tensor).abs() <= step / 2 + 1e-7).all()  # per-row scales: small rows stay precise
    zeros = decode(encode({"w": torch.zeros(3, 4)}, ["w"], "int8"), ["w"], "int8")["w"]
    assert torch.equal(zeros, torch.zeros(3, 4))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8"])
@pytest.mark.parametrize("scope", ["csg", "all"])
def test_save_and_load_round_trip(tmp_path, pixel_values, dtype, scope):
    model = _model()
    model.config.storage_dtype, model.config.storage_scope = dtype, scope
    model.save_pretrained(tmp_path)
    header = safetensors.safe_open(tmp_path / "model.safetensors", "pt")
    keys = stored_keys(model, scope)
    expected = {"float16": "F16", "bfloat16": "BF16", "int8": "I8"}[dtype]
    assert keys and all(header.get_slice(k).get_dtype() == expected for k in keys)
    kept = [k for k in model.state_dict() if k not in keys and model.state_dict()[k].is_floating_point()]
    assert all(header.get_slice(k).get_dtype() == "F32" for k in kept)  # norms, biases, statistics
    if scope == "csg":
        assert not any("fc.weight" in k or "conv1.weight" == k.split("timm_model.")[-1] for k in keys)
    loaded = csg_hub.CSGForImageClassification.from_pretrained(tmp_path)
    assert loaded.config.storage_dtype == dtype and not loaded.training
    # the loaded weights are the stored ones, dequantized: equal to a round trip of the originals
    state = model.state_dict()
    expected_state = decode(encode({k: state[k] for k in keys}, keys, dtype), keys, dtype)
    for key in keys:
        torch.testing.assert_close(loaded.state_dict()[key], expected_state[key], atol=0, rtol=0)
    for key in kept:
        assert torch.equal(loaded.state_dict()[key], state[key])
    with torch.no_grad():
        drift = (loaded(pixel_values).logits - model(pixel_values).logits).abs().max().item()
    assert drift < {"float16": 0.05, "bfloat16": 0.3, "int8": 0.3}[dtype]
    # saving the loaded model again stores the same bytes of data
    loaded.save_pretrained(tmp_path / "again")
    again = safetensors.torch.load_file(tmp_path / "again" / "model.safetensors")
    first = safetensors.torch.load_file(tmp_path / "model.safetensors")
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)


def test_int8_checkpoint_is_smaller(tmp_path):
    sizes = {}
    for dtype in ("float32", "float16", "int8"):
        model = _model(storage_dtype=dtype, storage_scope="all")
        model.save_pretrained(tmp_path / dtype)
        sizes[dtype] = (tmp_path / dtype / "model.safetensors").stat().st_size
    assert sizes["int8"] < 0.4 * sizes["float32"] and sizes["float16"] < 0.6 * sizes["float32"]


def _rewrite(path, change) -> None:
    """Change the stored tensors as a careful editor would: a consistent file, and config.json bound to it (so that
    what is tested is the storage checks, not the folder binding)."""
    tensors = safetensors.torch.load_file(path)
    change(tensors)
    crc = write_safetensors(path, tensors)
    config = path.parent / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "weights_crc32": crc}))


@pytest.mark.parametrize(
    "case,change,match",
    [
        ("scale missing", lambda t: t.pop(next(k for k in t if k.endswith(SCALE_SUFFIX))), "without a valid float32"),
        ("scale of the wrong shape",
         lambda t: t.update({(k := next(k for k in t if k.endswith(SCALE_SUFFIX))): t[k][:1]}), "without a valid"),
        ("stored as float", lambda t: t.update({(k := next(k for k in t if k.endswith(".codes"))): t[k].float()}),
         "not stored as int8"),
        ("stray scale", lambda t: t.update({"timm_model.fc.weight" + SCALE_SUFFIX: torch.ones(10)}), "not stored as int8"),
        ("missing tensor", lambda t: t.pop("timm_model.fc.weight"), "lacks 1 tensor"),
        ("int8 where float belongs", lambda t: t.update({"timm_model.fc.weight": t["timm_model.fc.weight"].to(torch.int8)}),
         "wrong kind of number"),
    ],
)  # fmt: skip
def test_bad_int8_checkpoints_are_refused(tmp_path, case, change, match):
    _model(storage_dtype="int8").save_pretrained(tmp_path)
    _rewrite(tmp_path / "model.safetensors", change)
    with pytest.raises(csg_hub.CheckpointError, match=match):
        csg_hub.CSGForImageClassification.from_pretrained(tmp_path)


def test_config_that_claims_another_storage_is_refused(tmp_path):
    _model().save_pretrained(tmp_path)  # float32 data
    config = json.loads((tmp_path / "config.json").read_text())
    config["storage_dtype"] = "int8"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(csg_hub.CheckpointError, match="storage_dtype 'int8'.*not stored as int8"):
        csg_hub.CSGForImageClassification.from_pretrained(tmp_path)


def test_bad_storage_settings_are_refused():
    from huggingface_hub.errors import StrictDataclassClassValidationError

    with pytest.raises(StrictDataclassClassValidationError, match="storage_dtype must be one of"):
        make_config(storage_dtype="int4")
    with pytest.raises(StrictDataclassClassValidationError, match="storage_scope must be one of"):
        make_config(storage_scope="dense")


@pytest.mark.parametrize("architecture", ["test_resnet", "resnet18"])
def test_storage_table_equals_real_saves_without_touching_the_model(tmp_path, architecture):
    from csg_hub.configuration import STORAGE_DTYPES, STORAGE_SCOPES
    from csg_hub.storage import storage_sizes

    model = _model() if architecture == "test_resnet" else csg_hub.CSGForImageClassification(
        make_config("resnet18", slice_size=8, code_dim=16, generate_pointwise=True))  # fmt: skip
    before = model.config.to_json_string()
    table = storage_sizes(model)
    assert model.config.to_json_string() == before  # computed from shapes: the config is never changed
    measured = {}
    for dtype in STORAGE_DTYPES:
        for scope in STORAGE_SCOPES if dtype != "float32" else ("csg",):
            twin = csg_hub.CSGForImageClassification(model.config.__class__.from_dict(
                {**model.config.to_dict(), "storage_dtype": dtype, "storage_scope": scope}))  # fmt: skip
            twin.load_state_dict(model.state_dict())
            twin.save_pretrained(tmp_path / f"{dtype}-{scope}")
            measured[dtype if dtype == "float32" else f"{dtype}/{scope}"] = (
                tmp_path / f"{dtype}-{scope}" / "model.safetensors"
            ).stat().st_size
    assert table == measured


@pytest.mark.parametrize(("architecture", "overrides"), ARCHITECTURES)
def test_macs_are_counted_without_copying_and_equal_the_flop_counter(architecture, overrides):
    from torch.utils.flop_counter import FlopCounterMode

    from csg_hub.report import inference_macs

    model = csg_hub.CSGForImageClassification(make_config(architecture, **overrides)).train()
    dense = model.to_timm().eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        dense(torch.zeros(1, 1, 32, 32))
    assert inference_macs(model, (1, 32, 32)) == counter.get_total_flops() // 2 > 0
    assert model.training  # the caller's mode is restored


def test_every_stored_tensor_has_the_specs_the_size_table_assumes():
    from csg_hub.storage import stored_specs

    tensors = {"w": torch.randn(6, 4, 3, 3), "v": torch.randn(5, 7)}
    for dtype in ("float16", "bfloat16", "int8"):
        encoded = encode(tensors, ["w", "v"], dtype)
        expected = {**stored_specs("w", (6, 4, 3, 3), dtype), **stored_specs("v", (5, 7), dtype)}
        assert {k: (t.dtype, tuple(t.shape)) for k, t in encoded.items()} == expected
