import copy
import math
import sys

import pytest
import timm
import torch
from helpers import ALL_CONVS, ARCHITECTURES, make_config
from torch import nn

import csg_hub
from csg_hub.layers.reparameterize import AssembleFilters, GeneratedConv, kernel_key


def test_generator_default_is_the_papers_single_linear():
    gen = csg_hub.SliceGenerator(code_dim=72, slice_size=12, kernel_size=(3, 3))
    params = dict(gen.named_parameters())
    assert list(params) == ["proj.weight"]
    assert params["proj.weight"].shape == (12 * 12 * 9, 72)  # 93,312 parameters, as in the paper
    assert gen(torch.randn(5, 72)).shape == (5, 12, 12, 3, 3)


def test_generator_hidden_layer_option():
    gen = csg_hub.SliceGenerator(code_dim=16, slice_size=4, kernel_size=(3, 3), hidden_dim=32, activation="gelu")
    assert type(gen.act).__name__ == "GELU"
    slices = gen(torch.randn(1000, 16))
    assert slices.shape == (1000, 4, 4, 3, 3)
    assert 0.5 < slices.std().item() < 2.0  # unit-variance initialisation


@pytest.mark.parametrize("hidden_dim", [0, 16])
def test_generator_scale_scales_the_slices(hidden_dim):
    # the fan-in scale is applied to the projection's input: the same slices as scaling its output
    gen = csg_hub.SliceGenerator(code_dim=8, slice_size=4, kernel_size=(3, 3), hidden_dim=hidden_dim).double()
    codes = torch.randn(5, 8, dtype=torch.float64)
    torch.testing.assert_close(gen(codes, 0.3), 0.3 * gen(codes))


def test_default_policy_resnet18_generates_3x3_only():
    model = csg_hub.CSGForImageClassification(make_config())
    net = model.timm_model
    generated = dict(csg_hub.generated_convs(net))
    assert len(generated) == 16
    assert all(tuple(m.kernel_size) == (3, 3) for m in generated.values())
    assert list(net.csg_generators) == ["3x3"]
    assert net.csg_skipped["conv1"].startswith("stem")
    assert "1x1" in net.csg_skipped["layer2.0.downsample.0"]
    conv = generated["layer4.1.conv2"]
    assert "weight" not in conv._parameters
    assert conv.codes.shape == (math.ceil(512 / 12) ** 2, 72)
    assert conv.weight.shape == (512, 512, 3, 3)


def test_generated_filters_are_he_scaled():
    net = csg_hub.CSGForImageClassification(make_config()).timm_model
    conv = dict(csg_hub.generated_convs(net))["layer4.1.conv2"]
    std = conv.weight.std().item()
    assert std == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.1)


def test_policy_options_pointwise_grouped_stem_and_patterns():
    net = csg_hub.CSGForImageClassification(make_config("efficientnet_b0", **ALL_CONVS)).timm_model
    generated = dict(csg_hub.generated_convs(net))
    assert "blocks.1.0.conv_dw" in generated and generated["blocks.1.0.conv_dw"].groups > 1
    assert "blocks.1.0.conv_pw" in generated
    assert set(net.csg_generators) == {"1x1", "3x3", "5x5"}
    assert net.csg_generators["1x1"].slice_size == 36
    assert "conv_stem" not in generated

    net = csg_hub.CSGForImageClassification(
        make_config(include=["layer3.*", "layer4.*"], exclude=["layer4.1.*"], generate_stem=True)
    ).timm_model
    names = set(dict(csg_hub.generated_convs(net)))
    assert names == {
        "layer3.0.conv1",
        "layer3.0.conv2",
        "layer3.1.conv1",
        "layer3.1.conv2",
        "layer4.0.conv1",
        "layer4.0.conv2",
    }
    assert net.csg_skipped["layer4.1.conv1"] == "matched by exclude"
    assert net.csg_skipped["layer1.0.conv1"] == "not matched by include"


def test_unsupported_convs_are_left_dense_with_a_reason():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3)
            self.conv = nn.Conv2d(8, 8, 3)
            self.up = nn.ConvTranspose2d(8, 8, 3)
            self.seq = nn.Conv1d(8, 8, 3)

    net = csg_hub.reparameterize(Net(), make_config())
    assert set(dict(csg_hub.generated_convs(net))) == {"conv"}
    assert "ConvTranspose2d" in net.csg_skipped["up"]
    assert "Conv1d" in net.csg_skipped["seq"]
    assert net.csg_skipped["stem"].startswith("stem")
    with pytest.raises(ValueError, match="already in CSG form"):
        csg_hub.reparameterize(net, make_config())


def test_reparameterize_keeps_custom_conv_forward():
    # timm's same-padding conv subclasses nn.Conv2d with its own forward; it must keep it.
    net = timm.create_model("tf_efficientnet_b0", in_chans=1, num_classes=10, pretrained=False)
    csg_hub.reparameterize(net, make_config("tf_efficientnet_b0", **ALL_CONVS))
    gen = dict(csg_hub.generated_convs(net))
    assert type(gen["blocks.1.0.conv_dw"]).__name__ == "GeneratedConv2dSame"
    net.eval()
    x = torch.randn(1, 1, 33, 33)
    dense = csg_hub.materialize(net).eval()
    assert type(dense.blocks[1][0].conv_dw).__name__ == "Conv2dSame"
    torch.testing.assert_close(net(x), dense(x), atol=1e-5, rtol=0)


def test_gradients_reach_only_generator_codes_and_dense_layers(pixel_values):
    # timm zero-initialises each block's last norm, which would zero every conv gradient at step 0.
    model = csg_hub.CSGForImageClassification(make_config(model_args={"zero_init_last": False})).train()
    loss = model(pixel_values, labels=torch.tensor([1, 2])).loss
    loss.backward()
    params = dict(model.named_parameters())
    assert not any(
        n.endswith(".weight") and p.ndim == 4 and n.split(".")[-2] in {"conv1", "conv2"} and "layer" in n
        for n, p in params.items()
    )
    missing = [n for n, p in params.items() if p.grad is None]
    assert missing == []
    gen_grad = model.timm_model.csg_generators["3x3"].proj.weight.grad
    assert gen_grad.abs().sum() > 0
    for _, conv in csg_hub.generated_convs(model):
        assert conv.codes.grad is not None and conv.codes.grad.abs().sum() > 0


@pytest.mark.parametrize("hidden_dim", [0, 16])
def test_eval_cache_follows_parameter_updates(pixel_values, hidden_dim):
    config = make_config(model_args={"zero_init_last": False}, generator_hidden_dim=hidden_dim)
    model = csg_hub.CSGForImageClassification(config).eval()
    conv = dict(csg_hub.generated_convs(model.timm_model))["layer1.0.conv1"]
    with torch.no_grad():
        first = conv.weight
        assert conv.weight is first  # cached while nothing changes
        conv.codes.mul_(2)
        second = conv.weight
    assert second is not first
    torch.testing.assert_close(second, 2 * first)
    # An optimizer step invalidates it too.
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(pixel_values, labels=torch.tensor([0, 1])).loss.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        third = conv.weight
    torch.testing.assert_close(third, conv.generate_weight())
    assert not torch.equal(third, second)
    # Moved or given new data without a write (the version counter stays): `.to()`, `param.data = ...`; and
    # the shared generator written in place.
    generator = conv.generator

    def rebuilt(previous: torch.Tensor) -> torch.Tensor:
        current = conv.weight
        assert conv.weight is current  # cached again
        torch.testing.assert_close(current, conv.generate_weight())
        assert current.dtype != previous.dtype or not torch.equal(current, previous)
        return current

    model.double()
    with torch.no_grad():
        current = rebuilt(third)
        torch.testing.assert_close(current, third.double(), atol=1e-6, rtol=1e-5)
        conv.codes.data = conv.codes.data * 3
        current = rebuilt(current)
        if hidden_dim:
            generator.hidden.bias.add_(0.5)
            current = rebuilt(current)
        generator.proj.weight.mul_(0.5)
        current = rebuilt(current)
        # New data twice without a forward in between: the second allocation must not reuse the address the
        # cache remembers (the allocator hands a just-freed block straight back), or the stale filters stay.
        for _ in range(10):
            conv.codes.data = torch.zeros_like(conv.codes)
            conv.codes.data = torch.randn_like(conv.codes)
            current = rebuilt(current)


@pytest.mark.parametrize(("architecture", "overrides"), ARCHITECTURES)
def test_to_timm_matches_csg_outputs(architecture, overrides, pixel_values):
    model = csg_hub.CSGForImageClassification(make_config(architecture, **overrides)).eval()
    dense = model.to_timm().eval()
    assert not any(isinstance(m, GeneratedConv) for m in dense.modules())
    assert not hasattr(dense, "csg_generators")
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values).logits, dense(pixel_values), atol=1e-5, rtol=0)
    report = csg_hub.parameter_report(model)
    assert sum(p.numel() for p in dense.parameters()) == report["dense_params"]
    assert dense.pretrained_cfg["input_size"] == (1, 32, 32)


def test_kernel_key():
    assert kernel_key((3, 3)) == "3x3" and kernel_key((1, 7)) == "1x7"


@pytest.mark.parametrize(
    "c_out, c_in, slice_size, kernel", [(24, 36, 12, 3), (7, 5, 3, 1), (10, 1, 4, 3), (6, 6, 6, 3), (64, 40, 12, 3)]
)
def test_assemble_filters_equals_permute_crop(c_out, c_in, slice_size, kernel):
    # the one-copy assembly must be the naive permute -> reshape -> crop, values and gradients
    n_out, n_in = -(-c_out // slice_size), -(-c_in // slice_size)
    shape = (n_out, n_in, slice_size, slice_size, kernel, kernel)
    slices = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: AssembleFilters.apply(x, c_out, c_in), (slices,), fast_mode=True)
    naive = slices.permute(0, 2, 1, 3, 4, 5).reshape(n_out * slice_size, n_in * slice_size, kernel, kernel)
    filters = AssembleFilters.apply(slices, c_out, c_in)
    assert filters.shape == (c_out, c_in, kernel, kernel) and filters.is_contiguous()
    assert torch.equal(filters, naive[:c_out, :c_in])
    # the copies address storage by offsets worked out per shape: inputs that are views elsewhere in a storage
    # (an offset, or not contiguous) must give the same filters
    offset = torch.randn(7 + slices.numel(), dtype=torch.float64)[7:].view(shape).copy_(slices)
    assert torch.equal(AssembleFilters.apply(offset, c_out, c_in), filters)
    strided = slices.detach().transpose(0, 1).contiguous().transpose(0, 1)
    assert torch.equal(AssembleFilters.apply(strided, c_out, c_in), filters)
    # an upstream gradient in another memory layout (channels-last convolutions give one)
    upstream = torch.randn(c_out, c_in, kernel, kernel, dtype=torch.float64).to(memory_format=torch.channels_last)
    (expected,) = torch.autograd.grad(naive[:c_out, :c_in], slices, upstream)
    (got,) = torch.autograd.grad(AssembleFilters.apply(slices, c_out, c_in), slices, upstream)
    assert torch.equal(got, expected)


def _train_step(model, pixel_values, labels) -> None:
    model.zero_grad(set_to_none=True)
    model(pixel_values, labels=labels).loss.backward()


def test_training_steps_reuse_filter_memory_only_when_nothing_holds_it(pixel_values):
    model = csg_hub.CSGForImageClassification(make_config(model_args={"zero_init_last": False})).train()
    conv = dict(csg_hub.generated_convs(model.timm_model))["layer2.0.conv1"]  # 64 -> 128: cropped rows and columns
    labels = torch.tensor([0, 1])
    _train_step(model, pixel_values, labels)
    kept = {name: t.data_ptr() for name, t in conv.__dict__["_csg_buffers"].items()}
    assert set(kept) == {"filters", "grad"}
    _train_step(model, pixel_values, labels)
    # reused: the same memory, step after step (this fails if the holder count cannot tell a lone tensor)
    assert {name: t.data_ptr() for name, t in conv.__dict__["_csg_buffers"].items()} == kept
    # Anything that still holds the filters, or any view or the storage of them, keeps its values: the next
    # step assembles elsewhere.
    held = [conv.weight, conv.weight[3:5], conv.weight.untyped_storage()]
    snapshot = [held[0].detach().clone(), held[1].detach().clone()]
    with torch.no_grad():
        conv.codes.mul_(-1)  # the next filters differ from the held ones
    for _ in range(2):
        _train_step(model, pixel_values, labels)
    assert torch.equal(held[0], snapshot[0]) and torch.equal(held[1], snapshot[1])
    storage = torch.empty(0).set_(held[2], 0, snapshot[0].shape)
    assert torch.equal(storage, snapshot[0])
    assert conv.__dict__["_csg_buffers"]["filters"].data_ptr() != held[0].data_ptr()
    # derived state: copies and pickles leave them behind; eval drops them (no-grad forwards never use them)
    assert "_csg_buffers" not in copy.deepcopy(conv).__dict__
    model.eval()
    assert "_csg_buffers" not in conv.__dict__


@pytest.mark.slow
def test_reused_buffers_give_the_same_gradients_as_fresh_tensors(pixel_values, monkeypatch):
    # two forwards before one backward (both graphs hold filters at once), and a backward through a kept graph
    # the module, not the function `csg_hub.layers.reparameterize` that shadows it as an attribute
    reparameterize = sys.modules["csg_hub.layers.reparameterize"]
    torch.manual_seed(0)
    model = csg_hub.CSGForImageClassification(make_config(model_args={"zero_init_last": False})).train()
    labels = torch.tensor([0, 1])

    def gradients() -> list[torch.Tensor]:
        for _ in range(2):  # warm: the second round runs on kept buffers
            model.zero_grad(set_to_none=True)
            loss = model(pixel_values, labels=labels).loss + model(pixel_values.flip(-1), labels=labels).loss
            loss.backward(retain_graph=True)
            loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    reused = gradients()
    reparameterize.clear_filter_cache(model)
    monkeypatch.setattr(reparameterize, "_ALONE", None)  # never reuse
    fresh = gradients()
    assert len(reused) == len(fresh) and all(torch.equal(a, b) for a, b in zip(reused, fresh))
