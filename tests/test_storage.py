"""Reduced-precision checkpoints: fp16 / bf16 / int8 / packed int4 and int2 storage of codes and generators (or
every weight matrix), dequantized on load, with strict loading kept."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
from helpers import ARCHITECTURES, make_config

import csg_hub
from csg_hub.integrity import write_safetensors
from csg_hub.storage import GROUP_SCALE_SUFFIX, SCALE_SUFFIX, decode, encode, round_trip, stored_keys


def _model(**overrides) -> csg_hub.CSGForImageClassification:
    torch.manual_seed(0)
    return csg_hub.CSGForImageClassification(make_config("test_resnet", slice_size=8, code_dim=16, **overrides)).eval()


def test_int8_rows_round_trip_within_half_a_step():
    tensor = torch.randn(64, 16) * torch.logspace(-3, 1, 64)[:, None]  # rows of very different ranges
    stored = encode({"w": tensor}, ["w"], "int8")
    assert stored["w"].dtype == torch.int8 and stored["w" + SCALE_SUFFIX].shape == (64,)
    back = decode(stored, {"w": (64, 16)}, "int8")["w"]
    step = tensor.abs().amax(dim=1, keepdim=True) / 127
    assert ((back - tensor).abs() <= step / 2 + 1e-7).all()  # per-row scales: small rows stay precise
    zeros = decode(encode({"w": torch.zeros(3, 4)}, ["w"], "int8"), {"w": (3, 4)}, "int8")["w"]
    assert torch.equal(zeros, torch.zeros(3, 4))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8", "int4", "int2"])
@pytest.mark.parametrize("scope", ["csg", "all"])
def test_save_and_load_round_trip(tmp_path, pixel_values, dtype, scope):
    model = _model()
    model.config.storage_dtype, model.config.storage_scope = dtype, scope
    model.save_pretrained(tmp_path)
    header = safetensors.safe_open(tmp_path / "model.safetensors", "pt")
    keys = stored_keys(model, scope)
    expected = {"float16": "F16", "bfloat16": "BF16", "int8": "I8", "int4": "U8", "int2": "U8"}[dtype]
    assert keys and all(header.get_slice(k).get_dtype() == expected for k in keys)
    kept = [k for k in model.state_dict() if k not in keys and model.state_dict()[k].is_floating_point()]
    assert all(header.get_slice(k).get_dtype() == "F32" for k in kept)  # norms, biases, statistics
    if scope == "csg":
        assert not any("fc.weight" in k or "conv1.weight" == k.split("timm_model.")[-1] for k in keys)
    loaded = csg_hub.CSGForImageClassification.from_pretrained(tmp_path)
    assert loaded.config.storage_dtype == dtype and not loaded.training
    # the loaded weights are the stored ones, dequantized: equal to a round trip of the originals
    state = model.state_dict()
    expected_state = {k: round_trip(state[k], dtype) for k in keys}
    for key in keys:
        torch.testing.assert_close(loaded.state_dict()[key], expected_state[key], atol=0, rtol=0)
    for key in kept:
        assert torch.equal(loaded.state_dict()[key], state[key])
    with torch.no_grad():
        drift = (loaded(pixel_values).logits - model(pixel_values).logits).abs().max().item()
    assert 0 < drift < {"float16": 0.05, "bfloat16": 0.3, "int8": 0.3, "int4": 3, "int2": 10}[dtype]
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
        make_config(storage_dtype="int3")
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
    for dtype in ("float16", "bfloat16", "int8", "int4", "int2"):
        for group_size in (4, 64):
            encoded = encode(tensors, ["w", "v"], dtype, group_size)
            expected = {**stored_specs("w", (6, 4, 3, 3), dtype, group_size), **stored_specs("v", (5, 7), dtype, group_size)}
            assert {k: (t.dtype, tuple(t.shape)) for k, t in encoded.items()} == expected


# --- packed int4 / int2 ------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "bits"), [("int4", 4), ("int2", 2)])
def test_packed_round_trip_is_within_half_a_step_of_each_groups_grid(dtype, bits):
    torch.manual_seed(0)
    tensor = torch.randn(37, 29) * torch.logspace(-4, 1, 37)[:, None]  # 1073 values: the last group is partial
    stored = encode({"w": tensor}, ["w"], dtype, group_size=16)
    assert stored["w"].dtype == torch.uint8 and stored["w"].shape == (68, 16 * bits // 8)  # ceil(1073 / 16) groups
    scales = stored["w" + GROUP_SCALE_SUFFIX]
    assert scales.dtype == torch.float16 and scales.shape == (68,) and (scales > 0).all()
    back = decode(stored, {"w": (37, 29)}, dtype, group_size=16)["w"]
    assert back.shape == tensor.shape and back.dtype == torch.float32
    steps = scales.float().repeat_interleave(16)[: tensor.numel()].view_as(tensor)
    half = (2**bits - 1) / 2
    inside = tensor.abs() <= half * steps  # values the chosen scale clips are the only ones further away
    assert ((back - tensor).abs()[inside] <= steps[inside] / 2 * (1 + 1e-5)).all()
    assert ((back / steps + half) - torch.round(back / steps + half)).abs().max() < 1e-4  # on the grid
    # each group's own scale: a tiny group stays as precise, relative to its range, as a large one
    rows = (back - tensor).norm(dim=1) / tensor.norm(dim=1)
    assert rows.max() < {4: 0.15, 2: 0.6}[bits]
    # storing what was loaded stores the same bytes (the grid maps to itself)
    again = encode({"w": back}, ["w"], dtype, group_size=16)
    assert torch.equal(again["w"], stored["w"]) and torch.equal(again["w" + GROUP_SCALE_SUFFIX], scales)


def test_packed_bytes_hold_two_or_four_values_each():
    tensor = torch.tensor([[-1.0, -0.2, 0.2, 1.0] * 4])
    codes = encode({"w": tensor}, ["w"], "int2", group_size=16)["w"]
    assert codes.shape == (1, 4) and len(set(codes.flatten().tolist())) == 1  # the same 4 codes in every byte
    assert torch.equal(round_trip(torch.zeros(5, 3), "int4"), round_trip(torch.zeros(5, 3), "int4").abs())
    assert round_trip(torch.zeros(5, 3), "int4").abs().max() < 1e-7  # a group of zeros keeps a valid scale


@pytest.mark.parametrize("dtype", ["int4", "int2"])
def test_packed_size_table_and_ratio(tmp_path, dtype):
    from csg_hub.storage import storage_sizes

    model = _model(storage_dtype=dtype, storage_scope="all", storage_group_size=32)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").stat().st_size == storage_sizes(model)[f"{dtype}/all"]
    assert storage_sizes(model)[f"{dtype}/all"] < storage_sizes(model)["int8/all"] * {"int4": 0.75, "int2": 0.6}[dtype]
    assert json.loads((tmp_path / "config.json").read_text())["storage_group_size"] == 32


def _first(tensors: dict, suffix: str) -> str:
    return min(k for k in tensors if k.endswith(suffix))


def _set_scale(value: float):
    def change(t):
        key = max((k for k in t if k.endswith(GROUP_SCALE_SUFFIX)), key=lambda k: (t[k].numel(), k))
        t[key] = t[key].clone()
        t[key][2] = value

    return change


@pytest.mark.parametrize(
    "case,change,match",
    [
        ("scale NaN", _set_scale(float("nan")), r"not finite positive.*group_scale.*group 2: nan"),
        ("scale inf", _set_scale(float("inf")), r"not finite positive.*group 2: inf"),
        ("scale zero", _set_scale(0.0), r"not finite positive.*group 2: 0\)"),
        ("scale negative", _set_scale(-0.5), r"not finite positive.*group 2: -0\.5"),
        ("scale missing", lambda t: t.pop(_first(t, GROUP_SCALE_SUFFIX)), "without a valid float16 per-group"),
        ("scale in float32", lambda t: t.update({(k := _first(t, GROUP_SCALE_SUFFIX)): t[k].float()}),
         "without a valid float16 per-group"),
        ("packed tensor cut short", lambda t: t.update({(k := _first(t, ".codes")): t[k][:-1]}), "not stored as int4"),
        ("stored as int8", lambda t: t.update({(k := _first(t, ".codes")): t[k].to(torch.int8)}), "not stored as int4"),
        ("stored unpacked float", lambda t: t.update({_first(t, ".codes"): torch.zeros(4, 16)}),
         "not stored as int4"),
        ("int8 scale beside int4", lambda t: t.update({"timm_model.fc.weight" + SCALE_SUFFIX: torch.ones(10)}),
         "scales for tensors that are not stored as int4"),
    ],
)  # fmt: skip
def test_bad_packed_checkpoints_are_refused(tmp_path, case, change, match):
    _model(storage_dtype="int4").save_pretrained(tmp_path)
    _rewrite(tmp_path / "model.safetensors", change)
    with pytest.raises(csg_hub.CheckpointError, match=match):
        csg_hub.CSGForImageClassification.from_pretrained(tmp_path)


def test_config_with_another_group_size_is_refused(tmp_path):
    _model(storage_dtype="int4", storage_group_size=64).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "storage_group_size": 32}))
    with pytest.raises(csg_hub.CheckpointError, match=r"not stored as int4.*expected torch.uint8"):
        csg_hub.CSGForImageClassification.from_pretrained(tmp_path)


@pytest.mark.parametrize("group_size", [0, -8, 6])
def test_bad_group_sizes_are_refused(group_size):
    from huggingface_hub.errors import StrictDataclassClassValidationError

    with pytest.raises(StrictDataclassClassValidationError, match="storage_group_size must be a positive multiple of 4"):
        make_config(storage_dtype="int4", storage_group_size=group_size)
