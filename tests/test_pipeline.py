"""transformers' own clients on csg-hub models: the image-classification pipeline (folder, repo id, remote
code, dense export) agreeing with eval.py image for image, and Trainer / push_to_hub keeping the csg card."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from helpers import make_config
from huggingface_hub import HfApi, ModelCard
from PIL import Image
from transformers import AutoImageProcessor, TrainingArguments, pipeline

import csg_hub
from csg_hub.data import FASHION_MNIST_CLASSES, fashion_mnist_dataset_dict
from csg_hub.data.transforms import RandomCropFlip, image_transform

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
FASHION = "zalando-datasets/fashion_mnist"


def _eval_main():
    spec = importlib.util.spec_from_file_location("eval_script", SCRIPTS / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _repo(name: str = "m") -> str:
    return f"csg-test/{name}-{uuid.uuid4().hex[:8]}"


def _tiny(in_chans: int, image_size: int, split: datasets.Dataset | None = None) -> csg_hub.CSGForImageClassification:
    torch.manual_seed(0)
    config = make_config(
        "test_resnet", in_chans=in_chans, image_size=image_size, slice_size=8, code_dim=16,
        id2label=dict(enumerate(FASHION_MNIST_CLASSES)),
        image_mean=[0.3] * in_chans, image_std=[0.35] * in_chans,
    )  # fmt: skip
    model = csg_hub.CSGForImageClassification(config)
    if split is not None:
        # a few steps on real images: an untrained net predicts one class for everything, which would make
        # "the same predictions" trivially true
        transform = image_transform(config.data_config)
        x = torch.stack([transform(img) for img in split["image"]])
        y = torch.tensor(split["label"])
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(15):
            optimizer.zero_grad()
            model(x, labels=y).loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def grey_split() -> datasets.Dataset:
    return fashion_mnist_dataset_dict(limit=64)["test"]


@pytest.fixture(scope="module")
def colour_split(grey_split) -> datasets.Dataset:
    # Fashion-MNIST tinted per image: real RGB content whose channels differ
    def tint(row, index):
        grey = np.asarray(row["image"], dtype=np.float32)
        scale = np.array([1.0, 0.4 + 0.6 * (index % 3) / 2, 0.3 + 0.7 * (index % 5) / 4], dtype=np.float32)
        return {"image": Image.fromarray((grey[..., None] * scale).round().astype(np.uint8), "RGB")}

    return grey_split.map(tint, with_indices=True).cast_column("image", datasets.Image())


def _save_split(dataset: datasets.Dataset, folder: Path) -> str:
    datasets.DatasetDict({"test": dataset}).save_to_disk(str(folder))
    return str(folder)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("in_chans,image_size", [(1, 28), (3, 32)])
def test_pipeline_equals_eval_on_folder_and_repo(hub_server, grey_split, colour_split, tmp_path, in_chans, image_size):
    split = colour_split if in_chans == 3 else grey_split
    model = _tiny(in_chans, image_size, split)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    assert json.loads((folder / "preprocessor_config.json").read_text())["image_processor_type"] == "CSGImageProcessor"
    processor = AutoImageProcessor.from_pretrained(folder)
    assert isinstance(processor, csg_hub.CSGImageProcessor)
    assert processor.data_config == model.config.data_config
    repo = _repo(f"pipe{in_chans}")
    model.push_to_hub(repo)
    assert "preprocessor_config.json" in HfApi().list_repo_files(repo)
    data = _save_split(split, tmp_path / "data")
    for source in (str(folder), repo):
        result = _eval_main()(["--model", source, "--dataset", data, "--pipeline", "--batch-size", "16"])
        assert result["num_samples"] == 64
        assert result["pipeline_disagreements"] == 0
        assert result["pipeline_top1"] == result["top1"]
    # the predictions are not all one class: agreement is not trivial
    classifier = pipeline("image-classification", model=str(folder))
    labels = {out[0]["label"] for out in classifier(list(split["image"]), top_k=1)}
    assert len(labels) > 1


@pytest.mark.slow  # real Fashion-MNIST images
def test_processor_matches_eval_transform_bit_for_bit(grey_split):
    model = _tiny(1, 56)
    processor = csg_hub.CSGImageProcessor.from_config(model.config)
    transform = image_transform(model.config.data_config)
    images = list(grey_split["image"][:8])
    # the pipeline hands the processor RGB: grey -> RGB -> grey is exact (PIL's luma weights sum to 1)
    piped = processor([img.convert("RGB") for img in images])["pixel_values"]
    assert torch.equal(piped, torch.stack([transform(img) for img in images]))
    assert piped.shape == (8, 1, 56, 56)
    # numpy uint8 input too; float arrays are refused with the fix named
    assert torch.equal(processor(np.asarray(images[0]))["pixel_values"][0], transform(images[0]))
    with pytest.raises(ValueError, match="uint8"):
        processor(np.zeros((28, 28), dtype=np.float32))


def test_processor_for_folder_without_preprocessor_config(tmp_path):
    model = _tiny(1, 28)
    model.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").unlink()
    processor = csg_hub.CSGImageProcessor.from_pretrained(tmp_path)
    assert processor.data_config == model.config.data_config


def test_bad_processor_config_is_refused():
    with pytest.raises(ValueError, match="mean has 3 values for a 1-channel input"):
        csg_hub.CSGImageProcessor(input_size=[1, 28, 28], mean=[0.1, 0.2, 0.3], std=[0.3])
    with pytest.raises(ValueError, match="interpolation"):
        csg_hub.CSGImageProcessor(input_size=[1, 28, 28], mean=[0.1], std=[0.3], interpolation="lanczos9")


@pytest.mark.slow
@pytest.mark.integration
def test_dense_export_of_a_grey_model_works_in_the_pipeline(hub_server, grey_split, tmp_path):
    model = _tiny(1, 28, grey_split)
    folder = tmp_path / "dense"
    csg_hub.save_timm(model, folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_args"]["in_chans"] == 3 and config["pretrained_cfg"]["input_size"] == [3, 28, 28]
    leftovers = {"tag", "paper_ids", "origin_url", "pool_size", "hf_hub_id"} & set(config["pretrained_cfg"])
    assert not leftovers, f"ImageNet metadata left in the export: {leftovers}"
    repo = _repo("dense")
    csg_hub.push_timm(model, repo)
    images = list(grey_split["image"][:32])
    expected = model(torch.stack([image_transform(model.config.data_config)(i) for i in images])).logits
    for source in (str(folder), repo):
        classifier = pipeline("image-classification", model=source)
        assert classifier.model.config.label2id["Trouser"] == 1
        logits = classifier.model(classifier.image_processor([i.convert("RGB") for i in images],
                                                              return_tensors="pt")["pixel_values"]).logits  # fmt: skip
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
        top1 = [FASHION_MNIST_CLASSES.index(out[0]["label"]) for out in classifier(images, top_k=1)]
        assert top1 == expected.argmax(-1).tolist()


def _with_card(model, folder: Path, top1: float = 77.5) -> None:
    model.save_pretrained(folder)
    weights = folder / "model.safetensors"
    csg_hub.model_card(
        model, "org/zoo-model", results=[csg_hub.accuracy_result(top1, FASHION, num_samples=10000)],
        checkpoint_bytes=weights.stat().st_size, training_command="python scripts/train.py --csg",
        dense_baseline=80.0, weights_digest=csg_hub.integrity.recorded_digest(weights),
    ).save(folder / "README.md")  # fmt: skip


@pytest.mark.slow
@pytest.mark.integration
def test_push_to_hub_keeps_measured_results(hub_server, tmp_path):
    _with_card(_tiny(1, 28), tmp_path / "zoo")
    loaded = csg_hub.CSGForImageClassification.from_pretrained(tmp_path / "zoo")
    repo = _repo("keep")
    loaded.push_to_hub(repo)
    card = ModelCard.load(repo)
    assert [r.metric_value for r in card.data.eval_results] == [77.5]
    assert "| 77.50% | 80.00% | 96.9% | 10000 |" in str(card)  # recovery against the dense baseline
    assert "python scripts/train.py --csg" in str(card) and "GMACs" in str(card)
    # pushed again from the Hub copy, with new results given: those replace the old
    again = csg_hub.CSGForImageClassification.from_pretrained(repo)
    again.push_to_hub(repo, results=[csg_hub.accuracy_result(78.0, FASHION)])
    assert [r.metric_value for r in ModelCard.load(repo).data.eval_results] == [78.0]
    # changed weights do not inherit results measured on others
    with torch.no_grad():
        loaded.timm_model.fc.bias.add_(1.0)
    loaded.push_to_hub(repo)
    card = ModelCard.load(repo)
    assert not card.data.eval_results and "not on this checkpoint" in str(card)


@pytest.mark.slow
@pytest.mark.integration
def test_trainer_fine_tune_and_push_keep_the_csg_card(hub_server, grey_split, tmp_path):
    _with_card(_tiny(1, 28), tmp_path / "zoo")
    model = csg_hub.CSGForImageClassification.from_pretrained(tmp_path / "zoo")
    processor = AutoImageProcessor.from_pretrained(tmp_path / "zoo")
    transform = image_transform(model.config.data_config)
    augment = RandomCropFlip(model.config.data_config)

    def collate(rows):
        return {"pixel_values": augment(torch.stack([transform(r["image"]) for r in rows])),
                "labels": torch.tensor([r["label"] for r in rows])}  # fmt: skip

    repo = _repo("trainer")
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=16, learning_rate=0.01,
        report_to=[], push_to_hub=True, hub_model_id=repo, hub_strategy="every_save", save_strategy="steps",
        save_steps=2, remove_unused_columns=False, use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = csg_hub.CSGTrainer(model=model, args=args, train_dataset=grey_split, data_collator=collate,
                                 processing_class=processor)  # fmt: skip
    trainer.train()
    trainer.push_to_hub(results=[csg_hub.accuracy_result(12.5, FASHION, num_samples=64)])
    files = set(HfApi().list_repo_files(repo))
    assert "training_args.bin" not in files and not [f for f in files if f.endswith((".bin", ".pt", ".pth"))]
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "training_args.json"} <= files
    card = ModelCard.load(repo)
    assert "## Compression" in str(card) and "None dataset" not in str(card)
    assert [r.metric_value for r in card.data.eval_results] == [12.5]
    assert "measured on the weights these were trained from" in str(card).lower()  # 77.5 on the parent
    pulled = pipeline("image-classification", model=repo)
    assert isinstance(pulled.image_processor, csg_hub.CSGImageProcessor)


def test_checkpoint_hub_strategies_are_refused(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), push_to_hub=True, hub_model_id="org/x",
                             hub_strategy="checkpoint", report_to=[], use_cpu=True)  # fmt: skip
    with pytest.raises(ValueError, match="pickles"):
        csg_hub.CSGTrainer(model=_tiny(1, 28), args=args)
