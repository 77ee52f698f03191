"""Exact resume: a run stopped after any epoch and resumed from its checkpoint gives the uninterrupted run's
history, bit for bit, on the CPU; checkpoints that cannot be verified are refused."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch
from helpers import make_config

import csg_hub
from csg_hub.data import classification_loader
from csg_hub.training import CHECKPOINT_DIR, TrainingArguments, fit


class Stop(Exception):
    pass


def _dataset(n: int = 48) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(n)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    return datasets.Dataset.from_dict({"image": images, "label": [i % 10 for i in range(n)]}, features=features)


def _run(output_dir, epochs: int = 3, resume: bool = False, stop_after: int | None = None, init_seed: int = 0):
    torch.manual_seed(init_seed)
    config = make_config("test_resnet", image_size=16, slice_size=8, code_dim=16)
    model = csg_hub.CSGForImageClassification(config)
    data = _dataset()
    train = classification_loader(data, config.data_config, 16, train=True, seed=3)
    evaluation = classification_loader(data, config.data_config, 32)

    def stop(record):
        if stop_after is not None and record["epoch"] == stop_after:
            raise Stop  # after the epoch's checkpoint, as a kill right after it would

    args = TrainingArguments(epochs=epochs, lr=0.05, warmup_epochs=0.5, seed=0)
    history = fit(model, train, args, evaluation, output_dir, resume=resume, progress=False, on_epoch_end=stop)
    return [{k: v for k, v in r.items() if k not in ("epoch_seconds", "eval_images_per_second")} for r in history]


@pytest.mark.parametrize("stop_after", [1, 2])
def test_resume_repeats_the_uninterrupted_run_exactly(tmp_path, stop_after):
    torch.set_num_threads(1)
    whole = _run(tmp_path / "whole")
    with pytest.raises(Stop):
        _run(tmp_path / "cut", stop_after=stop_after)
    resumed = _run(tmp_path / "cut", resume=True, init_seed=123)  # another init: the checkpoint must win
    assert resumed == whole


def test_checkpoint_without_digests_or_with_a_changed_file_is_refused(tmp_path):
    with pytest.raises(Stop):
        _run(tmp_path, stop_after=1)
    progress = tmp_path / CHECKPOINT_DIR / "progress.json"
    saved = json.loads(progress.read_text())
    (tmp_path / CHECKPOINT_DIR / "trainer_state.pt").write_bytes(b"other")
    with pytest.raises(csg_hub.CheckpointError, match="trainer_state.pt does not match the sha256"):
        _run(tmp_path, resume=True)
    progress.write_text(json.dumps({k: v for k, v in saved.items() if k != "sha256"}))
    with pytest.raises(csg_hub.CheckpointError, match="records no file digests"):
        _run(tmp_path, resume=True)


def test_per_image_and_preloaded_training_batches_are_bit_equal():
    from csg_hub.data import PreloadedLoader

    data = _dataset(40)
    config = make_config("test_resnet", image_size=16)
    per_image = classification_loader(data, config.data_config, 8, train=True, seed=5)
    preloaded = PreloadedLoader(data, config.data_config, 8, train=True, seed=5)
    for _ in range(2):  # two epochs: the generators carry on alike
        pairs = list(zip(per_image, preloaded, strict=True))
        assert len(pairs) == 5
        for (a, la), (b, lb) in pairs:
            assert torch.equal(a, b) and torch.equal(la, lb)


def test_saving_leaves_the_config_as_it_was(tmp_path):
    model = csg_hub.CSGForImageClassification(make_config("test_resnet", image_size=16))
    before = model.config.to_json_string()
    model.save_pretrained(tmp_path)
    assert model.config.to_json_string() == before
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == ["CSGForImageClassification"] and saved["weights_crc32"]
