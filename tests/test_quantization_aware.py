"""Quantization-aware training: forward passes see the stored values, the float weights take the updates, and
the saved model holds exactly the weights the last evaluation used."""

from __future__ import annotations

import pytest
import torch
from helpers import make_config

import csg_hub
from csg_hub.storage import round_trip, stored_keys
from csg_hub.training import QuantizationAware


def _model(dtype: str = "int4") -> csg_hub.CSGForImageClassification:
    torch.manual_seed(0)
    config = make_config("test_resnet", slice_size=8, code_dim=16, storage_dtype=dtype, storage_scope="all",
                         storage_group_size=32)  # fmt: skip
    return csg_hub.CSGForImageClassification(config)


@pytest.mark.parametrize("dtype", ["int4", "int2", "int8"])
def test_evaluation_under_qat_equals_the_saved_and_loaded_model(tmp_path, pixel_values, dtype):
    model = _model(dtype).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with QuantizationAware(model), torch.no_grad():
        seen = model(pixel_values).logits
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # floats back after the forward
    model.save_pretrained(tmp_path)
    with torch.no_grad():
        loaded = csg_hub.CSGForImageClassification.from_pretrained(tmp_path)(pixel_values).logits
        plain = model(pixel_values).logits
    torch.testing.assert_close(seen, loaded, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(seen, plain, atol=1e-4)  # the stored values differ from the floats


def test_gradients_are_taken_at_the_stored_values_and_applied_to_the_floats(pixel_values):
    model = _model().train()
    keys = stored_keys(model, "all")
    floats = {k: model.get_parameter(k).detach().clone() for k in keys}
    # the reference: the same step on a copy that holds the stored values
    reference = _model().train()
    with torch.no_grad():
        for k in keys:
            reference.get_parameter(k).copy_(round_trip(floats[k], "int4", 32))
    reference(pixel_values).logits.square().mean().backward()
    with QuantizationAware(model):
        model(pixel_values).logits.square().mean().backward()
        for k in keys:
            param = model.get_parameter(k)
            assert torch.equal(param.detach(), floats[k])  # the optimizer will see the floats...
            torch.testing.assert_close(param.grad, reference.get_parameter(k).grad)  # ...and the stored values' grad
        torch.optim.SGD(model.parameters(), lr=0.1).step()
    moved = model.get_parameter(keys[0]).detach()
    torch.testing.assert_close(moved, floats[keys[0]] - 0.1 * reference.get_parameter(keys[0]).grad)
    assert not model._forward_pre_hooks and not model._forward_hooks  # the context removed its hooks


def test_two_forwards_before_a_backward_keep_the_floats(pixel_values):
    model = _model().train()
    key = stored_keys(model, "all")[0]
    float_value = model.get_parameter(key).detach().clone()
    with QuantizationAware(model):
        loss = model(pixel_values).logits.sum() + model(pixel_values).logits.sum()
        loss.backward()
        assert torch.equal(model.get_parameter(key).detach(), float_value)


def test_qat_needs_a_reduced_storage_dtype():
    with pytest.raises(ValueError, match="needs a reduced storage dtype"):
        QuantizationAware(_model("float32"))


def test_an_evaluation_rounds_the_floats_once_and_an_update_rounds_them_again(pixel_values, monkeypatch):
    import csg_hub.training.quantization_aware as qat

    calls = []
    monkeypatch.setattr(qat, "round_trip", lambda *a, **k: calls.append(1) or round_trip(*a, **k))
    model = _model().eval()
    n = len(stored_keys(model, "all"))
    with QuantizationAware(model), torch.no_grad():
        first = model(pixel_values).logits
        second = model(pixel_values).logits  # the same floats: the stored values are reused
        assert len(calls) == n and torch.equal(first, second)
        model.get_parameter(stored_keys(model, "all")[0]).add_(0.01)  # the floats changed: that one is redone
        model(pixel_values)
        assert len(calls) == n + 1
