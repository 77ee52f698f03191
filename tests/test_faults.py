"""Faults a user's process meets: SIGKILL at a random moment of a save or a training checkpoint, a full disk.
Each must leave the old state or the new one (never a mix that loads), and nothing behind once the next writer
has run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import make_config

import csg_hub
from csg_hub.training import TrainingArguments, paper_optimizer, warmup_cosine
from csg_hub.training.checkpoints import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow
TRIALS = 20


def _model(seed: int) -> csg_hub.CSGForImageClassification:
    torch.manual_seed(seed)
    return csg_hub.CSGForImageClassification(make_config("test_resnet", slice_size=8, code_dim=16)).eval()


def _kill_during(work, delay: float) -> None:
    """Run `work()` in a forked child, forever, and SIGKILL it after `delay` seconds."""
    pid = os.fork()
    if pid == 0:  # the child: save until killed
        try:
            torch.set_num_threads(1)
            while True:
                work()
        finally:
            os._exit(1)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def _same(model, state) -> bool:
    return all(torch.equal(t, state[k]) for k, t in model.state_dict().items())


def test_kill_during_save_pretrained_leaves_old_or_new(tmp_path):
    models = [_model(0), _model(1)]
    states = [m.state_dict() for m in models]
    folder = tmp_path / "model"
    rng = random.Random(0)
    seen = {0: 0, 1: 0}
    for trial in range(TRIALS):
        models[trial % 2].save_pretrained(folder)
        turn = iter(range(10**9))
        _kill_during(lambda turn=turn: models[next(turn) % 2].save_pretrained(folder), rng.uniform(0.0, 0.25))
        loaded = csg_hub.CSGForImageClassification.from_pretrained(folder)
        which = [i for i, state in enumerate(states) if _same(loaded, state)]
        assert len(which) == 1, f"trial {trial}: the folder holds neither the old model nor the new one"
        seen[which[0]] += 1
        assert json.loads((folder / "config.json").read_text())["weights_crc32"]
    models[0].save_pretrained(folder)  # the next writer cleans what a killed one left
    assert _leftovers(folder) == [] and sorted(os.listdir(folder)) == [
        "config.json", "model.safetensors", "preprocessor_config.json"]  # fmt: skip
    print(f"{TRIALS} kills during save_pretrained: loaded model 0 {seen[0]}x, model 1 {seen[1]}x, 0 mixes")


def test_kill_during_a_training_checkpoint_leaves_old_or_new(tmp_path):
    args = TrainingArguments(epochs=2)
    models = [_model(0), _model(1)]
    optimizers = [paper_optimizer(m, args) for m in models]
    schedulers = [warmup_cosine(o, 10, 1) for o in optimizers]
    folder = tmp_path / "checkpoint"
    rng = random.Random(1)
    for trial in range(TRIALS):
        save_checkpoint(folder, models[0], optimizers[0], schedulers[0], 1, [{"epoch": 1}])
        turn = iter(range(10**9))

        def work(turn=turn) -> None:
            i = next(turn) % 2
            save_checkpoint(folder, models[i], optimizers[i], schedulers[i], i + 1, [{"epoch": i + 1}])

        _kill_during(work, rng.uniform(0.0, 0.25))
        target = _model(7)
        optimizer = paper_optimizer(target, args)
        epoch, history = load_checkpoint(folder, target, optimizer, warmup_cosine(optimizer, 10, 1))
        # the weights and the epoch counter come from the same save
        assert _same(target, models[epoch - 1].state_dict()), f"trial {trial}: weights of another save"
        assert history == [{"epoch": epoch}]


def _train_command(output_dir: Path, resume: bool) -> list[str]:
    script = f"""
import sys, json, torch
sys.path.insert(0, {str(Path(__file__).parent)!r})
torch.set_num_threads(1)
import test_resume
history = test_resume._run({str(output_dir)!r}, epochs=4, resume={resume})
print(json.dumps(history))
"""
    return [sys.executable, "-c", script]


def test_training_killed_at_any_moment_resumes_to_the_uninterrupted_result(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = subprocess.run(_train_command(tmp_path / "whole", False), env=env, capture_output=True, text=True,
                           check=True, timeout=300)  # fmt: skip
    expected = json.loads(whole.stdout.strip().splitlines()[-1])
    rng = random.Random(2)
    for trial in range(2):
        out = tmp_path / f"cut{trial}"
        process = subprocess.Popen(_train_command(out, False), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        # after the first epoch's checkpoint, at a random moment of a later epoch (or of a checkpoint write)
        deadline = time.monotonic() + 120
        while not (out / "checkpoint" / "progress.json").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        resumed = subprocess.run(_train_command(out, True), env=env, capture_output=True, text=True, check=True,
                                 timeout=300)  # fmt: skip
        assert json.loads(resumed.stdout.strip().splitlines()[-1]) == expected, f"trial {trial}"


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs (root only: mounting needs it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root; this test runs as root in CI")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_leaves_the_old_folder_and_nothing_else(small_disk):
    old, new = _model(0), _model(1)
    folder = small_disk / "model"
    old.save_pretrained(folder)
    size = (folder / "model.safetensors").stat().st_size
    statvfs = os.statvfs(small_disk)
    free = statvfs.f_bavail * statvfs.f_frsize
    # leave room for less than one more checkpoint
    (small_disk / "filler").write_bytes(b"\0" * (free - size // 2))
    with pytest.raises(OSError):
        new.save_pretrained(folder)
    assert _same(csg_hub.CSGForImageClassification.from_pretrained(folder), old.state_dict())
    assert _leftovers(folder) == []
    # one checkpoint's room is all a save needs
    (small_disk / "filler").unlink()
    (small_disk / "filler").write_bytes(b"\0" * (free - size - size // 5))
    new.save_pretrained(folder)
    assert _same(csg_hub.CSGForImageClassification.from_pretrained(folder), new.state_dict())
    assert _leftovers(folder) == []
