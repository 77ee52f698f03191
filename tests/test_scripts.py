"""The scripts end to end: prepare -> push dataset -> eval from the Hub; train with resume; bad input."""

import importlib.util
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import datasets
import numpy as np
import pytest
from huggingface_hub import ModelCard

import csg_hub
from csg_hub.data import FASHION_MNIST_CLASSES

pytestmark = [pytest.mark.slow, pytest.mark.integration]
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fashion_repo(hub_server):
    """A 200-image Fashion-MNIST twin pushed as a parquet dataset repo to the test Hub."""
    repo = f"csg-test/fashion-mnist-{uuid.uuid4().hex[:6]}"
    _script("prepare_fashion_mnist").main(["--push-to-hub", repo, "--limit", "200"])
    return repo


def _csg_model_dir(tmp_path, in_chans=1):
    config = csg_hub.CSGConfig(
        architecture="resnet18",
        in_chans=in_chans,
        image_size=28,
        id2label=dict(enumerate(FASHION_MNIST_CLASSES)),
    )
    model = csg_hub.CSGForImageClassification(config).eval()
    model.save_pretrained(tmp_path / "model")
    return model, tmp_path / "model"


def test_prepare_script_schema(tmp_path):
    _script("prepare_fashion_mnist").main(["--save-to-disk", str(tmp_path / "fm"), "--limit", "10"])
    dd = datasets.load_from_disk(str(tmp_path / "fm"))
    assert set(dd) == {"train", "test"} and dd["train"].num_rows == 10
    assert dd["train"].features["label"].names == FASHION_MNIST_CLASSES
    assert isinstance(dd["train"].features["image"], datasets.Image)
    assert dd["test"][0]["image"].size == (28, 28)


def test_eval_from_hub_dataset_and_hub_model(fashion_repo, tmp_path):
    model, _ = _csg_model_dir(tmp_path)
    model_repo = f"csg-test/eval-{uuid.uuid4().hex[:6]}"
    model.push_to_hub(model_repo)
    out = tmp_path / "results.json"
    result = _script("eval").main(
        ["--model", model_repo, "--dataset", fashion_repo, "--split", "test", "--output", str(out), "--update-card"]
    )
    saved = json.loads(out.read_text())
    assert saved["num_samples"] == 200 and 0 <= saved["top1"] <= saved["top5"] <= 100
    for key in ("top1", "top5", "loss", "num_samples", "images_per_second", "dense_params", "stored_params", "ratio"):
        assert key in saved
    report = csg_hub.parameter_report(model)
    assert saved["stored_params"] == report["stored_params"] and saved["ratio"] == pytest.approx(report["ratio"])
    # the same numbers computed by hand
    from csg_hub.data import classification_loader, load_image_dataset
    from csg_hub.evaluation import evaluate

    expected = evaluate(
        model, classification_loader(load_image_dataset(fashion_repo, "test"), model.config.data_config, 64)
    )
    assert result["top1"] == pytest.approx(expected["top1"]) and result["loss"] == pytest.approx(
        expected["loss"], rel=1e-5
    )
    # --update-card wrote model-index on the Hub
    from huggingface_hub import ModelCard

    (entry,) = [r for r in ModelCard.load(model_repo).data.eval_results if r.dataset_type == fashion_repo]
    assert entry.metric_value == round(saved["top1"], 2) and entry.dataset_split == "test"


def test_eval_on_a_timm_repo(fashion_repo, tmp_path):
    model, _ = _csg_model_dir(tmp_path)
    repo = f"csg-test/timm-{uuid.uuid4().hex[:6]}"
    csg_hub.push_timm(model, repo)
    result = _script("eval").main(["--model", repo, "--dataset", fashion_repo, "--limit", "50"])
    assert result["num_samples"] == 50 and result["ratio"] == 1.0


def test_train_with_resume_and_local_dataset(tmp_path):
    from csg_hub.data import fashion_mnist_dataset_dict

    fashion_mnist_dataset_dict(limit=256).save_to_disk(tmp_path / "data")
    common = ["--csg", "--dataset", str(tmp_path / "data"), "--batch-size", "64", "--output-dir", str(tmp_path / "run")]
    first = _script("train").main([*common, "--epochs", "1"])
    assert len(first["history"]) == 1 and (tmp_path / "run/checkpoint/model.safetensors").exists()
    resumed = _script("train").main([*common, "--epochs", "2", "--resume"])
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == first["history"][0]
    folder = tmp_path / "run/model"
    # a dataset read from disk has no Hub page: its result is in the card's model-index, not in .eval_results/
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "README.md",
                                                  "preprocessor_config.json"}  # fmt: skip
    card = ModelCard((folder / "README.md").read_text())
    assert card.data.eval_results[0].metric_value == round(resumed["final"]["top1"], 2)
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert metrics["final"]["num_samples"] == 256 and "python scripts/train.py" in metrics["command"]

    # the zoo workflow on these runs: table against a dense run, export, and eval.py re-checks the card
    # (the dense run decodes its data once into tensors: --preload, the GPU path, through fit and evaluation)
    dense = _script("train").main(["--dataset", str(tmp_path / "data"), "--batch-size", "64", "--epochs", "1",
                                   "--preload", "--output-dir", str(tmp_path / "dense")])  # fmt: skip
    assert dense["final"]["num_samples"] == 256 and len(dense["history"]) == 1
    (tmp_path / "zoo").mkdir()
    for name in ("run", "dense"):
        (tmp_path / name).rename(tmp_path / "zoo" / name)
    rows = _script("zoo_table").main(
        ["--runs", str(tmp_path / "zoo"), "--markdown", str(tmp_path / "zoo.md"), "--plot", str(tmp_path / "zoo.png")]
        + ["--export-to", str(tmp_path / "cards"), "--namespace", "org", "--dataset-id", "org/fm"]
    )
    csg_row = next(r for r in rows if r["name"] == "run")
    assert csg_row["delta"] == pytest.approx(resumed["final"]["top1"] - dense["final"]["top1"])
    assert csg_row["ratio"] > 5 and (tmp_path / "zoo.png").stat().st_size > 0
    assert "| run | resnet18 | CSG s=12 d=72 |" in (tmp_path / "zoo.md").read_text()
    assert {p.name for p in (tmp_path / "cards").iterdir()} == {"run"}  # dense baselines are not exported
    card = ModelCard((tmp_path / "cards/run/README.md").read_text())
    result = card.data.eval_results[0]
    assert (result.dataset_type, result.metric_type) == ("org/fm", "accuracy")
    checked = _script("eval").main(["--model", str(tmp_path / "cards/run"), "--dataset", str(tmp_path / "data")])
    assert abs(checked["top1"] - result.metric_value) <= 0.1

    # a flagship stored in int8 goes out under its Hub name; its card and the table report the stored weights
    zoo_table, zoo = _script("zoo_table"), str(tmp_path / "zoo")
    int8 = _script("train").main([*common, "--epochs", "1", "--storage-dtype", "int8", "--storage-scope", "all",
                                  "--output-dir", str(tmp_path / "zoo/run8")])  # fmt: skip
    assert int8["final_stored"]["num_samples"] == 256
    zoo_table.HUB_NAMES = {"run8": "flagship"}
    rows = zoo_table.main(["--runs", zoo, "--only", "run8", "--markdown", "", "--plot", "",
                           "--export-to", str(tmp_path / "hub")])  # fmt: skip
    assert rows[0]["top1"] == int8["final_stored"]["top1"] and rows[0]["setting"].endswith(", int8 all")
    assert {p.name for p in (tmp_path / "hub").iterdir()} == {"flagship"}
    card = ModelCard((tmp_path / "hub/flagship/README.md").read_text())
    assert card.data.eval_results[0].metric_value == round(int8["final_stored"]["top1"], 2)
    # the frontier finds the run from the card's training command and measures each storage from the run's
    # float32 weights (its resume checkpoint); int8/all from them is exactly the published checkpoint
    frontier = ["--cards", str(tmp_path / "hub"), "--runs", zoo, "--dataset", str(tmp_path / "data")]
    frontier += ["--qat-runs", str(tmp_path / "no-qat"), "--extra-points"]  # none: the repo's runs name other twins
    points = {p["storage"]: p for p in _script("frontier").main([*frontier, "--output", str(tmp_path / "f1")])}
    assert set(points) >= {"float32", "float16/all", "int8/csg", "int8/all"}  # and int4 / int2 once stored
    assert {p["run"] for p in points.values()} == {"run8"}
    assert {(p["method"], p["twin"]) for p in points.values()} == {("csg", None)}  # no --dense-baseline
    assert points["float32"]["top1"] == int8["final"]["top1"]
    assert points["int8/all"]["top1"] == int8["final_stored"]["top1"]
    assert points["int8/all"]["bytes"] == (tmp_path / "hub/flagship/model.safetensors").stat().st_size
    assert points["float32"]["bytes"] > 3 * points["int8/all"]["bytes"]
    assert "float32 weights" in points["float16/all"]["source"]
    weights = tmp_path / "zoo/run8/checkpoint/model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # a corrupt float32 checkpoint is refused, as `--resume` refuses it
    weights.write_bytes(bytes(data))
    with pytest.raises(csg_hub.CheckpointError, match="resume checkpoint .* do not match the CRC-32"):
        _script("frontier").main([*frontier, "--output", str(tmp_path / "f3")])
    shutil.rmtree(tmp_path / "zoo/run8/checkpoint")  # without them only the published storage is measured
    points = {p["storage"]: p for p in _script("frontier").main([*frontier, "--output", str(tmp_path / "f2")])}
    assert set(points) == {"float32", "int8/all"}
    assert points["int8/all"]["top1"] == int8["final_stored"]["top1"]
    shutil.copytree(tmp_path / "zoo/run", tmp_path / "zoo/run2")
    zoo_table.HUB_NAMES = {"run": "flagship", "run2": "flagship"}
    with pytest.raises(SystemExit, match="Two runs would export to .*flagship"):
        zoo_table.main(["--runs", zoo, "--markdown", "", "--plot", "", "--export-to", str(tmp_path / "hub")])


def test_frontier_panels_group_by_twin(tmp_path):
    """One panel and one table per dense twin, each point against its own twin; merged points name their twin
    (a missing or unknown one is an error naming the file)."""
    from csg_hub.configuration import STORAGE_DTYPES

    frontier = _script("frontier")

    def point(name, twin, method, storage, size, top1, **extra):
        return {"name": name, "run": name.split("__")[0], "twin": twin, "method": method, "storage": storage,
                "bits": frontier.bits_of(storage), "bytes": size, "top1": top1, **extra}  # fmt: skip

    points = [point("d28__fp32", "d28", "dense", "fp32", 40_000_000, 91.0),
              point("d28__int8", "d28", "dense-roundtrip", "int8", 10_000_000, 90.9),
              point("c28__int8-all", "d28", "csg", "int8/all", 600_000, 89.5),
              point("d56__fp32", "d56", "dense", "fp32", 40_000_000, 93.0),
              point("c56__float32", "d56", "csg", "float32", 4_000_000, 92.5)]  # fmt: skip
    extra = tmp_path / "extra"
    extra.mkdir()
    quanto = point("d28__quanto-int4", "d28", "quanto", "int4", 5_000_000, 90.0, command="python scripts/q.py")
    (extra / "quanto.json").write_text(json.dumps(quanto))
    vae = point(
        "c28__weight-vae-shared", "d28", "weight-vae-shared", "vae-latents+decoder/N", 300_000.4, 88.0, bits=None
    )
    (extra / "vae.json").write_text(json.dumps(vae))  # no bit width: coloured as weight-VAE
    merged = frontier.load_extra_points([extra, tmp_path / "not-yet"])  # a missing folder is skipped
    groups = frontier.group_by_twin(points + merged)
    assert list(groups) == ["d28", "d56"]
    assert [p["name"] for p in groups["d28"]] == [
        "d28__fp32", "d28__int8", "c28__int8-all", "d28__quanto-int4", "c28__weight-vae-shared"
    ]  # fmt: skip
    assert [frontier.storage_class(p) for p in groups["d28"]] == ["fp32", "int8", "int8", "int4", "weight-VAE"]
    assert [p["name"] for p in groups["d56"]] == ["d56__fp32", "c56__float32"]
    text = frontier.table(points + merged, {"d28": "resnet18 28x28, 10 ep"})
    assert "### resnet18 28x28, 10 ep: twin `d28` (fp32: 40,000,000 bytes, 91.00%)" in text
    assert "| c28__int8-all | csg | int8/all | 600,000 | 66.7x | 89.50% | -1.50 |" in text
    assert "| c56__float32 | csg | float32 | 4,000,000 | 10.0x | 92.50% | -0.50 |" in text
    assert (
        "| c28__weight-vae-shared | weight-vae-shared | vae-latents+decoder/N | 300,000 | 133.3x | 88.00% | -3.00 |"
        in text
    )
    frontier.plot(points + merged, tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").stat().st_size > 0

    (extra / "other.json").write_text(json.dumps({**quanto, "name": "x", "twin": "d32"}))
    with pytest.raises(SystemExit, match=r"other\.json: twin 'd32' is not a dense twin here \(known: d28, d56\)"):
        frontier.group_by_twin(points + frontier.load_extra_points([extra]))
    (extra / "other.json").write_text(json.dumps({k: v for k, v in quanto.items() if k != "twin"}))
    with pytest.raises(SystemExit, match=r"other\.json: no 'twin'"):
        frontier.load_extra_points([extra])
    assert (("int4", "all") in frontier.csg_settings()) == ("int4" in STORAGE_DTYPES)


def test_frontier_reads_qat_runs_as_points_of_their_parent(tmp_path):
    frontier = _script("frontier")
    run = tmp_path / "qat" / "tiny-int4"
    (run / "model").mkdir(parents=True)
    (run / "model" / "model.safetensors").write_bytes(b"x" * 1234)
    metrics = {"command": "python scripts/convert.py ...", "parent": "runs/zoo/d28/model", "loss": "kd+labels",
               "qat": {"storage_dtype": "int4", "storage_scope": "all", "storage_group_size": 32},
               "config": {"architecture": "resnet18"}, "history": [{}, {}], "student": "s",
               "final": {"top1": 80.0}, "final_stored": {"top1": 80.0, "num_samples": 100}}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "qat" / "plain").mkdir()
    (tmp_path / "qat" / "plain" / "metrics.json").write_text(json.dumps({**metrics, "qat": None}))  # not QAT: skipped
    [point] = frontier.qat_points(tmp_path / "qat", tmp_path / "out")
    assert (point["twin"], point["method"], point["storage"], point["bits"]) == ("d28", "csg-kd-qat", "int4/all/g32", 4)
    assert (point["bytes"], point["top1"], point["epochs"]) == (1234, 80.0, 2)
    assert frontier.qat_points(tmp_path / "missing", tmp_path / "out") == []


# --- bad input ------------------------------------------------------------------------------------


def test_dataset_without_label_column(tmp_path):
    ds = datasets.Dataset.from_dict(
        {"image": [np.zeros((28, 28), np.uint8)] * 4}, features=datasets.Features({"image": datasets.Image()})
    )
    datasets.DatasetDict({"test": ds}).save_to_disk(tmp_path / "nolabel")
    _, model_dir = _csg_model_dir(tmp_path)
    with pytest.raises(ValueError, match="No label column"):
        _script("eval").main(["--model", str(model_dir), "--dataset", str(tmp_path / "nolabel")])


def test_rgb_dataset_for_greyscale_model_is_converted(tmp_path):
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=FASHION_MNIST_CLASSES)})
    images = [np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8) for i in range(6)]
    ds = datasets.Dataset.from_dict({"img": images, "label": list(range(6))}, features=features)
    datasets.DatasetDict({"test": ds}).save_to_disk(tmp_path / "rgb")
    _, model_dir = _csg_model_dir(tmp_path)
    result = _script("eval").main(["--model", str(model_dir), "--dataset", str(tmp_path / "rgb")])
    assert result["num_samples"] == 6


def test_unknown_split(fashion_repo, tmp_path):
    _, model_dir = _csg_model_dir(tmp_path)
    with pytest.raises(ValueError, match="Unknown split 'validation'"):
        _script("eval").main(["--model", str(model_dir), "--dataset", fashion_repo, "--split", "validation"])


def test_class_count_mismatch(tmp_path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    ds = datasets.Dataset.from_dict({"image": [np.zeros((28, 28), np.uint8)] * 2, "label": [0, 1]}, features=features)
    datasets.DatasetDict({"test": ds}).save_to_disk(tmp_path / "two")
    _, model_dir = _csg_model_dir(tmp_path)
    with pytest.raises(ValueError, match=r"classes \['a', 'b'\] are not the model's"):
        _script("eval").main(["--model", str(model_dir), "--dataset", str(tmp_path / "two")])


def test_missing_dense_baseline_fails_before_training(tmp_path):
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "metrics.json").write_text("{}")
    for path in (tmp_path / "absent.json", tmp_path / "unfinished" / "metrics.json"):
        with pytest.raises(SystemExit, match="--dense-baseline .*not a finished run's metrics.json"):
            _script("train").main(["--csg", "--dense-baseline", str(path), "--dataset", "never/loaded"])


def test_bench_smoke(tmp_path):
    tiny = (
        "--architectures resnet18 --precisions fp32 --repeats 1 --steps 1 --inference-batches 2 --train-batch 4 "
        "--inference-rounds 3"
    )
    results = _script("bench").main([*tiny.split(), "--output", str(tmp_path / "bench.json")])
    inference = results["inference"]["resnet18/latency b2"]
    assert set(inference) == {"dense", "dense_transformers", "csg_generate", "csg_cached", "csg_timm_model_cached",
                              "csg_to_timm", "csg_to_timm_same_memory"}  # fmt: skip
    assert inference["csg_cached"]["twin"] == "dense_transformers"
    assert inference["csg_timm_model_cached"]["twin"] == "csg_to_timm_same_memory"
    low, high = inference["csg_cached"]["paired_interval"]
    assert low <= inference["csg_cached"]["paired_ratio"] <= high and inference["csg_cached"]["samples"] == 3
    assert inference["csg_cached"]["vs_twin"] > 0
    loading = results["loading"]["resnet18/from_pretrained"]
    assert loading["csg"]["checkpoint_bytes"] * 10 < loading["dense"]["checkpoint_bytes"]
    training = results["training"]["resnet18/step b4 fp32"]
    assert training["dense"]["ratio"] == 1.0
    assert training["dense"]["paired_ratio"] == training["dense"]["min_ratio"] == 1.0
    assert set(training) == {"dense", "csg", "csg_all_convs", "dense+generator_gemms",
                             "dense+generator_gemms_all_convs"}  # fmt: skip
    assert "| training step b4 fp32 | resnet18 | csg |" in (tmp_path / "bench.md").read_text()


def test_bench_ratios_of_medians_minimums_and_pairs():
    summarize = _script("bench").summarize
    # the same 10% slower in every round, under load that varies from round to round: all three agree
    steady = summarize({"dense": [1.0, 2.0, 1.5], "csg": [1.1, 2.2, 1.65]}, "dense")["csg"]
    assert steady["ratio"] == pytest.approx(1.1) and steady["min_ratio"] == pytest.approx(1.1)
    assert steady["paired_ratio"] == pytest.approx(1.1)
    # two rounds, each variant hit by load once: the estimators differ, each as defined
    noisy = summarize({"dense": [1.0, 4.0], "csg": [2.0, 2.0]}, "dense")["csg"]
    assert noisy["ratio"] == pytest.approx(2.0 / 2.5)
    assert noisy["min_ratio"] == pytest.approx(2.0)
    assert noisy["paired_ratio"] == pytest.approx((2.0 + 0.5) / 2)


@pytest.mark.parametrize("name", sorted(p.stem for p in SCRIPTS.glob("*.py")))
def test_scripts_have_help(name):
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), "--help"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and out.stdout.startswith("usage:"), out.stderr


def _run_metrics(folder, command, epochs, top1, config=None, **extra):
    folder.mkdir(parents=True)
    config = {"architecture": "resnet18", "slice_size": 12, "code_dim": 72, "generate_pointwise": False,
              "pointwise_slice_size": 36, "image_size": 28, **(config or {})}  # fmt: skip
    history = [{"epoch": e + 1, "eval_top1": top1 - (epochs - 1 - e)} for e in range(epochs)]
    metrics = {"command": command, "config": config, "training": {"epochs": epochs}, "final": {"top1": top1},
               "history": history, "wall_seconds": 60.0 * max(1, epochs), **extra}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_conversion_report_tables_and_refusals(tmp_path):
    report = _script("conversion_report")
    conv = "python scripts/convert.py --parent p --init {init} {more}"
    runs = [
        _run_metrics(tmp_path / "kd0", conv.format(init="least_squares", more="--epochs 0"), 0, 47.0,
                     init="least_squares", loss="kd+labels", parent_top1=91.0),
        _run_metrics(tmp_path / "rand0", conv.format(init="random", more="--epochs 0"), 0, 10.0,
                     init="random", loss="kd+labels", parent_top1=91.0),
        _run_metrics(tmp_path / "kd2", conv.format(init="least_squares", more="--epochs 2"), 2, 90.5,
                     init="least_squares", loss="kd+labels", parent_top1=91.0),
        _run_metrics(tmp_path / "scratch2", "python scripts/train.py --csg --epochs 2", 2, 88.25, csg=True,
                     dense_baseline_top1=91.0),
        _run_metrics(tmp_path / "abl-ls-kd", conv.format(init="least_squares", more="--train-limit 500 --no-labels"),
                     1, 70.0, init="least_squares", loss="kd", parent_top1=91.0),
        _run_metrics(tmp_path / "abl-random-labels", conv.format(init="random", more="--train-limit 500 --alpha 0"),
                     1, 60.0, init="random", loss="labels", parent_top1=91.0),
    ]  # fmt: skip
    text = report.main([*map(str, runs), "--output", str(tmp_path / "out")])
    assert "| 2 | 90.50 (-0.50) | 88.25 (-2.75) | 2 / 2 |" in text
    assert "| 0 | 47.00 (-44.00) | 10.00 (-81.00) |" in text
    assert "- 2 epoch(s) distilled, 90.50%: no from-scratch schedule run reaches it (longest: 2 epochs, 88.25%)" in text
    assert "500 training images x 1 epoch(s)" in text
    assert "| least_squares | - | 70.00 | - |" in text and "| random | 60.00 | - | - |" in text
    assert (tmp_path / "out" / "conversion.png").stat().st_size > 0
    other = _run_metrics(tmp_path / "s16", "python scripts/train.py --csg", 2, 88.0, {"slice_size": 16}, csg=True)
    with pytest.raises(SystemExit, match="different CSG settings"):
        report.main([str(runs[2]), str(other), "--output", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="no metrics.json"):
        report.main([str(tmp_path / "missing"), "--output", str(tmp_path / "out")])
