"""Bytes on disk against test top-1: every zoo model in each storage dtype, one panel per dense twin.

For each CSG model folder (`--models`, `--cards`): float32 (the run's measured top-1, from its metrics.json),
and the checkpoint saved as float16 (every weight matrix), int8 (codes and generators), int8 (every weight
matrix) and, where `csg_hub` stores them, int4 and int2 (every weight matrix, group-wise scales), each
reloaded through `from_pretrained` (dequantized) and evaluated on the test split. A folder's run is found
under `--runs` (trained from scratch by train.py: method "csg") or `--conversions` (converted from its dense
parent and distilled by convert.py: method "csg-kd"). For each dense twin (a CSG run's `--dense-baseline`, a
conversion's `--parent`) whose weights are on disk (`runs/zoo/<run>/model`): float32 (method "dense") and
round trips through fp16, int8 and int4 (per-channel, `csg_hub.vae.baselines`; method "dense-roundtrip"); a
dense twin without weights contributes the points measured while they were on disk (`--dense-runs` measures a
dense run before its CSG twins exist), else its float32 point from its metrics.json (bytes = 4 x (parameters
+ buffers)). Each `convert.py --qat` run under `--qat-runs` is one point (method "csg-kd-qat"): its stored
model, reloaded through `from_pretrained` and evaluated by convert.py. Points measured by other scripts
(`--extra-points`: optimum-quanto / torchao baselines, a shared weight-VAE) are merged in; each names its `twin`.

One JSON per point in `--output/points/`; `frontier.png`, one panel per dense twin (architecture and input
size): each point against its own twin, method told by marker, storage bit width by colour, lines at the
twin's fp32 top-1 and 1 point below it and at 60x and 100x fewer bytes than its fp32 checkpoint; and
`frontier.md`: the plot, its caption (the literature's anchors) and one table per twin.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import tempfile
from pathlib import Path

CSG_SETTINGS = [("float16", "all"), ("int8", "csg"), ("int8", "all")]
SUB8_SETTINGS = [("int4", "all"), ("int2", "all")]  # measured once csg_hub.configuration.STORAGE_DTYPES has them
DENSE_SCHEMES = ("fp16", "int8", "int4")
EXTRA_POINTS = ("runs/quant/baselines/points", "runs/vae/zoo-shared/points")
EXTRA_KEYS = ("name", "storage", "bytes", "top1", "twin", "method")  # a merged point's required fields, and "bits"

FLOOR = 2.5  # a panel shows this many points below its twin; a point further down sits on the floor with its value

# the literature's anchors (ImageNet / CIFAR-10: not this task), in the caption and frontier.md
ANCHORS = (
    "Anchors from the literature (ImageNet or CIFAR-10, so not the same task; compression of the weights against "
    'fp32): "And the Bit Goes Down" (Stock et al., ICLR 2020): ResNet-18 29x fewer bytes at -3.95 points and 43x '
    "at -8.6, ResNet-50 19x at -2.4; IR-Net (Qin et al., CVPR 2020) 1-bit weights (32x): ResNet-20 on CIFAR-10 "
    "about -1 point; LSQ (Esser et al., ICLR 2020) 2-bit weights and activations (16x on the weights): ResNet-18 "
    "-2.9 points."
)
HOW_TO_READ = (
    "One panel per dense twin (architecture, input size, epochs); every point in a panel is measured against "
    "that twin. Marker: method; colour: storage bit width. Solid line: the twin's fp32 top-1; dashed: 1 point "
    "below it; dotted: 60x and 100x fewer bytes than the twin's fp32 checkpoint; a point more than "
    f"{FLOOR:g} points below its twin sits on the panel's floor, labelled with its top-1. Bytes: the stored "
    "checkpoint; top-1: the 10,000 test images, evaluated on the stored weights (a CSG checkpoint reloaded "
    "through `from_pretrained`); a run's own fp32 point is its metrics.json's."
)

# markers by method (others get the spare ones in order); colours by storage bit width
METHOD_MARKERS = {"dense": "o", "dense-roundtrip": "s", "csg": "^", "csg-kd": "v", "csg-kd-qat": "D",
                  "quanto": "P", "quanto-qat-kd": "X", "torchao": "*", "weight-vae-shared": "h"}  # fmt: skip
SPARE_MARKERS = ("<", ">", "p", "8", "d", "H", "1", "2", "3", "4")
STORAGE_COLOURS = {"fp32": "#555555", "fp16": "#1f77b4", "int8": "#2ca02c", "int4": "#ff7f0e", "int2": "#d62728",
                   "int1": "#9467bd", "weight-VAE": "#e377c2"}  # fmt: skip
OTHER_COLOUR = "#8c564b"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument(
        "--models",
        nargs="*",
        default=[],
        help="CSG model folders (their cards' training command names the run; else the folder's name)",
    )
    p.add_argument("--cards", default=None,
                   help="measure every CSG folder under this folder whose run is under --runs or --conversions "
                        "(e.g. model_cards)")  # fmt: skip
    p.add_argument("--dense-runs", nargs="*", default=[],
                   help="dense runs to measure as well, e.g. right after training while their weights are on disk "
                        "(their CSG twins are trained later; points already measured are reused)")  # fmt: skip
    p.add_argument("--runs", default="runs/zoo", help="training runs (metrics.json per run; dense twins are here)")
    p.add_argument(
        "--conversions",
        default="runs/convert",
        help="conversion runs (scripts/convert.py: metrics.json per run, the dense parent is the twin)",
    )
    p.add_argument("--qat-runs", default="runs/quant/csg",
                   help="convert.py --qat runs (one sub-folder each): each is one point, its stored model reloaded "
                        "through from_pretrained and evaluated by convert.py (metrics.json's final_stored)")  # fmt: skip
    p.add_argument("--extra-points", nargs="*", default=list(EXTRA_POINTS),
                   help="folders of point JSONs measured by other scripts, merged in (the schema of "
                        "--output/points/*.json plus 'twin', 'method', 'bits', optional 'command'); a missing "
                        "folder is skipped with a note; a point without a twin, or whose twin is not a dense "
                        "twin here, is an error")  # fmt: skip
    p.add_argument("--dataset", default="data/fashion_mnist", help="evaluation dataset (Hub id or folder)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (smoke tests)")
    p.add_argument("--output", default="runs/frontier", help="folder for points/*.json, frontier.md, frontier.png")
    p.add_argument("--redo", action="store_true", help="measure points whose JSON already exists again")
    return p.parse_args(argv)


def csg_settings() -> list[tuple[str, str]]:
    """The storages each CSG model is measured in: `CSG_SETTINGS`, and int4 / int2 (every weight matrix)
    where this csg_hub stores them."""
    from csg_hub.configuration import STORAGE_DTYPES

    return CSG_SETTINGS + [(dtype, scope) for dtype, scope in SUB8_SETTINGS if dtype in STORAGE_DTYPES]


def _option(command: str, option: str) -> str | None:
    """The value a training command gives `option`, read as argparse reads it (the last one wins)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(option)
    return getattr(parser.parse_known_args(shlex.split(command))[0], option.lstrip("-").replace("-", "_"))


def _dense_run(csg_run: dict) -> str | None:
    """A CSG run's dense twin: the run of its `--dense-baseline` (train.py), or of its dense parent (convert.py)."""
    baseline = csg_run.get("parent") or _option(csg_run["command"], "--dense-baseline")
    return Path(baseline).parent.name if baseline else None


def _method(csg_run: dict) -> str:
    """'csg' for a CSG model trained from scratch, 'csg-kd' for one converted from its dense parent and
    distilled from it (convert.py records the parent and the loss)."""
    if not csg_run.get("parent"):
        return "csg"
    return "csg-kd" if "kd" in str(csg_run.get("loss", "")) else "csg-from-dense"


def bits_of(storage: str) -> float | None:
    """Bits per stored weight that a storage name says: 32 / 16 / 8 / 4 / 2 (None: the name does not say)."""
    head = storage.split("/")[0].lower()
    if head in ("float32", "fp32"):
        return 32
    if head in ("float16", "fp16", "bfloat16", "bf16"):
        return 16
    found = re.fullmatch(r"u?int(\d+)", head)
    return int(found.group(1)) if found else None


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


def _run_dir(name: str, run_folders: list[Path]) -> Path | None:
    return next((folder / name for folder in run_folders if (folder / name / "metrics.json").exists()), None)


def zoo_folders(cards: Path, runs: Path, conversions: Path | None = None) -> list[Path]:
    """The CSG folders under `cards` whose run has a metrics.json under `runs` (train.py) or `conversions`
    (convert.py)."""
    folders = [f for f in sorted(cards.iterdir()) if (f / "config.json").exists()]
    run_folders = [runs] + ([conversions] if conversions else [])
    return [f for f in folders if _run_dir(run_name(f), run_folders)]


def _point_path(out: Path, name: str) -> Path:
    return out / "points" / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}.json"


def _point(out: Path, name: str, redo: bool, measure, meta: dict) -> dict:
    """The point `name`: measured, or read from its JSON; `meta` (twin, method, bits) is written into it."""
    path = _point_path(out, name)
    if path.exists() and not redo:
        point = json.loads(path.read_text())
        if any(point.get(k) != v for k, v in meta.items()):  # points cached before they named twin and method
            point.update(meta)
            path.write_text(json.dumps(point, indent=2) + "\n")
        return point
    point = {"name": name, **measure(), **meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(point, indent=2) + "\n")
    print(json.dumps(point))
    return point


def _trained_weights(folder: Path, run: dict, run_dir: Path) -> Path | None:
    """The run's float32 weights when the folder stores fewer bits: the resume checkpoint of its last epoch
    (`train.py` keeps it in `<run>/checkpoint/`, git-ignored), else None."""
    config = json.loads((folder / "config.json").read_text())
    if config.get("storage_dtype", "float32") == "float32":
        return None
    checkpoint = run_dir / "checkpoint"
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


def csg_points(folder: Path, run: dict, dataset, out: Path, redo: bool, run_dir: Path) -> list[dict]:
    """The run in float32 (its trained top-1 from metrics.json) and each `csg_settings()` storage, measured.
    A folder stored in fewer bits than float32 is measured from the run's float32 weights when they are on
    disk; without them only its own storage is measured (rounding rounded weights again would not show what
    that storage costs the trained model)."""
    from safetensors.torch import load_file

    import csg_hub
    from csg_hub.training import load_into

    base = {"run": run["name"], "model": run["model"] if "model" in run else run["config"]["architecture"],
            "kind": "csg", "folder": str(folder)}  # fmt: skip
    meta = {"twin": _dense_run(run), "method": _method(run)}
    stored_as = json.loads((folder / "config.json").read_text())
    stored_as = (stored_as.get("storage_dtype", "float32"), stored_as.get("storage_scope", "csg"))
    trained = _trained_weights(folder, run, run_dir)

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

    points = [_point(out, f"{run['name']}__float32", redo, recorded, {**meta, "bits": 32})]
    for dtype, scope in csg_settings():
        name = f"{run['name']}__{dtype}-{scope}"
        point_meta = {**meta, "bits": bits_of(dtype)}
        if stored_as[0] != "float32" and trained is None and (dtype, scope) != stored_as:
            if _point_path(out, name).exists():
                points.append(_point(out, name, False, None, point_meta))
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
            group = getattr(stored.config, "storage_group_size", None) if bits_of(dtype) < 8 else None
            return {**base, "storage": f"{dtype}/{scope}" + (f"/g{group}" if group else ""), "bytes": size,
                    "top1": metrics["top1"], "num_samples": metrics["num_samples"],
                    "source": "measured" + (" (from the run's float32 weights)" if trained else "")}  # fmt: skip

        redo_this = redo and (trained is not None or stored_as[0] == "float32")
        points.append(_point(out, name, redo_this, measure, point_meta))
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
    points = [_point(out, f"{name}__fp32", redo, recorded, {"twin": name, "method": "dense", "bits": 32})]
    for scheme in DENSE_SCHEMES:
        if not weights.exists() and not _point_path(out, f"{name}__{scheme}").exists():
            continue  # weights not kept and never measured while they were: float32 only

        def measure(scheme=scheme) -> dict:
            model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
            rounded, size = round_trip(model, scheme)
            metrics_ = _evaluate(rounded, resolve_data_config(model=model), dataset)
            return {**base, "storage": scheme, "bytes": size, "top1": metrics_["top1"],
                    "num_samples": metrics_["num_samples"], "source": "measured (round trip)"}  # fmt: skip

        meta = {"twin": name, "method": "dense-roundtrip", "bits": bits_of(scheme)}
        points.append(_point(out, f"{name}__{scheme}", redo, measure, meta))
    return points


def load_extra_points(folders: list[str | Path]) -> list[dict]:
    """The point JSONs in `folders` (a missing folder is skipped with a note). Each needs `EXTRA_KEYS`; the
    file it came from is kept as `points_file`, so an unknown twin is reported with it (`group_by_twin`)."""
    points = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            print(f"--extra-points {folder}: no such folder, skipped")
            continue
        for path in sorted(folder.glob("*.json")):
            try:
                point = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}: not a point JSON ({e}).") from e
            if not isinstance(point, dict):
                raise SystemExit(f"{path}: not a point JSON (an object with {', '.join(EXTRA_KEYS)}).")
            missing = [repr(k) for k in EXTRA_KEYS if point.get(k) is None] + ["'bits'"] * ("bits" not in point)
            if missing:
                raise SystemExit(f"{path}: no {', '.join(missing)}: every point names the dense twin it is measured "
                                 "against ('twin': a dense run), its 'method' and 'bits' (bits per weight; null "
                                 "where no bit width applies, e.g. a weight-VAE).")  # fmt: skip
            for key in ("bytes", "top1", "bits"):
                value = point[key]
                if (value is not None or key != "bits") and (
                    isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
                ):
                    raise SystemExit(f"{path}: {key!r} is {value!r}, not a positive number.")
            points.append({**point, "points_file": str(path)})
    return points


def group_by_twin(points: list[dict]) -> dict[str | None, list[dict]]:
    """The points of each dense twin (its fp32 point, method "dense", first), twins in name order; the CSG
    runs without a dense twin last, under None. A point whose twin has no dense fp32 point here is an error
    naming its file."""
    anchors: dict[str, dict] = {}
    for p in points:
        if p.get("method") == "dense":
            if p["twin"] in anchors:
                raise SystemExit(f"{_origin(p)} and {_origin(anchors[p['twin']])}: two dense fp32 points for the "
                                 f"twin {p['twin']}.")  # fmt: skip
            anchors[p["twin"]] = p
    groups: dict[str | None, list[dict]] = {twin: [anchors[twin]] for twin in sorted(anchors)}
    for p in points:
        twin = p.get("twin")
        if p is anchors.get(twin):
            continue
        if twin is None and "points_file" in p:
            raise SystemExit(f"{_origin(p)}: no 'twin' (the dense run it is measured against).")
        if twin is not None and twin not in anchors:
            raise SystemExit(f"{_origin(p)}: twin {twin!r} is not a dense twin here (known: "
                             f"{', '.join(sorted(anchors)) or 'none'}); name a dense run under --runs that is a "
                             "measured model's twin, or add it with --dense-runs.")  # fmt: skip
        groups.setdefault(twin, []).append(p)
    return groups


def _origin(point: dict) -> str:
    return point.get("points_file") or f"point {point['name']}"


def twin_label(twin: str | None, runs: Path) -> str:
    """'resnet18 28x28, 10 ep' from the dense run's training command; the run's name if it has none."""
    if twin is None:
        return "no dense twin"
    path = runs / twin / "metrics.json"
    if not path.exists():
        return twin
    metrics = json.loads(path.read_text())
    size = _option(metrics.get("command", ""), "--image-size")
    epochs = (metrics.get("training") or {}).get("epochs")
    return f"{metrics.get('model', twin)} {f'{size}x{size}' if size else 'native size'}" + (
        f", {epochs} ep" if epochs else ""
    )


def storage_class(point: dict) -> str:
    """The storage a point's colour shows: its bit width (fp32, fp16, int8, int4, int2, ...) or weight-VAE."""
    if str(point.get("method", "")).startswith("weight-vae") or str(point["storage"]).lower().startswith("vae"):
        return "weight-VAE"
    bits = point.get("bits") or bits_of(point["storage"])
    if bits in (32, 16):
        return f"fp{bits}"
    return f"int{bits:g}" if bits else "other"


def _ordered(values, first) -> list:
    return [v for v in first if v in values] + sorted(v for v in values if v not in first)


def table(points: list[dict], labels: dict | None = None) -> str:
    """One markdown table per dense twin: point, method, storage, bytes, ratio and Δ against the twin's fp32."""
    sections = []
    for twin, group in group_by_twin(points).items():
        anchor = group[0] if twin is not None else None
        label = (labels or {}).get(twin) or (twin or "no dense twin")
        head = f"### {label}"
        if anchor:
            size = f"{anchor['bytes']:,} bytes" + (
                " (4 B/param, weights not kept)" if anchor.get("bytes_estimated") else ""
            )
            head += f": twin `{twin}` (fp32: {size}, {anchor['top1']:.2f}%)"
        lines = [head, "", "| point | method | storage | bytes | ratio vs twin fp32 bytes | top-1 | Δ vs twin |",
                 "|---|---|---|---:|---:|---:|---:|"]  # fmt: skip
        for p in sorted(group, key=lambda p: (-p["bytes"], p["name"])):
            ratio = f"{anchor['bytes'] / p['bytes']:.1f}x" if anchor else ""
            delta = f"{p['top1'] - anchor['top1']:+.2f}" if anchor and p is not anchor else ""
            lines.append(f"| {p['name']} | {p['method']} | {p['storage']} | {round(p['bytes']):,} | {ratio} "
                         f"| {p['top1']:.2f}% | {delta} |")  # fmt: skip
        sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)


def _short_run(run: str, twin: str | None) -> str:
    """A run's name without what its panel already says: 'resnet18-csg-28px-c32' -> 'c32' in the panel of
    resnet18-dense-28px-10ep, 'resnet18-csg' -> 'csg'."""
    short = run
    if twin:
        arch = twin.split("-dense")[0] + "-"
        short = short.removeprefix(arch).removeprefix("csg-")
        size = re.search(r"-(\d+px)-", f"{twin}-")
        if size:
            short = short.removeprefix(f"{size.group(1)}-").replace(f"-{size.group(1)}-", "-")
    return short or run


def _spread(labels: list[tuple[float, float, str]], gap: float) -> list[tuple[float, float, float, str]]:
    """(x, y, text) labels, each lifted just enough to sit `gap` above the one below it: (x, y, label y, text)."""
    placed, last = [], None
    for x, y, text in sorted(labels, key=lambda label: label[1]):
        at = y if last is None else max(y, last + gap)
        placed.append((x, y, at, text))
        last = at
    return placed


def plot(points: list[dict], path: Path, labels: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    groups = group_by_twin(points)
    methods = _ordered({p["method"] for p in points}, list(METHOD_MARKERS))
    spare = iter(SPARE_MARKERS)
    markers = {m: METHOD_MARKERS.get(m) or next(spare, "x") for m in methods}
    storages = _ordered({storage_class(p) for p in points}, list(STORAGE_COLOURS))
    colours = {s: STORAGE_COLOURS.get(s, OTHER_COLOUR) for s in storages}

    # the busiest panel (the twin most methods were measured against) gets a row of its own, twice as tall
    busiest = max(groups, key=lambda twin: len(groups[twin]))
    groups = {busiest: groups[busiest], **{t: g for t, g in groups.items() if t != busiest}}
    ncols = min(3, max(1, len(groups) - 1))
    rest_rows = math.ceil((len(groups) - 1) / ncols)
    nrows = 2 + rest_rows  # the busiest panel spans two rows
    fig = plt.figure(figsize=(5.6 * ncols, 4.3 * nrows + 1.0))
    grid = fig.add_gridspec(nrows, ncols)
    axes = [fig.add_subplot(grid[:2, :])]
    axes += [fig.add_subplot(grid[2 + i // ncols, i % ncols]) for i in range(len(groups) - 1)]
    for ax, (twin, group) in zip(axes, groups.items()):
        anchor = group[0] if twin is not None else None
        ref = anchor["top1"] if anchor else None
        floor = ref - FLOOR if anchor else min(p["top1"] for p in group) - 0.5
        shown = [p for p in group if p["top1"] >= floor]
        dropped = [p for p in group if p["top1"] < floor]  # drawn on the panel's floor, their range noted
        low = min([p["top1"] for p in shown] + ([ref - 1] if anchor else [])) - 0.3
        low = floor - 0.25 if dropped else low
        high = max([p["top1"] for p in shown] + ([ref] if anchor else [])) + 0.3
        if anchor:
            ax.axhline(ref, color="black", lw=0.9)
            ax.axhline(ref - 1, color="black", lw=0.9, ls="--")
            for times in (60, 100):
                ax.axvline(anchor["bytes"] / times, color="black", lw=0.8, ls=":")
                ax.text(anchor["bytes"] / times, high, f" {times}x", fontsize=7, va="top", ha="left")
        chains: dict[tuple, list[dict]] = {}  # one thin line through each run's shown points of one method
        for p in shown:
            if p.get("run"):
                kind = "dense" if p["method"].startswith("dense") else p["method"]
                chains.setdefault((p["run"], kind), []).append(p)
        run_labels = []
        for (run, kind), chain in sorted(chains.items()):
            chain.sort(key=lambda p: p["bytes"])
            ax.plot([p["bytes"] for p in chain], [p["top1"] for p in chain], "-", color="0.75", lw=0.7, zorder=1)
            if kind != "dense":  # a dense twin's own points under another method (quanto, ...): the method
                run_labels.append((chain[0]["bytes"], chain[0]["top1"], kind if run == twin else _short_run(run, twin)))
        gap = (high - low) * 0.045 / (2 if ax is axes[0] else 1)  # the same spacing on the page in every panel
        for x, y, at, text in _spread(run_labels, gap):  # left of each run's smallest point
            ax.annotate(text, (x, y), xytext=(x / 1.35, at), ha="right", va="center", fontsize=6.5 if ax is axes[0] else 5.5, color="0.3",
                        arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.4})  # fmt: skip
        for p in group:
            colour = colours[storage_class(p)]
            edge = "black" if p is anchor else colour
            ax.plot(p["bytes"], p["top1"] if p in shown else low, markers[p["method"]], color=colour, mec=edge,
                    ms=6, mew=0.6, zorder=3, clip_on=False, alpha=1 if p in shown else 0.6)  # fmt: skip
        if dropped:
            lowest, highest = min(p["top1"] for p in dropped), max(p["top1"] for p in dropped)
            ax.text(0.99, 0.04, f"on the floor: {len(dropped)} more than {FLOOR:g} points below the twin "
                    f"({lowest:.1f}-{highest:.1f}%)", transform=ax.transAxes, ha="right", va="bottom", fontsize=6,
                    color="0.25")  # fmt: skip
        ax.set_ylim(low, high)
        if anchor:
            ax.set_xlim(min(min(p["bytes"] for p in group), anchor["bytes"] / 100) / 1.6, anchor["bytes"] * 1.6)
        ax.set_xscale("log")
        label = (labels or {}).get(twin) or (twin or "no dense twin")
        title = f"{label}\ntwin {twin}: {anchor['top1']:.2f}%" if anchor else label
        ax.set_title(title, fontsize=8.5)
        ax.set_xlabel("bytes on disk (log scale)", fontsize=8)
        ax.set_ylabel("Fashion-MNIST test top-1 (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="both", alpha=0.25)
    handles = [Line2D([], [], ls="", marker=markers[m], color="0.35", label=f"method: {m}") for m in methods]
    handles += [Line2D([], [], ls="", marker="s", ms=8, color=colours[s], label=f"storage: {s}") for s in storages]
    handles += [Line2D([], [], color="black", lw=0.9, label="twin fp32 top-1"),
                Line2D([], [], color="black", lw=0.9, ls="--", label="twin -1 point"),
                Line2D([], [], color="black", lw=0.8, ls=":", label="60x / 100x fewer bytes than twin")]  # fmt: skip
    height = 4.3 * nrows + 1.0
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, 0.25 / height))  # fmt: skip
    fig.text(0.5, 0.005, ANCHORS, ha="center", va="bottom", fontsize=6.5, wrap=True)
    fig.suptitle("Bytes on disk against Fashion-MNIST test top-1, one panel per dense twin", fontsize=10)
    fig.tight_layout(rect=(0, 0.95 / height, 1, 1 - 0.3 / height))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def markdown(points: list[dict], labels: dict | None = None) -> str:
    return (f"# Bytes on disk against test top-1\n\n![bytes on disk against test top-1, one panel per dense twin]"
            f"(frontier.png)\n\n{HOW_TO_READ}\n\n{ANCHORS}\n\n{table(points, labels)}")  # fmt: skip


def qat_points(folder: Path, out: Path) -> list[dict]:
    """One point per `convert.py --qat` run under `folder`: its model folder's bytes and the top-1 convert.py
    measured on it after reloading it through `from_pretrained` (the values quantization-aware training used)."""
    points = []
    for metrics_file in sorted(folder.glob("*/metrics.json")) if folder.is_dir() else []:
        run = {**json.loads(metrics_file.read_text()), "name": metrics_file.parent.name}
        if not run.get("qat") or not run.get("final_stored"):
            continue
        qat = run["qat"]
        dtype, scope, group = qat["storage_dtype"], qat["storage_scope"], qat["storage_group_size"]
        storage = f"{dtype}/{scope}" + (f"/g{group}" if bits_of(dtype) < 8 else "")

        def recorded(run=run, storage=storage, metrics_file=metrics_file) -> dict:
            return {"run": run["name"], "model": run["config"]["architecture"], "kind": "csg",
                    "folder": str(metrics_file.parent / "model"), "storage": storage,
                    "bytes": (metrics_file.parent / "model" / "model.safetensors").stat().st_size,
                    "top1": run["final_stored"]["top1"], "num_samples": run["final_stored"]["num_samples"],
                    "epochs": len(run["history"]), "student": run.get("student"), "command": run["command"],
                    "source": f"{metrics_file} (final_stored: the saved model reloaded through from_pretrained)"}  # fmt: skip

        meta = {"twin": _dense_run(run), "method": "csg-kd-qat" if "kd" in run["loss"] else "csg-qat",
                "bits": bits_of(dtype)}  # fmt: skip
        points.append(_point(out, f"{run['name']}__{dtype}-{scope}-qat", False, recorded, meta))
    return points


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    runs, out = Path(args.runs), Path(args.output)
    run_folders = [runs, Path(args.conversions)]
    cards = zoo_folders(Path(args.cards), runs, Path(args.conversions)) if args.cards else []
    models = list(dict.fromkeys(list(map(Path, args.models)) + cards))
    if not models and not args.dense_runs:
        raise SystemExit("Nothing to measure: name CSG model folders (--models or --cards) and/or dense runs "
                         "(--dense-runs).")  # fmt: skip
    extra = load_extra_points(args.extra_points)  # before measuring: a malformed file fails fast
    from csg_hub.data import load_image_dataset

    dataset = load_image_dataset(args.dataset, args.split, limit=args.limit)
    missing = [name for name in args.dense_runs if not (runs / name / "metrics.json").exists()]
    if missing:
        raise SystemExit(f"--dense-runs {' '.join(missing)}: no metrics.json under {runs}/<run>/ (a finished run?).")
    points, twins = [], set(args.dense_runs)
    for folder in models:
        name = run_name(folder)
        run_dir = _run_dir(name, run_folders)
        if run_dir is None:
            raise SystemExit(f"{folder} has no training run at {runs / name / 'metrics.json'} (nor under "
                             f"{args.conversions}): its card's training command names no run there (--output-dir), "
                             "nor does the folder's name.")  # fmt: skip
        run = {**json.loads((run_dir / "metrics.json").read_text()), "name": name}
        points += csg_points(folder, run, dataset, out, args.redo, run_dir)
        if _dense_run(run):
            twins.add(_dense_run(run))
    qat = qat_points(Path(args.qat_runs), out)
    twins.update(p["twin"] for p in qat)
    points += qat
    for twin in sorted(twins):
        points += dense_points(twin, runs, dataset, out, args.redo)
    taken = {p["name"]: p for p in points}
    for p in extra:
        if p["name"] in taken:
            raise SystemExit(
                f"{p['points_file']}: the point name {p['name']!r} is taken ({_origin(taken[p['name']])})."
            )
        taken[p["name"]] = p
    points += extra
    labels = {twin: twin_label(twin, runs) for twin in group_by_twin(points)}  # checks every point's twin
    text = markdown(points, labels)
    (out / "frontier.md").write_text(text)
    print(text)
    plot(points, out / "frontier.png", labels)
    return points


if __name__ == "__main__":
    main()
