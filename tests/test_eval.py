"""eval.py cannot silently mislead: classes matched by name, named columns, honest card updates, images of
any mode converted the way the model was trained."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from helpers import make_config
from PIL import Image

import csg_hub
from csg_hub.data import FASHION_MNIST_CLASSES, fashion_mnist_dataset_dict, label_mapping, to_mode

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _eval_main():
    spec = importlib.util.spec_from_file_location("eval_script", SCRIPTS / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def named_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = make_config(image_size=28, id2label=dict(enumerate(FASHION_MNIST_CLASSES)))
    folder = tmp_path_factory.mktemp("named") / "model"
    csg_hub.CSGForImageClassification(config).save_pretrained(folder)
    csg_hub.model_card(csg_hub.CSGForImageClassification(config), "org/m", results=[
        csg_hub.accuracy_result(50.0, "d", split="test")]).save(folder / "README.md")  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def test_split(tmp_path_factory) -> datasets.Dataset:
    return fashion_mnist_dataset_dict(limit=96)["test"]


def _save(dataset: datasets.Dataset, folder: Path) -> str:
    datasets.DatasetDict({"test": dataset, "train": dataset}).save_to_disk(str(folder))
    return str(folder)


def _alphabetical(dataset: datasets.Dataset) -> datasets.Dataset:
    names = dataset.features["label"].names
    order = sorted(names)
    new_index = {names.index(n): i for i, n in enumerate(order)}
    remapped = dataset.map(lambda row: {"label": new_index[row["label"]]})
    return remapped.cast_column("label", datasets.ClassLabel(names=order))


@pytest.mark.slow
@pytest.mark.integration
def test_reordered_classes_give_the_same_result(named_model, test_split, tmp_path):
    evaluate = _eval_main()
    original = evaluate(["--model", str(named_model), "--dataset", _save(test_split, tmp_path / "a")])
    shuffled = evaluate(["--model", str(named_model), "--dataset", _save(_alphabetical(test_split), tmp_path / "b")])
    assert shuffled["label_remap"] is not None and original["label_remap"] is None
    assert shuffled["top1"] == original["top1"] and shuffled["loss"] == pytest.approx(original["loss"])


def test_other_class_names_are_an_error_listing_both():
    with pytest.raises(ValueError, match=r"classes \['cat', 'dog'\] are not the model's \['ant', 'bee'\]"):
        label_mapping(["cat", "dog"], ["ant", "bee"])
    assert label_mapping(["T-shirt/top", "Trouser"], ["t - shirt / top", "trouser"]) is None  # spacing, case
    assert label_mapping(["b", "a"], ["a", "b"]) == [1, 0]


@pytest.mark.slow
@pytest.mark.integration
def test_named_columns(named_model, test_split, tmp_path):
    renamed = test_split.rename_columns({"image": "picture", "label": "category"})
    renamed = renamed.cast_column("category", datasets.Value("int64"))  # plain ints: checked against the model
    folder = _save(renamed, tmp_path / "c")
    evaluate = _eval_main()
    result = evaluate(["--model", str(named_model), "--dataset", folder, "--image-column", "picture",
                       "--label-column", "category"])  # fmt: skip
    assert result["num_samples"] == 96
    with pytest.raises(ValueError, match="no label column 'nope'"):
        evaluate(["--model", str(named_model), "--dataset", folder, "--label-column", "nope"])


def test_update_card_refuses_partial_or_other_split(named_model, tmp_path):
    evaluate = _eval_main()
    with pytest.raises(SystemExit, match="drop --limit"):
        evaluate(["--model", str(named_model), "--dataset", "x", "--update-card", "--limit", "64"])
    with pytest.raises(SystemExit, match=r"split\(s\) \['test'\], not 'train'"):
        evaluate(["--model", str(named_model), "--dataset", "x", "--update-card", "--split", "train"])
    card = json.dumps(str((named_model / "README.md").read_text()))
    assert "50.0" in card  # untouched


def test_16_bit_and_palette_images_convert_like_8_bit():
    grey = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    sixteen = Image.fromarray(grey.astype(np.uint16) * 257)
    assert sixteen.mode.startswith("I;16")
    assert np.array_equal(np.asarray(to_mode(sixteen, "L")), grey)
    palette = Image.fromarray(np.stack([grey] * 3, axis=-1)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert np.array_equal(np.asarray(to_mode(palette, "L")), np.asarray(palette.convert("RGB").convert("L")))
    assert to_mode(Image.fromarray(grey), "RGB").mode == "RGB"
