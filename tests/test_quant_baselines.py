"""scripts/quant_baselines.py's pieces on a tiny timm model: the bytes it reports are the saved file's size, and
the model reloaded from that file is the quantized model (close to fp32, not equal to it)."""

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "quant_baselines.py"


def _script():
    spec = importlib.util.spec_from_file_location("quant_baselines", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny():
    import timm

    torch.manual_seed(0)
    return timm.create_model("test_resnet", num_classes=3, in_chans=1).eval()


def _round_trip(qb, library: str, bits: int, group, tmp_path):
    quantize = qb.quanto_quantize if library == "quanto" else qb.torchao_quantize
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    model = _tiny()
    with torch.no_grad():
        reference = model(x)
    groups = quantize(model, bits, group)
    if library == "quanto":
        qb.quanto_freeze(model)
    path = tmp_path / "q.safetensors"
    breakdown = qb.save_state(model, path, library)
    fresh = _tiny()
    quantize(fresh, bits, group)
    if library == "quanto":
        qb.quanto_freeze(fresh)
    fresh = qb.load_state(fresh, path, library)
    with torch.no_grad():
        quantized, reloaded = model(x), fresh(x)
    return reference, quantized, reloaded, breakdown, path, groups


def test_quanto_bytes_are_the_file_and_the_file_is_the_model(tmp_path):
    import optimum.quanto  # noqa: F401  (the baselines extra, which `make test` installs: a missing one fails)
    qb = _script()
    reference, quantized, reloaded, breakdown, path, groups = _round_trip(qb, "quanto", 4, None, tmp_path)
    assert sum(breakdown.values()) == path.stat().st_size and breakdown["header"] > 0
    assert torch.equal(quantized, reloaded)  # what was measured is what the file holds
    assert not torch.equal(quantized, reference)
    assert torch.allclose(quantized, reference, atol=0.5 * reference.abs().max().item())
    fp32_weights = sum(m.weight.numel() * 4 for m in _tiny().modules() if qb._is_weight_layer(m))
    # packed 4-bit values: an eighth of the fp32 weight bytes, scales and shifts apart
    assert breakdown["quantized_weights"] == pytest.approx(fp32_weights / 8, rel=0.02)
    assert set(groups.values()) <= {"axis", 128, 96, 64, 32}
    # a group size set per module (quanto's API takes none) is the one stored: more groups, more scales
    (tmp_path / "g32").mkdir()
    finer = _round_trip(qb, "quanto", 4, "32", tmp_path / "g32")
    assert finer[3]["scales_shifts"] > breakdown["scales_shifts"] and torch.equal(finer[1], finer[2])


def test_torchao_bytes_are_the_file_and_the_file_is_the_model(tmp_path):
    import torchao  # noqa: F401  (the baselines extra, which `make test` installs: a missing one fails)
    qb = _script()
    reference, quantized, reloaded, breakdown, path, groups = _round_trip(qb, "torchao", 4, "8", tmp_path)
    assert sum(breakdown.values()) == path.stat().st_size
    assert torch.equal(quantized, reloaded) and not torch.equal(quantized, reference)
    assert torch.allclose(quantized, reference, atol=0.5 * reference.abs().max().item())
    assert "conv1.0" not in groups  # the 1-channel stem cannot be grouped: it stays float


def test_storage_label():
    qb = _script()
    assert qb.storage_label(4, {"a": 128, "b": 128, "c": "axis"}, []) == "int4/g128+axis"
    assert qb.storage_label(8, {"a": "axis"}, []) == "int8/axis"
    assert qb.storage_label(4, {"a": 64}, ["conv1"]) == "int4/g64+fp32-conv1"


def test_schemes_are_checked():
    qb = _script()
    assert qb.parse_args(["--schemes", "quanto-int2-g32-hqq", "torchao-int4-gaxis"]).schemes[0] == "quanto-int2-g32-hqq"
    for bad in (["--schemes", "quanto-int8-g64"], ["--schemes", "torchao-int4-hqq"], ["--schemes", "quanto-int3"],
                ["--schemes", "torchao-int4", "--qat-epochs", "1"]):  # fmt: skip
        with pytest.raises(SystemExit):
            qb.parse_args(bad)
