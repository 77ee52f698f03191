"""Distillation from a dense parent against CSG from scratch: the comparison table, the ablation and a curve.

Reads the `metrics.json` of every run folder given: conversions (`scripts/convert.py`: they record `init`
and `loss`) and from-scratch CSG runs (`scripts/train.py --csg`). Runs trained on the full training split
form the schedule table (top-1 after each schedule length, per method; epoch 0 is the converted or the
random student after BatchNorm re-estimation); conversions trained with `--train-limit` form the init x
loss ablation. Every run must train the same CSG setting (same config) as the others, or it is refused.
Writes `conversion.md` and `conversion.png` to `--output`.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

METHODS = {"distilled": "distilled (least-squares init, KD + labels)", "scratch": "CSG from scratch"}
STUDENT_KEYS = ("architecture", "slice_size", "code_dim", "generate_pointwise", "pointwise_slice_size")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders, each with a metrics.json")
    p.add_argument("--reference", default=None, help="a further run folder drawn as a line (e.g. a longer schedule)")
    p.add_argument("--output", default="runs/convert", help="folder for conversion.md and conversion.png")
    return p.parse_args(argv)


def _flag(command: str, name: str) -> str | None:
    args = shlex.split(command)
    return args[args.index(name) + 1] if name in args else None


def classify(folder: Path) -> dict:
    """One run as a row: method, schedule (epochs), images per epoch limit, final top-1, wall time."""
    path = folder / "metrics.json"
    if not path.exists():
        raise SystemExit(f"{folder} has no metrics.json: is it a finished train.py/convert.py run?")
    m = json.loads(path.read_text())
    if "init" in m:
        method = {"least_squares": "distilled", "random": "scratch"}.get(m["init"]) if m["training"]["epochs"] == 0 else None
        method = method or ("distilled" if (m["init"], m["loss"]) == ("least_squares", "kd+labels") else "other")
    elif m.get("csg"):
        method = "scratch"
    else:
        raise SystemExit(f"{folder} is neither a conversion nor a CSG training run.")
    limit = _flag(m["command"], "--train-limit")
    return {
        "run": folder.name, "method": method, "init": m.get("init", "random"), "loss": m.get("loss", "labels"),
        "epochs": m["training"]["epochs"], "train_limit": int(limit) if limit else None,
        "top1": m["final"]["top1"], "image_size": m["config"].get("image_size"), "parent_top1": m.get("parent_top1", m.get("dense_baseline_top1")),
        "wall_seconds": m.get("wall_seconds"), "history": [h["eval_top1"] for h in m.get("history", [])],
        "student": {k: m["config"].get(k) for k in STUDENT_KEYS}, "command": m["command"],
    }  # fmt: skip


def _check_same_student(rows: list[dict]) -> None:
    students = {json.dumps(r["student"], sort_keys=True) for r in rows}
    if len(students) > 1:
        raise SystemExit(f"The runs train different CSG settings, not comparable: {sorted(students)}")


def schedule_table(rows: list[dict], parent: float) -> str:
    full = [r for r in rows if r["train_limit"] is None and r["method"] in METHODS]
    by = {(r["method"], r["epochs"]): r for r in full}
    lines = [
        "| epochs | " + " | ".join(f"{METHODS[m]} top-1 (Δ vs parent)" for m in METHODS) + " | wall (min), distilled / scratch |",
        "|---:|" + "---:|" * (len(METHODS) + 1),
    ]  # fmt: skip
    for epochs in sorted({e for _, e in by}):
        cells = [f"{by[m, epochs]['top1']:.2f} ({by[m, epochs]['top1'] - parent:+.2f})" if (m, epochs) in by else "not run" for m in METHODS]
        walls = [f"{by[m, epochs]['wall_seconds'] / 60:.0f}" if (m, epochs) in by and by[m, epochs]["wall_seconds"] else "-" for m in METHODS]
        lines.append(f"| {epochs} | " + " | ".join(cells) + f" | {' / '.join(walls)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def epochs_to_match(rows: list[dict]) -> str:
    """For each distillation schedule: the shortest from-scratch schedule run that reaches its top-1."""
    full = [r for r in rows if r["train_limit"] is None and r["epochs"] > 0]
    scratch = sorted((r for r in full if r["method"] == "scratch"), key=lambda r: r["epochs"])
    lines = []
    for d in sorted((r for r in full if r["method"] == "distilled"), key=lambda r: r["epochs"]):
        match = next((r for r in scratch if r["top1"] >= d["top1"]), None)
        longest = f"{scratch[-1]['epochs']} epochs, {scratch[-1]['top1']:.2f}%" if scratch else "none run"
        lines.append(f"- {d['epochs']} epoch(s) distilled, {d['top1']:.2f}%: " + (
            f"from scratch reaches it in {match['epochs']} epochs ({match['top1']:.2f}%)" if match
            else f"no from-scratch schedule run reaches it (longest: {longest})"))  # fmt: skip
    return "\n".join(lines) + "\n" if lines else ""


def ablation_table(rows: list[dict]) -> str:
    abl = [r for r in rows if r["train_limit"] is not None]
    if not abl:
        return ""
    inits, losses = sorted({r["init"] for r in abl}), ["labels", "kd", "kd+labels"]
    by = {(r["init"], r["loss"]): r["top1"] for r in abl}
    limits = sorted({(r["train_limit"], r["epochs"]) for r in abl})
    head = f"Ablation: {', '.join(f'{n:,} training images x {e} epoch(s)' for n, e in limits)}; test top-1 (%).\n\n"
    lines = ["| init | " + " | ".join(losses) + " |", "|---|" + "---:|" * len(losses)]
    for init in inits:
        lines.append(f"| {init} | " + " | ".join(f"{by[init, loss]:.2f}" if (init, loss) in by else "-" for loss in losses) + " |")  # fmt: skip
    return head + "\n".join(lines) + "\n"


def plot(rows: list[dict], parent: float, reference: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # two panels: the whole range (epoch 0 starts near chance) and a zoom on the trained end
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    trained = [r["top1"] for r in rows if r["epochs"] > 0 and r["train_limit"] is None and r["method"] in METHODS]
    top = max([parent, *(r["top1"] for r in rows)] + ([reference["top1"]] if reference else []))
    for ax, low in zip(axes, (0.0, (min(trained) - 2) if trained else 0.0)):
        for method, label in METHODS.items():
            chosen = sorted((r for r in rows if r["method"] == method and r["train_limit"] is None), key=lambda r: r["epochs"])
            if not chosen:
                continue
            line = ax.plot([r["epochs"] for r in chosen], [r["top1"] for r in chosen], "o-", label=f"{label}: end of each schedule")[0]
            longest = chosen[-1]
            if len(longest["history"]) > 1:
                ax.plot(range(1, len(longest["history"]) + 1), longest["history"], ":", color=line.get_color(), alpha=0.7,
                        label=f"{label}: per epoch of the {longest['epochs']}-epoch run")  # fmt: skip
        ax.axhline(parent, color="black", lw=1, label=f"dense parent {parent:.2f}%")
        if reference:
            ax.axhline(reference["top1"], color="grey", ls="--", lw=1,
                       label=f"{reference['run']} ({reference['image_size']}px) {reference['top1']:.2f}%")  # fmt: skip
        ax.set_ylim(low, top + 1)
        ax.set_xlabel("training epochs")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("Fashion-MNIST test top-1 (%)")
    axes[1].set_title("zoom", fontsize=9)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    rows = [classify(Path(f)) for f in args.runs]
    _check_same_student(rows)
    parents = {r["parent_top1"] for r in rows if r["method"] == "distilled" or r["init"] != "random"} - {None}
    if len(parents) != 1:
        raise SystemExit(f"Expected one dense parent across the conversions, found top-1 values {sorted(parents)}.")
    parent = parents.pop()
    reference = classify(Path(args.reference)) if args.reference else None
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    sizes = sorted({r["image_size"] for r in rows})
    text = f"Dense parent: {parent:.2f}% test top-1; inputs {', '.join(f'{s}x{s}' for s in sizes)}.\n\n"
    text += schedule_table(rows, parent)
    text += "\n" + epochs_to_match(rows)
    if reference:
        text += (f"\nReference: {reference['run']} ({reference['epochs']} epochs at {reference['image_size']}x"
                 f"{reference['image_size']}), {reference['top1']:.2f}%.\n")
    text += "\n" + ablation_table(rows)
    text += "\nCommands:\n\n" + "\n".join(f"- {r['run']}: `{r['command']}`" for r in sorted(rows, key=lambda r: r["run"])) + "\n"
    (out / "conversion.md").write_text(text)
    plot(rows, parent, reference, out / "conversion.png")
    print(text)
    return text


if __name__ == "__main__":
    main()
