"""Build the zoo table and plot from training runs, and export CSG runs as Hub-ready model folders.

Reads every `RUNS/*/metrics.json` written by `scripts/train.py` and writes a markdown table (stored
parameters, ratio, test top-1, delta vs the dense run of the same architecture, epochs, wall time,
training command) and a PNG of top-1 against stored parameters. With `--export-to DIR`, each CSG
run is written to `DIR/<run name>/` (except the names in `HUB_NAMES`: the flagships' Hub names): config, weights,
image processor and a fresh card (README.md) whose `model-index` holds the run's measured test top-1, so
`scripts/eval.py` can re-check it. Conversions (`scripts/convert.py` runs, e.g. `--runs runs/convert --only
kd-ls-5ep --export-name resnet18-csg-from-dense`) export the same way, with the parent as dense baseline and
`base_model` (a local parent folder `runs/zoo/<run>/model` is named `<namespace>/<run>`, as its own export
would be). A run that stored fewer bits than float32 is reported by its stored weights' top-1.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

MAX_CHECKPOINT_BYTES = 25 * 1024 * 1024  # a zoo folder is committed to git: keep it under 25 MB
# The flagships go out under the names users ask for (`from_pretrained("org/resnet50-csg")`); every other run
# under its own name, except the 3-epoch run that held the all-convs flagship's name before it converged.
# Cards record the training command, whose --output-dir names the run.
HUB_NAMES = {
    "resnet50-csg-32px-15ep": "resnet50-csg",
    "resnet50-csg-allconvs-32px-15ep": "resnet50-csg-allconvs",
    "resnet50-csg-allconvs": "resnet50-csg-allconvs-3ep",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", default="runs/zoo", help="folder of training runs (one sub-folder per run)")
    p.add_argument("--only", nargs="*", default=None, help="run names to include (default: all)")
    p.add_argument("--exclude", nargs="*", default=(), help="run names to leave out")
    p.add_argument("--markdown", default=None, help="where to write the table (default RUNS/zoo.md; '' for none)")
    p.add_argument("--plot", default=None, help="where to write the PNG (default RUNS/zoo.png; '' for none)")
    p.add_argument("--export-to", default=None, help="copy CSG runs' model folders here (e.g. model_cards)")
    p.add_argument("--export-name", default=None, help="folder (and card) name for the export of a single run")
    p.add_argument("--namespace", default="csg-hub", help="Hub namespace the exported cards name")
    p.add_argument("--dataset-id", default="zalando-datasets/fashion_mnist", help="dataset the cards report on")
    p.add_argument(
        "--note",
        default="`data/fashion_mnist` in the command is `zalando-datasets/fashion_mnist` rebuilt offline from "
        "Debian's IDX files by `python scripts/prepare_fashion_mnist.py --save-to-disk data/fashion_mnist`.",
        help="line added to the cards' training section",
    )
    return p.parse_args(argv)


def load_runs(folder: Path, only: list[str] | None = None, exclude=()) -> list[dict]:
    runs = []
    for path in sorted(folder.glob("*/metrics.json")):
        if (only and path.parent.name not in only) or path.parent.name in exclude:
            continue
        metrics = json.loads(path.read_text())
        metrics["name"] = path.parent.name
        if "parent" in metrics:  # a conversion: a CSG run whose dense baseline is its parent
            metrics.update(csg=True, model=metrics["config"]["architecture"], dense_baseline_top1=metrics["parent_top1"])
        runs.append(metrics)
    if not runs:
        raise SystemExit(f"No runs with a metrics.json under {folder}: train some with scripts/train.py first.")
    return runs


def run_setting(run: dict) -> str:
    """A run's setting as the tables name it: `dense`, or `CSG s=.. d=..` (+1x1, stored dtype)."""
    if not run["csg"]:
        return "dense"
    config = run["config"]
    setting = f"CSG s={config['slice_size']} d={config['code_dim']}"
    if config.get("generate_pointwise"):
        setting += f" +1x1 s={config['pointwise_slice_size']}"
    stored = config.get("storage_dtype", "float32")
    return setting + (f", {stored} {config.get('storage_scope', 'csg')}" if stored != "float32" else "")


def published(run: dict) -> dict:
    """The test metrics of what the run published: its stored (rounded) weights when it stored fewer bits
    than float32 (`final_stored`), else the trained float32 weights (`final`)."""
    return run.get("final_stored") or run["final"]


def table_rows(runs: list[dict]) -> list[dict]:
    dense_top1 = {r["model"]: r["final"]["top1"] for r in runs if not r["csg"]}
    rows = []
    for run in runs:
        baseline = run.get("dense_baseline_top1") or dense_top1.get(run["model"])
        rows.append(
            {
                "name": run["name"],
                "model": run["model"],
                "setting": run_setting(run),
                "stored_params": run["report"]["stored_params"],
                "ratio": run["report"]["ratio"],
                "top1": published(run)["top1"],
                "delta": None if baseline is None or not run["csg"] else published(run)["top1"] - baseline,
                "epochs": len(run["history"]),
                "wall_minutes": run["wall_seconds"] / 60,
                "command": run["command"],
            }
        )
    return sorted(rows, key=lambda r: (r["model"], r["setting"] != "dense", -r["stored_params"]))


def markdown(rows: list[dict]) -> str:
    lines = [
        "| run | model | setting | stored params | ratio | test top-1 | Δ vs dense | epochs | wall (min) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        delta = "" if r["delta"] is None else f"{r['delta']:+.2f}"
        lines.append(
            f"| {r['name']} | {r['model']} | {r['setting']} | {r['stored_params']:,} | {r['ratio']:.2f}x "
            f"| {r['top1']:.2f}% | {delta} | {r['epochs']} | {r['wall_minutes']:.0f} |"
        )
    lines += ["", "Training commands:", ""]
    lines += [f"- `{r['name']}`: `{r['command']}`" for r in rows]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib
    except ImportError as err:
        raise SystemExit("The plot needs matplotlib: pip install -e '.[zoo]' (or pass --plot '').") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in sorted({r["model"] for r in rows}):
        points = sorted(
            (r["stored_params"], r["top1"], f"{r['setting']}, {r['epochs']} ep") for r in rows if r["model"] == model
        )
        line = ax.plot([p[0] for p in points], [p[1] for p in points], "o--", label=model)[0]
        for i, (params, top1, label) in enumerate(points):
            # alternate above/below so that neighbouring runs of one model do not overprint
            offset = (4, 5) if i % 2 == 0 else (4, -12)
            ax.annotate(label, (params, top1), fontsize=7, xytext=offset, textcoords="offset points",
                        color=line.get_color())  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("stored parameters")
    ax.set_ylabel("Fashion-MNIST test top-1 (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _base_model(parent: str | None, namespace: str) -> str | None:
    """The Hub id a card names as `base_model`: a Hub parent as given; a local parent folder (a run's
    `model/`) as the repo its own export would be, `<namespace>/<run name>`."""
    if parent is None:
        return None
    if not Path(parent).exists():
        if parent.startswith((".", "/")) or parent.count("/") != 1:
            raise SystemExit(f"The conversion's parent {parent!r} is neither a folder here nor a Hub repo id: run the "
                             "export from the folder the conversion ran in.")  # fmt: skip
        return parent
    folder = Path(parent).resolve()
    return f"{namespace}/{folder.parent.name if folder.name == 'model' else folder.name}"


def export(
    runs: list[dict], runs_folder: Path, target: Path, namespace: str, dataset_id: str, note: str, name: str | None = None
) -> list[Path]:
    """Write each CSG run as a Hub-ready folder `target/<run name>/`: config.json, model.safetensors (with its
    digest), preprocessor_config.json and a card whose `model-index` holds the run's measured test top-1 on
    `dataset_id`. The model comes from the run's `model/` folder, or, for runs whose folder was not kept,
    from the export already there (re-exported in place, weights unchanged)."""
    import tempfile

    import torch

    import csg_hub
    from csg_hub.hub.cards import save_card
    from csg_hub.integrity import recorded_digest

    exported = []
    runs = [run for run in runs if run["csg"]]  # dense baselines are not committed: their metrics.json and logs are
    if name and len(runs) != 1:
        raise SystemExit(f"--export-name names one export, but {len(runs)} CSG runs are selected: use --only RUN.")
    names = {run["name"]: name or HUB_NAMES.get(run["name"], run["name"]) for run in runs}
    clashes = sorted(n for n in set(names.values()) if list(names.values()).count(n) > 1)
    if clashes:
        raise SystemExit(f"Two runs would export to {target}/{clashes[0]}: "
                         f"{[r for r, n in names.items() if n == clashes[0]]}. Rename one run or use --only.")  # fmt: skip
    for run in runs:
        folder = target / names[run["name"]]
        source = runs_folder / run["name"] / "model"
        source = source if (source / "model.safetensors").exists() else folder
        if not (source / "model.safetensors").exists():
            raise SystemExit(f"{runs_folder / run['name'] / 'model'} lacks model.safetensors: did {run['name']} finish?")
        model = csg_hub.CSGForImageClassification.from_pretrained(source)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            size = (Path(tmp) / "model.safetensors").stat().st_size
            if size > MAX_CHECKPOINT_BYTES:
                raise SystemExit(f"{run['name']}: model.safetensors is {size / 2**20:.1f} MiB, over the zoo's 25 MiB.")
            saved = csg_hub.CSGForImageClassification.from_pretrained(tmp).state_dict()
            changed = [k for k, v in before.items() if not torch.equal(v, saved[k])]
            if changed:
                raise SystemExit(f"{run['name']}: re-saving changed {changed[:3]}; not exported.")
            folder.mkdir(parents=True, exist_ok=True)
            for path in Path(tmp).iterdir():
                shutil.copy2(path, folder / path.name)
        final = published(run)
        card = csg_hub.model_card(
            model,
            f"{namespace}/{folder.name}",
            results=[
                csg_hub.accuracy_result(
                    final["top1"], dataset_id, split=run["eval_split"], num_samples=final["num_samples"]
                )
            ],
            checkpoint_bytes=size,
            training_command=run["command"],
            dense_baseline=run.get("dense_baseline_top1"),
            base_model=_base_model(run.get("parent"), namespace),
            weights_digest=recorded_digest(folder / "model.safetensors"),
            tags=[dataset_id.split("/")[-1], *(["distillation"] if run.get("parent") else [])],
            notes=note + _conversion_note(run),
        )
        save_card(card, folder)  # README.md and .eval_results/*.yaml
        exported.append(folder)
    return exported


def _conversion_note(run: dict) -> str:
    """How a convert.py run made its model: fitted to the dense parent, or fine-tuned from a CSG student (with
    quantization-aware training against its storage), then distilled from the parent."""
    if not run.get("parent"):
        return ""
    epochs, loss = run["training"]["epochs"], run["loss"]
    if run.get("init") != "student":
        return (f" Converted from the dense parent `{run['parent']}` (`from_dense`, init {run['init']}) and trained "
                f"{epochs} epochs against it by knowledge distillation (loss: {loss}).")  # fmt: skip
    qat = run.get("qat")
    how = (f" with quantization-aware training against its {qat['storage_dtype']} storage (scope "
           f"{qat['storage_scope']}, groups of {qat['storage_group_size']}; straight-through estimator)") if qat else ""  # fmt: skip
    return (f" Fine-tuned from the CSG model `{run['student']}` (a conversion of the dense parent `{run['parent']}`)"
            f"{how} for {epochs} epochs, distilled from that parent (loss: {loss}).")  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    runs_folder = Path(args.runs)
    runs = load_runs(runs_folder, args.only, args.exclude)
    rows = table_rows(runs)
    args.markdown = runs_folder / "zoo.md" if args.markdown is None else args.markdown
    args.plot = runs_folder / "zoo.png" if args.plot is None else args.plot
    if args.markdown:
        text = markdown(rows)
        Path(args.markdown).write_text(text)
        print(text)
    if args.plot:
        plot(rows, Path(args.plot))
        print(f"plot: {args.plot}")
    if args.export_to:
        exported = export(runs, runs_folder, Path(args.export_to), args.namespace, args.dataset_id, args.note, args.export_name)
        for folder in exported:
            print(f"exported {folder}")
    return rows


if __name__ == "__main__":
    main()
