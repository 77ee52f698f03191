"""From a trained dense model to CSG: from_dense (exact on representable filters, strict on what it cannot
convert), the function-aware fit, distillation, and scripts/convert.py end to end."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import pytest
import timm
import torch
from helpers import make_config
from huggingface_hub import ModelCard

import csg_hub
from csg_hub.training import DistillationLoss

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
TINY = {"slice_size": 8, "code_dim": 16}


def _csg(**overrides) -> csg_hub.CSGForImageClassification:
    torch.manual_seed(0)
    return csg_hub.CSGForImageClassification(make_config("test_resnet", **{**TINY, **overrides})).eval()


def _outputs(model, x) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    return out if isinstance(out, torch.Tensor) else out.logits


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["object", "folder", "repo"])
def test_round_trip_of_a_representable_model_is_exact(hub_server, tmp_path, pixel_values, kind):
    model = _csg(id2label={i: f"c{i}" for i in range(10)})
    if kind == "object":
        source = model.to_timm()
    elif kind == "folder":
        csg_hub.save_timm(model, tmp_path / "dense", rgb_stem=False)
        source = str(tmp_path / "dense")
    else:
        source = f"csg-test/dense-{uuid.uuid4().hex[:8]}"
        csg_hub.push_timm(model, source, rgb_stem=False)
    converted, report = csg_hub.CSGForImageClassification.from_dense(source, output_fit_report=True, **TINY)
    assert report["energy_kept_overall"] > 1 - 1e-9 and max(report["relative_filter_error"].values()) < 1e-5
    torch.testing.assert_close(_outputs(converted, pixel_values), _outputs(model, pixel_values), atol=1e-5, rtol=0)
    assert converted.config.base_model == (None if kind == "object" else source)
    if kind != "object":
        assert converted.config.id2label[3] == "c3"  # labels and preprocessing come from the source
        assert converted.config.data_config == model.config.data_config
        card = csg_hub.model_card(converted, "org/converted")
        assert card.data.base_model == source and "Base model (dense parent)" in str(card)


def test_copied_tensors_include_running_statistics(pixel_values):
    dense = timm.create_model("test_resnet", num_classes=10, in_chans=1)
    with torch.no_grad():
        for m in dense.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
    converted = csg_hub.CSGForImageClassification.from_dense(dense, **TINY)
    state = converted.state_dict()
    for key, tensor in dense.state_dict().items():
        if f"timm_model.{key}" in state:
            assert torch.equal(state[f"timm_model.{key}"], tensor), key


@pytest.mark.slow
def test_function_aware_fit_weights_by_input_energy(pixel_values):
    dense = timm.create_model("resnet18", num_classes=10, in_chans=1).eval()  # not representable
    _, plain_report = csg_hub.CSGForImageClassification.from_dense(
        dense, output_fit_report=True, fit_iterations=2, **TINY)  # fmt: skip
    _, aware_report = csg_hub.CSGForImageClassification.from_dense(
        dense, fit="activations", calibration=pixel_values, output_fit_report=True, fit_iterations=2, **TINY)  # fmt: skip
    assert 0 < plain_report["energy_kept_overall"] < 1 and aware_report["fit"] == "activations"
    # the plain fit is the best at raw filter error; the weighted one trades it for the channels that matter
    assert plain_report["energy_kept_overall"] >= aware_report["energy_kept_overall"] - 1e-6
    with pytest.raises(ValueError, match="calibration batch"):
        csg_hub.CSGForImageClassification.from_dense(dense, fit="activations", **TINY)


def test_what_cannot_be_converted_is_refused(hub_server, tmp_path):
    with pytest.raises(ValueError, match="takes timm models"):
        csg_hub.CSGForImageClassification.from_dense(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="Nothing to generate"):  # the paper's policy leaves EfficientNet dense
        csg_hub.CSGForImageClassification.from_dense(timm.create_model("efficientnet_b0", num_classes=10))
    with pytest.raises(ValueError, match="fits linear generators only"):
        csg_hub.CSGForImageClassification.from_dense(_csg().to_timm(), generator_hidden_dim=8, **TINY)
    folder = tmp_path / "unknown"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architecture": "resnet_that_does_not_exist", "num_classes": 2}))
    with pytest.raises(ValueError, match="unknown timm architecture 'resnet_that_does_not_exist'"):
        csg_hub.CSGForImageClassification.from_dense(str(folder))
    csg_hub.save_timm(_csg(), tmp_path / "no-weights", rgb_stem=False)
    (tmp_path / "no-weights" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        csg_hub.CSGForImageClassification.from_dense(str(tmp_path / "no-weights"))
    _csg().save_pretrained(tmp_path / "csg")
    with pytest.raises(ValueError, match="already a CSG model"):
        csg_hub.CSGForImageClassification.from_dense(str(tmp_path / "csg"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ValueError, match="not a timm model"):
        csg_hub.CSGForImageClassification.from_dense(str(tmp_path / "other"))


def test_distillation_loss():
    teacher = torch.nn.Linear(4, 3)
    student = torch.nn.Linear(4, 3)
    x = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, -1, -1, -1])
    loss = DistillationLoss(teacher, temperature=2.0, alpha=0.5)
    assert loss(student, x, labels).item() > 0
    # a student equal to its teacher has no distillation loss; unlabeled rows add no label loss
    copy = torch.nn.Linear(4, 3)
    copy.load_state_dict(teacher.state_dict())
    assert DistillationLoss(teacher, 2.0, 1.0)(copy, x, labels).abs().item() < 1e-6
    only_unlabeled = DistillationLoss(teacher, 2.0, 0.5)(copy, x[3:], labels[3:])
    assert only_unlabeled.abs().item() < 1e-6
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss(teacher, temperature=0)


def _convert_main():
    spec = importlib.util.spec_from_file_location("convert_script", SCRIPTS / "convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("extra", [[], ["--init", "activations", "--no-labels"], ["--init", "random", "--epochs", "0"]])
def test_convert_script(tmp_path, extra):
    from csg_hub.data import FASHION_MNIST_CLASSES, fashion_mnist_dataset_dict

    fashion_mnist_dataset_dict(limit=128).save_to_disk(tmp_path / "data")
    torch.manual_seed(0)
    parent = timm.create_model("test_resnet", num_classes=10, in_chans=1)
    csg_hub.save_timm(parent, tmp_path / "parent", label_names=FASHION_MNIST_CLASSES, rgb_stem=False,
                      data_config={"input_size": (1, 28, 28), "mean": (0.3,), "std": (0.35,)})  # fmt: skip
    out = tmp_path / "run"
    args = ["--parent", str(tmp_path / "parent"), "--dataset", str(tmp_path / "data"), "--slice-size", "8",
            "--code-dim", "16", "--epochs", "1", "--batch-size", "32", "--bn-batches", "2",
            "--calibration-images", "16", "--output-dir", str(out), *extra]  # fmt: skip
    metrics = _convert_main()(args)
    assert metrics["parent_top1"] >= 0 and metrics["epoch0"]["num_samples"] == 128
    assert len(metrics["history"]) == (0 if "--epochs" in extra else 1)
    card = ModelCard.load(out / "model" / "README.md")
    assert card.data.base_model == str(tmp_path / "parent") and "recovery" in str(card)
    reloaded = csg_hub.CSGForImageClassification.from_pretrained(out / "model")
    assert reloaded.config.base_model == str(tmp_path / "parent")
    assert json.loads((out / "metrics.json").read_text())["init"] == (extra[1] if extra else "least_squares")
    if not extra:  # the zoo export of a conversion: renamed, the local parent named as the repo its export would be
        spec = importlib.util.spec_from_file_location("zoo_table", SCRIPTS / "zoo_table.py")
        zoo_table = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(zoo_table)
        zoo_table.main(["--runs", str(tmp_path), "--markdown", "", "--plot", "", "--export-to", str(tmp_path / "cards"),
                        "--export-name", "from-dense", "--namespace", "org", "--dataset-id", "org/fm"])  # fmt: skip
        card = ModelCard.load(tmp_path / "cards" / "from-dense" / "README.md")
        assert card.data.base_model == "org/parent" and card.data.model_name == "from-dense"
        assert card.data.eval_results[0].metric_value == round(metrics["final"]["top1"], 2)
        assert card.data.eval_results[0].dataset_type == "org/fm"
        with pytest.raises(SystemExit, match="--export-name names one export"):
            (tmp_path / "run2").symlink_to(out)
            zoo_table.main(["--runs", str(tmp_path), "--markdown", "", "--plot", "", "--export-to",
                            str(tmp_path / "cards"), "--export-name", "x"])  # fmt: skip
        # a parent that is neither a folder here nor a repo id cannot be named as base_model
        (tmp_path / "moved" / "run").mkdir(parents=True)
        (tmp_path / "moved" / "run" / "model").symlink_to(out / "model")
        moved = {**json.loads((out / "metrics.json").read_text()), "parent": "runs/zoo/gone/model"}
        (tmp_path / "moved" / "run" / "metrics.json").write_text(json.dumps(moved))
        with pytest.raises(SystemExit, match="neither a folder here nor a Hub repo id"):
            zoo_table.main(["--runs", str(tmp_path / "moved"), "--markdown", "", "--plot", "", "--export-to",
                            str(tmp_path / "cards2")])  # fmt: skip


@pytest.mark.slow
@pytest.mark.integration
def test_convert_script_fine_tunes_a_student_against_its_int4_storage(tmp_path, capsys):
    from csg_hub.data import FASHION_MNIST_CLASSES, fashion_mnist_dataset_dict

    fashion_mnist_dataset_dict(limit=96).save_to_disk(tmp_path / "data")
    torch.manual_seed(0)
    parent = timm.create_model("test_resnet", num_classes=10, in_chans=1)
    csg_hub.save_timm(parent, tmp_path / "parent", label_names=FASHION_MNIST_CLASSES, rgb_stem=False,
                      data_config={"input_size": (1, 28, 28), "mean": (0.3,), "std": (0.35,)})  # fmt: skip
    common = ["--parent", str(tmp_path / "parent"), "--dataset", str(tmp_path / "data"), "--batch-size", "32",
              "--bn-batches", "2"]  # fmt: skip
    _convert_main()([*common, "--slice-size", "8", "--code-dim", "16", "--epochs", "0", "--output-dir",
                     str(tmp_path / "first")])  # fmt: skip
    student = str(tmp_path / "first" / "model")
    qat = [*common, "--student", student, "--qat", "--storage-dtype", "int4", "--storage-scope", "all",
           "--storage-group-size", "32", "--epochs", "1", "--output-dir", str(tmp_path / "qat")]  # fmt: skip
    metrics = _convert_main()(qat)
    assert metrics["init"] == "student" and metrics["qat"]["storage_group_size"] == 32
    # what training evaluated last is what was stored: the reloaded int4 model scores the same
    assert metrics["final_stored"] == {**metrics["final_stored"], **{k: metrics["final"][k] for k in ("top1", "loss")}}
    config = json.loads((tmp_path / "qat" / "model" / "config.json").read_text())
    assert (config["storage_dtype"], config["storage_scope"], config["storage_group_size"]) == ("int4", "all", 32)
    assert (config["slice_size"], config["code_dim"]) == (8, 16)  # the student's settings
    with pytest.raises(SystemExit, match="--code-dim 32 contradicts --student"):
        _convert_main()([*qat, "--code-dim", "32"])
    with pytest.raises(SystemExit):
        _convert_main()([*common, "--student", student, "--qat", "--output-dir", str(tmp_path / "x")])
    assert "--qat trains against the stored weights" in capsys.readouterr().err
