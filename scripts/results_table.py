"""Build the zoo's results table (timm's `results/results-*.csv`) and the package's index (`csg_hub/zoo_index.json`,
read by `csg_hub.list_pretrained` / `pretrained_info`) from the committed metrics and the model_cards folders.

One row per model_cards folder: its card names the run (the training command's --output-dir: `runs/zoo/<run>` or
`runs/convert/<run>`) whose metrics.json gives top-5 and the dense twin (--dense-baseline, or a conversion's
parent); top-1 is the card's `model-index` value (checked against the run's); parameters and bytes per stored
dtype come from the config alone (the model built on the meta device: `parameter_report`, `storage_sizes`);
checkpoint_bytes is the committed model.safetensors. The dense twins follow as rows of setting "dense" (CSV
only: no repo): stored = materialized params, bytes_float32 = 4 x (params + buffers), other bytes empty.
`--check` writes nothing and exits 1 when the committed CSV or index differ from what would be written.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASET_ID = "zalando-datasets/fashion_mnist"
STORAGE_KEYS = ("float32", "float16/csg", "float16/all", "bfloat16/csg", "bfloat16/all", "int8/csg", "int8/all",
                "int4/csg", "int4/all", "int2/csg", "int2/all")  # int4 / int2 at each config's storage_group_size
COLUMNS = [
    "model", "repo_id", "architecture", "setting", "img_size", "top1", "top5", "stored_params", "materialized_params",
    "storage", "checkpoint_bytes", *(f"bytes_{k.replace('/', '_')}" for k in STORAGE_KEYS), "dense_twin",
    "dense_top1", "recovery",
]  # fmt: skip
INDEX_FIELDS = ["repo_id", "architecture", "setting", "image_size", "top1", "top5", "stored_params",
                "materialized_params", "storage", "checkpoint_bytes", "dense_twin", "dense_top1", "recovery"]  # fmt: skip


def _zoo_table():
    """scripts/zoo_table.py (run mapping, settings, published metrics), loaded however this script is run."""
    spec = importlib.util.spec_from_file_location("zoo_table", Path(__file__).resolve().parent / "zoo_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cards", default=str(ROOT / "model_cards"), help="the zoo's model folders")
    p.add_argument("--csv", default=str(ROOT / "results" / "results-fashion-mnist.csv"), help="table to write")
    p.add_argument("--index", default=str(ROOT / "csg_hub" / "zoo_index.json"), help="package index to write")
    p.add_argument("--dataset-id", default=DATASET_ID, help="dataset whose test top-1 the cards report")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if the CSV or index is stale")
    return p.parse_args(argv)


def _card_top1(card, dataset_id: str, folder: Path) -> float:
    for r in card.data.eval_results or []:
        if r.dataset_type == dataset_id and r.dataset_split == "test" and r.metric_type == "accuracy":
            return float(r.metric_value)
    raise SystemExit(f"{folder}/README.md has no test accuracy on {dataset_id} in its model-index.")


def _run_dir(command: str, folder: Path) -> Path:
    found = re.search(r"--output-dir (\S+)", command or "")
    if not found or not (ROOT / found.group(1) / "metrics.json").exists():
        raise SystemExit(f"{folder}/README.md's training command names no committed run (--output-dir with a "
                         f"metrics.json): {command!r}")  # fmt: skip
    return ROOT / found.group(1)


def _dense_twin(run: dict) -> str | None:
    """The dense run a CSG run is compared with: --dense-baseline's run, or a conversion's parent run."""
    if run.get("parent"):
        parent = Path(run["parent"])
        return (parent.parent if parent.name == "model" else parent).name
    found = re.search(r"--dense-baseline (\S+)", run["command"])
    return Path(found.group(1)).parent.name if found else None


def card_row(folder: Path, dataset_id: str, zoo_table, dense_runs: dict[str, dict]) -> dict:
    """The table row of one model_cards folder (see the module docstring for where each value comes from)."""
    import torch
    from huggingface_hub import ModelCard

    import csg_hub
    from csg_hub.hub.cards import card_fields
    from csg_hub.storage import storage_sizes

    card = ModelCard.load(folder / "README.md")
    top1 = _card_top1(card, dataset_id, folder)
    run_dir = _run_dir(card_fields(card).get("training_command", ""), folder)
    run = zoo_table.load_runs(run_dir.parent, only=[run_dir.name])[0]
    published = zoo_table.published(run)
    if round(published["top1"], 2) != top1:
        raise SystemExit(f"{folder.name}: the card says top-1 {top1}, its run {run_dir} {published['top1']}.")
    repo = re.search(r"scripts/eval\.py --model (\S+)", card.text)
    config = csg_hub.CSGConfig.from_pretrained(folder)
    with torch.device("meta"):  # shapes only: no weights read or allocated
        model = csg_hub.CSGForImageClassification(config)
    report, sizes = csg_hub.parameter_report(model), storage_sizes(model)
    twin = _dense_twin(run)
    dense = dense_runs.setdefault(twin, zoo_table.load_runs(ROOT / "runs" / "zoo", only=[twin])[0]) if twin else None
    dense_top1 = dense["final"]["top1"] if dense else None
    return {
        "model": folder.name,
        "repo_id": repo.group(1) if repo else f"csg-hub/{folder.name}",
        "architecture": config.architecture,
        "setting": zoo_table.run_setting(run),
        "img_size": config.image_size,
        "top1": top1,
        "top5": published["top5"],
        "stored_params": report["stored_params"],
        "materialized_params": report["dense_params"],
        "storage": config.storage_dtype if config.storage_dtype == "float32" else f"{config.storage_dtype}/"
        f"{config.storage_scope}",
        "checkpoint_bytes": (folder / "model.safetensors").stat().st_size,
        **{f"bytes_{k.replace('/', '_')}": sizes[k] for k in STORAGE_KEYS},
        "dense_twin": twin,
        "dense_top1": dense_top1,
        "recovery": round(100 * top1 / dense_top1, 2) if dense_top1 else None,
    }


def dense_row(name: str, run: dict, image_size: int) -> dict:
    report = run["report"]
    return {"model": name, "architecture": run["model"], "setting": "dense", "img_size": image_size,
            "top1": run["final"]["top1"], "top5": run["final"]["top5"], "stored_params": report["stored_params"],
            "materialized_params": report["dense_params"], "storage": "float32",
            "bytes_float32": 4 * (report["dense_params"] + report["stored_buffers"])}  # fmt: skip


def build_rows(cards: Path, dataset_id: str = DATASET_ID) -> list[dict]:
    """The table: one row per model folder in `cards` (by architecture, then top-1), then the dense twins."""
    zoo_table = _zoo_table()
    dense_runs: dict[str, dict] = {}
    folders = sorted(p.parent for p in cards.glob("*/config.json"))
    if not folders:
        raise SystemExit(f"No model folders (*/config.json) under {cards}.")
    rows = [card_row(folder, dataset_id, zoo_table, dense_runs) for folder in folders]
    rows.sort(key=lambda r: (r["architecture"], -r["top1"], r["model"]))
    sizes = {r["dense_twin"]: r["img_size"] for r in rows}
    rows += [dense_row(name, dense_runs[name], sizes[name]) for name in sorted(dense_runs)]
    return rows


def csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if row.get(k) is None else row[k] for k in COLUMNS} for row in rows)
    return out.getvalue()


def index_text(rows: list[dict]) -> str:
    """The package index: the loadable entries (rows with a Hub repo) by name."""
    entries = {
        row["model"]: {f: row["img_size" if f == "image_size" else f] for f in INDEX_FIELDS}
        for row in sorted(rows, key=lambda r: r["model"])
        if row.get("repo_id")
    }
    return json.dumps(entries, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = build_rows(Path(args.cards), args.dataset_id)
    outputs = {Path(args.csv): csv_text(rows), Path(args.index): index_text(rows)}
    if args.check:
        stale = [str(p) for p, text in outputs.items() if not p.exists() or p.read_text() != text]
        for path in stale:
            print(f"stale: {path} (run python scripts/results_table.py)", file=sys.stderr)
        return 1 if stale else 0
    from csg_hub.atomic_write import write_file_atomic

    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(path, text)
        print(f"wrote {path} ({len(rows)} rows)" if path.suffix == ".csv" else f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
