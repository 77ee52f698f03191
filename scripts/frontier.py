"""Bytes on disk against test top-1: every zoo model in each storage dtype, against its dense twin.

For each CSG model folder (`--models`): float32 (the run's measured top-1, from its metrics.json), and the
checkpoint saved as float16 (every weight matrix), int8 (codes and generators) and int8 (every weight
matrix), each reloaded through `from_pretrained` (dequantized) and evaluated on the test split. For each
dense twin whose weights are on disk (`runs/zoo/<run>/model`): float32, and round trips through fp16,
int8 and int4 (per-channel, `csg_hub.vae.baselines`); a dense twin without weights contributes the points
measured while they were on disk (`--dense-runs` measures a dense run before its CSG twins exist), else its
float32 point from its metrics.json (bytes = 4 x (parameters + buffers)). One JSON per point in
`--output/points/`, a markdown table and a PNG (log-scale bytes).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import tempfile
from pathlib import Path

CSG_SETTINGS = [("float16", "all"), ("int8", "csg"), ("int8", "all")]
DENSE_SCHEMES = ("fp16", "int8", "int4")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="*", default=[],
                   help="CSG model folders (their cards' training command names the run; else the folder's name)")
    p.add_argument("--cards", default=None,
                   help="measure every CSG folder under this folder whose training run is under --runs (e.g. model_cards)")
    p.add_argument("--dense-runs", nargs="*", default=[],
                   help="dense runs to measure as well, e.g. right after training while their weights are on disk "
                        "(their CSG twins are trained later; points already measured are reused)")  # fmt: skip
    p.add_argument("--runs", default="runs/zoo", help="training runs (metrics.json per run)")
    p.add_argument("--dataset", default="data/fashion_mnist", help="evaluation dataset (Hub id or folder)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (smoke tests)")
    p.add_argument("--output", default="runs/frontier", help="folder for points/*.json, frontier.md, frontier.png")
    p.add_argument("--redo", action="store_true", help="measure points whose JSON already exists again")
    return p.parse_args(argv)


def _option(command: str, option: str) -> str | None:
    """The value a training command gives `option`, read as argparse reads it (the last one wins)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(option)
    return getattr(parser.parse_known_args(shlex.split(command))[0], option.lstrip("-").replace("-", "_"))


def _dense_run(csg_run: dict) -> str | None:
    baseline = _option(csg_run["command"], "--dense-baseline")
    return Path(baseline).parent.name if baseline else None


def _evaluate(model, data_config, dataset, batch_size: int = 256) -> dict:
    from csg_hub.data import classification_loader
    from csg_hub.evaluation import evaluate

    return evaluate(model, classification_loader(dataset, data_config, batch_size))


def run_name(folder: Path) -> str:
    """The training run a model folder came from: the `--output-dir` of the training command its card
    records (a flagship export such as `resnet50-csg` is named for the Hub, not after its run), else the
    folder's name."""
    from huggingface_hub import ModelCard

    from csg_hub.hub.cards import card_fields

    readme = folder / "README.md"
    command = card_fields(ModelCard.load(readme)).get("training_command") if readme.exists() else None
    output_dir = _option(command, "--output-dir") if command else None
    return Path(output_dir).name if output_dir else folder.name


def zoo_folders(cards: Path, runs: Path) -> list[Path]:
    """The CSG folders under `cards` whose training run has a metrics.json under `runs` (conversions have
    their own runs folder and table)."""
    folders = [f for f in sorted(cards.iterdir()) if (f / "config.json").exists()]
    return [f for f in folders if (runs / run_name(f) / "metrics.json").exists()]


def _point_path(out: Path, name: str) -> Path:
    return out / "points" / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}.json"


def _point(out: Path, name: str, redo: bool, measure) -> dict:
    path = _point_path(out, name)
    if path.exists() and not redo:
        return json.loads(path.read_text())
    point = {"name": name, **measure()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(point, indent=2) + "\n")
    print(json.dumps(point))
    return point


def _trained_weights(folder: Path, run: dict, runs: Path) -> Path | None:
    """The run's float32 weights when the folder stores fewer bits: the resume checkpoint of its last epoch
    (`train.py` keeps it in `<run>/checkpoint/`, git-ignored), else None."""
    config = json.loads((folder / "config.json").read_text())
    if config.get("storage_dtype", "float32") == "float32":
        return None
    checkpoint = runs / run["name"] / "checkpoint"
    if not (checkpoint / "model.safetensors").exists():
        return None
    if not (checkpoint / "progress.json").exists():
        raise SystemExit(f"{checkpoint} has weights but no progress.json: not a train.py resume checkpoint.")
    epoch = json.loads((checkpoint / "progress.json").read_text())["epoch"]
    if epoch != len(run["history"]):
        raise SystemExit(f"{checkpoint} holds epoch {epoch}, but the run {run['name']} trained {len(run['history'])}.")
    from csg_hub.integrity import verify_safetensors

    verify_safetensors(checkpoint / "model.safetensors", "resume checkpoint")  # as `train.py --resume` does
    return checkpoint / "model.safetensors"


def csg_points(folder: Path, run: dict, dataset, out: Path, redo: bool, runs: Path) -> list[dict]:
    """The run in float32 (its trained top-1 from metrics.json) and each `CSG_SETTINGS` storage, measured.
    A folder stored in fewer bits than float32 is measured from the run's float32 weights when they are on
    disk; without them only its own storage is measured (rounding rounded weights again would not show what
    that storage costs the trained model)."""
    from safetensors.torch import load_file

    import csg_hub
    from csg_hub.training import load_into

    base = {"run": run["name"], "model": run["model"], "kind": "csg", "folder": str(folder)}
    stored_as = json.loads((folder / "config.json").read_text())
    stored_as = (stored_as.get("storage_dtype", "float32"), stored_as.get("storage_scope", "csg"))
    trained = _trained_weights(folder, run, runs)

    def model_in(dtype: str, scope: str):
        model = csg_hub.CSGForImageClassification.from_pretrained(folder)
        if trained is not None:
            load_into(model, load_file(trained), f"the float32 weights of {run['name']} ({trained})")
        model.config.storage_dtype, model.config.storage_scope = dtype, scope
        return model

    def recorded() -> dict:
        with tempfile.TemporaryDirectory() as tmp:  # the bytes of a float32 checkpoint do not depend on the values
            model_in("float32", "csg").save_pretrained(tmp)
            size = (Path(tmp) / "model.safetensors").stat().st_size
        return {**base, "storage": "float32", "bytes": size, "top1": run["final"]["top1"],
                "source": f"{run['name']}/metrics.json"}  # fmt: skip

    points = [_point(out, f"{run['name']}__float32", redo, recorded)]
    for dtype, scope in CSG_SETTINGS:
        name = f"{run['name']}__{dtype}-{scope}"
        if stored_as[0] != "float32" and trained is None and (dtype, scope) != stored_as:
            if _point_path(out, name).exists():
                points.append(json.loads(_point_path(out, name).read_text()))
            else:
                print(f"{name}: not measured ({folder} is stored as {'/'.join(stored_as)}; the run's float32 "
                      f"weights are not on disk)")  # fmt: skip
            continue

        def measure(dtype=dtype, scope=scope) -> dict:
            with tempfile.TemporaryDirectory() as tmp:
                model_in(dtype, scope).save_pretrained(tmp)
                size = (Path(tmp) / "model.safetensors").stat().st_size
                stored = csg_hub.CSGForImageClassification.from_pretrained(tmp)
                metrics = _evaluate(stored, stored.config.data_config, dataset)
            return {**base, "storage": f"{dtype}/{scope}", "bytes": size, "top1": metrics["top1"],
                    "num_samples": metrics["num_samples"],
                    "source": "measured" + (" (from the run's float32 weights)" if trained else "")}  # fmt: skip

        points.append(_point(out, name, redo and (trained is not None or stored_as[0] == "float32"), measure))
    return points


def dense_points(name: str, runs: Path, dataset, out: Path, redo: bool) -> list[dict]:
    import timm
    from timm.data import resolve_data_config

    from csg_hub.vae.baselines import round_trip

    metrics = json.loads((runs / name / "metrics.json").read_text())
    base = {"run": name, "model": metrics["model"], "kind": "dense"}
    report = metrics["report"]
    folder = runs / name / "model"
    weights = folder / "model.safetensors"

    def recorded() -> dict:
        size = weights.stat().st_size if weights.exists() else 4 * (report["dense_params"] + report["stored_buffers"])
        return {**base, "storage": "fp32", "bytes": size, "bytes_estimated": not weights.exists(),
                "top1": metrics["final"]["top1"], "source": f"{name}/metrics.json"}  # fmt: skip

    # without the weights, points measured while they were on disk are kept, even under --redo
    redo = redo and weights.exists()
    points = [_point(out, f"{name}__fp32", redo, recorded)]
    for scheme in DENSE_SCHEMES:
        if not weights.exists() and not _point_path(out, f"{name}__{scheme}").exists():
            continue  # weights not kept and never measured while they were: float32 only

        def measure(scheme=scheme) -> dict:
            model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
            rounded, size = round_trip(model, scheme)
            metrics_ = _evaluate(rounded, resolve_data_config(model=model), dataset)
            return {**base, "storage": scheme, "bytes": size, "top1": metrics_["top1"],
                    "num_samples": metrics_["num_samples"], "source": "measured (round trip)"}  # fmt: skip

        points.append(_point(out, f"{name}__{scheme}", redo, measure))
    return points


def table(points: list[dict]) -> str:
    dense_fp32 = {p["run"]: p for p in points if p["kind"] == "dense" and p["storage"] == "fp32"}
    lines = ["| model | run | stored as | bytes | smaller than its dense fp32 | test top-1 | Δ vs dense fp32 |",
             "|---|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for p in sorted(points, key=lambda p: (p["model"], p.get("twin") or p["run"], p["kind"], -p["bytes"])):
        twin = dense_fp32.get(p.get("twin") or p["run"])
        ratio = f"{twin['bytes'] / p['bytes']:.1f}x" if twin else ""
        delta = f"{p['top1'] - twin['top1']:+.2f}" if twin and p is not twin else ""
        size = f"{p['bytes']:,}" + (" (4 B/param, weights not kept)" if p.get("bytes_estimated") else "")
        lines.append(f"| {p['model']} | {p['run']} | {p['kind']} {p['storage']} | {size} | {ratio} "
                     f"| {p['top1']:.2f}% | {delta} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # colour = run, marker = storage (no text labels: the points of one run sit too close for them)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    shapes = {"fp32": "o", "float32": "o", "fp16": "^", "float16/all": "^", "int8/csg": "v", "int8": "s",
              "int8/all": "s", "int4": "D"}  # fmt: skip
    # tab20's hues come in dark/light pairs that neighbouring runs would share: its dark half, tab20b's and
    # tab20c's darkest of each group, then tab20's light half (30 distinct colours)
    palette = [plt.cm.tab20(2 * k) for k in range(10)] + [plt.cm.tab20b(4 * k) for k in range(5)]
    palette += [plt.cm.tab20c(4 * k) for k in range(5)] + [plt.cm.tab20(2 * k + 1) for k in range(10)]
    for i, run in enumerate(sorted({p["run"] for p in points})):
        chosen = sorted((p for p in points if p["run"] == run), key=lambda p: p["bytes"])
        color = palette[i % len(palette)]
        dense = chosen[0]["kind"] == "dense"
        ax.plot([p["bytes"] for p in chosen], [p["top1"] for p in chosen], "-" if not dense else ":", color=color,
                lw=0.8, alpha=0.7, label=run)  # fmt: skip
        for p in chosen:
            ax.plot(p["bytes"], p["top1"], shapes.get(p["storage"], "x"), color=color, ms=6,
                    mfc="none" if dense else color)  # fmt: skip
    for storage, shape in (("fp32", "o"), ("fp16", "^"), ("int8 (CSG: codes + generators)", "v"),
                           ("int8 (CSG: every matrix)", "s"), ("int4", "D")):  # fmt: skip
        ax.plot([], [], shape, color="grey", label=storage)
    ax.set_xscale("log")
    ax.set_xlabel("bytes on disk (log scale)")
    ax.set_ylabel("Fashion-MNIST test top-1 (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5), title="run (hollow: dense) / storage",
              title_fontsize=7)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    runs, out = Path(args.runs), Path(args.output)
    models = list(map(Path, args.models)) + (zoo_folders(Path(args.cards), runs) if args.cards else [])
    if not models and not args.dense_runs:
        raise SystemExit("Nothing to measure: name CSG model folders (--models or --cards) and/or dense runs "
                         "(--dense-runs).")  # fmt: skip
    from csg_hub.data import load_image_dataset

    dataset = load_image_dataset(args.dataset, args.split, limit=args.limit)
    missing = [name for name in args.dense_runs if not (runs / name / "metrics.json").exists()]
    if missing:
        raise SystemExit(f"--dense-runs {' '.join(missing)}: no metrics.json under {runs}/<run>/ (a finished run?).")
    points, twins = [], set(args.dense_runs)
    for folder in models:
        name = run_name(folder)
        run_metrics = runs / name / "metrics.json"
        if not run_metrics.exists():
            raise SystemExit(f"{folder} has no training run at {run_metrics}: its card's training command names "
                             "no run there (--output-dir), nor does the folder's name.")  # fmt: skip
        run = {**json.loads(run_metrics.read_text()), "name": name}
        twin = _dense_run(run)
        for point in csg_points(folder, run, dataset, out, args.redo, runs):
            points.append({**point, "twin": twin})
        if twin:
            twins.add(twin)
    for twin in sorted(twins):
        points += dense_points(twin, runs, dataset, out, args.redo)
    text = table(points)
    (out / "frontier.md").write_text(text)
    print(text)
    plot(points, out / "frontier.png")
    return points


if __name__ == "__main__":
    main()
