"""The zoo's results, one source: cards' model-index -> `.eval_results/*.yaml`, the results table and the package
index (`csg_hub.list_pretrained` / `pretrained_info`) agree with the committed cards."""

from __future__ import annotations

import csv
import importlib.util
import json
import uuid
from pathlib import Path

import pytest
import yaml
from helpers import make_config
from huggingface_hub import HfApi, ModelCard

import csg_hub
from csg_hub.hub import eval_results_files, read_eval_results, update_card_accuracy, write_eval_results
from csg_hub.hub.eval_results import eval_results_path

ROOT = Path(__file__).resolve().parent.parent
CARDS = sorted(p.parent for p in (ROOT / "model_cards").glob("*/README.md"))
TABLE = ROOT / "results" / "results-fashion-mnist.csv"
DATASET = "zalando-datasets/fashion_mnist"


def _card_top1(folder: Path) -> float:
    (result,) = [r for r in ModelCard.load(folder / "README.md").data.eval_results
                 if r.dataset_type == DATASET and r.dataset_split == "test" and r.metric_type == "accuracy"]  # fmt: skip
    return result.metric_value


def _table() -> dict[str, dict]:
    with TABLE.open(newline="") as f:
        return {row["model"]: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("folder", CARDS, ids=[p.name for p in CARDS])
def test_committed_eval_results_equal_the_cards_model_index(folder):
    results = ModelCard.load(folder / "README.md").data.eval_results
    files = eval_results_files(results)
    assert files == {p: (folder / p).read_text() for p in files}
    assert sorted(str(p.relative_to(folder)) for p in (folder / ".eval_results").iterdir()) == sorted(files)
    (entry,) = read_eval_results(folder)
    assert (entry.dataset_id, entry.task_id, entry.value) == (DATASET, "test", _card_top1(folder))


def test_eval_results_format_and_file_names():
    results = [csg_hub.accuracy_result(91.234, "org/data"), csg_hub.accuracy_result(90.0, "org/data", split="validation"),
               csg_hub.accuracy_result(50.0, "local")]  # fmt: skip
    results[2].source_url, results[2].source_name = "https://example.org/log", "Eval log"
    files = eval_results_files(results)
    assert sorted(files) == [".eval_results/local.yaml", ".eval_results/org__data.yaml"]
    assert yaml.safe_load(files[".eval_results/org__data.yaml"]) == [
        {"dataset": {"id": "org/data", "task_id": "test"}, "value": 91.23},
        {"dataset": {"id": "org/data", "task_id": "validation"}, "value": 90.0},
    ]
    assert yaml.safe_load(files[".eval_results/local.yaml"]) == [
        {"dataset": {"id": "local", "task_id": "test"}, "value": 50.0,
         "source": {"url": "https://example.org/log", "name": "Eval log"}}]  # fmt: skip
    assert eval_results_files(None) == {}
    for bad in ("", "/abs", "a/../b", "a\\b"):
        with pytest.raises(ValueError, match="eval-results file"):
            eval_results_path(bad)


def test_read_eval_results_names_a_malformed_file(tmp_path):
    (tmp_path / ".eval_results").mkdir()
    (tmp_path / ".eval_results/x.yaml").write_text("value: 1\n")
    with pytest.raises(TypeError, match=r"x\.yaml holds a dict"):
        read_eval_results(tmp_path)
    assert read_eval_results(tmp_path / "none") == []


def test_update_card_accuracy_updates_card_and_eval_results(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    update_card_accuracy(str(folder), 80.0, "org/data")
    update_card_accuracy(str(folder), 81.5, "org/data")  # replaces, not appends
    update_card_accuracy(str(folder), 70.0, "org/data", split="validation")
    card = ModelCard.load(folder / "README.md")
    assert [(r.dataset_split, r.metric_value) for r in card.data.eval_results] == [("test", 81.5), ("validation", 70.0)]
    assert [(e.task_id, e.value) for e in read_eval_results(folder)] == [("test", 81.5), ("validation", 70.0)]
    assert eval_results_files(card.data.eval_results) == {
        p.relative_to(folder).as_posix(): p.read_text() for p in (folder / ".eval_results").iterdir()}  # fmt: skip


def test_write_card_writes_eval_results(tmp_path):
    from csg_hub.hub.model_repo import save_with_card

    model = csg_hub.CSGForImageClassification(make_config())
    folder = save_with_card(model, tmp_path / "m", "org/m", results=[csg_hub.accuracy_result(12.5, "org/data")])
    assert [(e.dataset_id, e.value) for e in read_eval_results(folder)] == [("org/data", 12.5)]
    assert write_eval_results(tmp_path / "empty", []) == []


def test_results_table_has_every_card_with_its_top1():
    table = _table()
    assert {p.name for p in CARDS} <= set(table)
    for folder in CARDS:
        row = table[folder.name]
        assert float(row["top1"]) == _card_top1(folder), folder.name
        assert int(row["checkpoint_bytes"]) == (folder / "model.safetensors").stat().st_size, folder.name
        config = json.loads((folder / "config.json").read_text())
        assert (row["architecture"], int(row["img_size"])) == (config["architecture"], config["image_size"])
        assert row["setting"] != "dense" and float(row["recovery"]) == round(
            100 * float(row["top1"]) / float(table[row["dense_twin"]]["top1"]), 2)  # fmt: skip
    dense = [name for name, row in table.items() if row["setting"] == "dense"]
    assert dense and all(not table[name]["repo_id"] for name in dense)


def test_package_index_is_the_tables_card_rows():
    table = _table()
    assert csg_hub.list_pretrained() == sorted(p.name for p in CARDS)
    for name in csg_hub.list_pretrained():
        info, row = csg_hub.pretrained_info(name), table[name]
        assert info.repo_id == row["repo_id"] == f"csg-hub/{name}"
        assert (info.top1, info.top5, info.stored_params, info.checkpoint_bytes, info.image_size) == (
            float(row["top1"]), float(row["top5"]), int(row["stored_params"]), int(row["checkpoint_bytes"]),
            int(row["img_size"]))  # fmt: skip
        assert info.top1 == _card_top1(ROOT / "model_cards" / name)


def test_list_pretrained_filters_and_pretrained_info_errors():
    assert csg_hub.list_pretrained("resnet50*") == ["resnet50-csg", "resnet50-csg-allconvs", "resnet50-csg-allconvs-3ep"]
    assert csg_hub.list_pretrained("nothing*") == []
    assert all("allconvs" in n for n in csg_hub.list_pretrained("*allconvs*"))
    info = csg_hub.pretrained_info("resnet18-csg-20ep")
    assert info.architecture == "resnet18" and info.dense_twin == "resnet18-dense-20ep" and info.storage == "float32"
    with pytest.raises(AttributeError):
        info.top1 = 0.0  # frozen
    with pytest.raises(ValueError, match=r"'resnet18-csg-20' is not in the csg-hub zoo\. Did you mean 'resnet18-csg-20ep'"):
        csg_hub.pretrained_info("resnet18-csg-20")
    with pytest.raises(ValueError, match="list_pretrained"):
        csg_hub.pretrained_info("vit-huge")


@pytest.mark.slow
def test_results_table_and_index_are_up_to_date(tmp_path):
    spec = importlib.util.spec_from_file_location("results_table", ROOT / "scripts" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run python scripts/results_table.py"
    stale = ["--csv", str(tmp_path / "t.csv"), "--index", str(tmp_path / "i.json")]
    assert module.main([*stale, "--check"]) == 1
    assert module.main(stale) == 0 and (tmp_path / "t.csv").read_text() == TABLE.read_text()


@pytest.mark.slow
@pytest.mark.integration
def test_push_carries_eval_results_and_drops_stale_ones(hub_server):
    repo = f"csg-test/eval-results-{uuid.uuid4().hex[:8]}"
    model = csg_hub.CSGForImageClassification(make_config())
    model.push_to_hub(repo, results=[csg_hub.accuracy_result(12.5, "org/data")])
    assert ".eval_results/org__data.yaml" in HfApi().list_repo_files(repo)
    text = Path(HfApi().hf_hub_download(repo, ".eval_results/org__data.yaml")).read_text()
    assert yaml.safe_load(text) == [{"dataset": {"id": "org/data", "task_id": "test"}, "value": 12.5}]
    # new weights: the old results describe other weights and leave with the old model-index
    csg_hub.CSGForImageClassification(make_config()).push_to_hub(repo)
    assert not [f for f in HfApi().list_repo_files(repo) if f.startswith(".eval_results/")]
    update_card_accuracy(repo, 33.0, "org/data")
    files = HfApi().list_repo_files(repo)
    assert ".eval_results/org__data.yaml" in files
    assert ModelCard.load(repo).data.eval_results[0].metric_value == 33.0


def test_results_on_a_local_dataset_stay_in_the_model_index_only():
    from csg_hub.hub.eval_results import eval_results_files, is_hub_dataset_id

    local = csg_hub.accuracy_result(90.0, "/tmp/some/local/folder")
    hub = csg_hub.accuracy_result(91.0, "zalando-datasets/fashion_mnist")
    assert not is_hub_dataset_id("/tmp/some/local/folder") and is_hub_dataset_id("zalando-datasets/fashion_mnist")
    assert list(eval_results_files([local, hub])) == [".eval_results/zalando-datasets__fashion_mnist.yaml"]
