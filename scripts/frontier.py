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
    p.add_argument("--models", nargs="*", default=[], help="CSG model folders (each named after its run)")
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


def _dense_run(csg_run: dict) -> str | None:
    args = shlex.split(csg_run["command"])
    if "--dense-baseline" not in args:
        return None
    return Path(args[args.index("--dense-baseline") + 1]).parent.name


def _evaluate(model, data_config, dataset, batch_size: int = 256) -> dict:
    from csg_hub.data import classification_loader
    from csg_hub.evaluation import evaluate

    return evaluate(model, classification_loader(dataset, data_config, batch_size))


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


def csg_points(folder: Path, run: dict, dataset, out: Path, redo: bool) -> list[dict]:
    import csg_hub

    base = {"run": run["name"], "model": run["model"], "kind": "csg", "folder": str(folder)}

    def recorded() -> dict:
        size = (folder / "model.safetensors").stat().st_size
        return {**base, "storage": "float32", "bytes": size, "top1": run["final"]["top1"],
                "source": f"{run['name']}/metrics.json"}  # fmt: skip

    points = [_point(out, f"{run['name']}__float32", redo, recorded)]
    for dtype, scope in CSG_SETTINGS:

        def measure(dtype=dtype, scope=scope) -> dict:
            model = csg_hub.CSGForImageClassification.from_pretrained(folder)
            model.config.storage_dtype, model.config.storage_scope = dtype, scope
            with tempfile.TemporaryDirectory() as tmp:
                model.save_pretrained(tmp)
                size = (Path(tmp) / "model.safetensors").stat().st_size
                stored = csg_hub.CSGForImageClassification.from_pretrained(tmp)
                metrics = _evaluate(stored, stored.config.data_config, dataset)
            return {**base, "storage": f"{dtype}/{scope}", "bytes": size, "top1": metrics["top1"],
                    "num_samples": metrics["num_samples"], "source": "measured"}  # fmt: skip

        points.append(_point(out, f"{run['name']}__{dtype}-{scope}", redo, measure))
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
    for i, run in enumerate(sorted({p["run"] for p in points})):
        chosen = sorted((p for p in points if p["run"] == run), key=lambda p: p["bytes"])
        color = plt.cm.tab20(i % 20)
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
    if not args.models and not args.dense_runs:
        raise SystemExit("Nothing to measure: name CSG model folders (--models) and/or dense runs (--dense-runs).")
    from csg_hub.data import load_image_dataset

    dataset = load_image_dataset(args.dataset, args.split)
    if args.limit:
        dataset = dataset.select(range(min(args.limit, len(dataset))))
    runs, out = Path(args.runs), Path(args.output)
    missing = [name for name in args.dense_runs if not (runs / name / "metrics.json").exists()]
    if missing:
        raise SystemExit(f"--dense-runs {' '.join(missing)}: no metrics.json under {runs}/<run>/ (a finished run?).")
    points, twins = [], set(args.dense_runs)
    for folder in map(Path, args.models):
        run_metrics = runs / folder.name / "metrics.json"
        if not run_metrics.exists():
            raise SystemExit(f"{folder} has no training run at {run_metrics}: name the folder after its run.")
        run = {**json.loads(run_metrics.read_text()), "name": folder.name}
        twin = _dense_run(run)
        for point in csg_points(folder, run, dataset, out, args.redo):
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
