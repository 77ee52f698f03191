"""Data-parallel training with the standard launchers: 2 CPU processes, one gloo group, one output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from csg_hub.data import fashion_mnist_dataset_dict

pytestmark = pytest.mark.slow  # subprocess launchers, training on real Fashion-MNIST

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fm") / "fashion_mnist"
    fashion_mnist_dataset_dict(limit=256).save_to_disk(str(folder))
    return folder


LAUNCHERS = {
    "torchrun": [str(BIN / "torchrun"), "--nproc_per_node", "2"],
    "accelerate": [str(BIN / "accelerate"), "launch", "--config_file", str(ROOT / "configs/accelerate-cpu.yaml")],
}


@pytest.mark.integration
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_cpu_processes_train_as_one_group(small_dataset, tmp_path, launcher):
    if shutil.which(LAUNCHERS[launcher][0]) is None:
        pytest.fail(f"{LAUNCHERS[launcher][0]} is not installed")
    output = tmp_path / "run"
    command = [*LAUNCHERS[launcher], str(ROOT / "scripts/train.py"), "--model", "test_resnet", "--csg",
               "--slice-size", "8", "--code-dim", "16", "--dataset", str(small_dataset), "--epochs", "1",
               "--batch-size", "32", "--output-dir", str(output)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "process 0 of 2 (MULTI_CPU, backend gloo)" in log and "process 1 of 2 (MULTI_CPU, backend gloo)" in log
    assert log.count("final test top-1") == 1  # one process wrote and reported
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["effective_batch_size"] == 64
    # 256 images, 64 per step across both processes: 4 steps each, every epoch evaluated on all 256 test images
    assert metrics["final"]["num_samples"] == 256
    assert sorted(p.name for p in (output / "model").iterdir()) == [
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json"]  # fmt: skip


@pytest.mark.integration
def test_quantization_aware_distillation_under_torchrun(small_dataset, tmp_path):
    """convert.py --qat in 2 processes: the hooks run inside DDP and the saved int4 model is what was evaluated."""
    import timm
    import torch

    import csg_hub
    from csg_hub.data import FASHION_MNIST_CLASSES

    torch.manual_seed(0)
    parent = timm.create_model("test_resnet", num_classes=10, in_chans=1)
    csg_hub.save_timm(parent, tmp_path / "parent", label_names=FASHION_MNIST_CLASSES, rgb_stem=False,
                      data_config={"input_size": (1, 28, 28), "mean": (0.3,), "std": (0.35,)})  # fmt: skip
    student = csg_hub.CSGForImageClassification.from_dense(str(tmp_path / "parent"), slice_size=8, code_dim=16)
    student.save_pretrained(tmp_path / "student")
    output = tmp_path / "qat"
    command = [*LAUNCHERS["torchrun"], str(ROOT / "scripts/convert.py"), "--parent", str(tmp_path / "parent"),
               "--student", str(tmp_path / "student"), "--qat", "--storage-dtype", "int4", "--storage-scope", "all",
               "--dataset", str(small_dataset), "--epochs", "1", "--batch-size", "32", "--bn-batches", "2",
               "--output-dir", str(output)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["qat"]["storage_dtype"] == "int4"
    assert metrics["final_stored"]["loss"] == metrics["final"]["loss"]
    assert json.loads((output / "model" / "config.json").read_text())["storage_dtype"] == "int4"
