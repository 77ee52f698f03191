"""Weight-only quantization baselines of a dense timm parent with the ecosystem's libraries: bytes vs test top-1.

Each scheme quantizes the parent's Conv2d and Linear weights with a maintained library and is measured as a
user would ship it:
  quanto-int8 / quanto-int4 / quanto-int2: optimum-quanto's `quantize(model, weights=qintN)` (QConv2d,
  QLinear) then `freeze`. int8 is symmetric per output channel; int4 / int2 are asymmetric (scale + shift)
  in groups that quanto picks per layer: 128 values of one output channel's fan-in, else 96, 64 or 32 when
  128 does not divide the fan-in, else per output channel (fan-in <= 128, or no divisor). The API takes no
  group size; a `-gN` suffix (`quanto-int4-g64`) sets each module's `weight_group_size` before freezing
  (layers whose fan-in N does not divide stay per channel), `-gaxis` makes every layer per channel.
  torchao-int8 / torchao-int4 / torchao-int2: torchao's `quantize_(model, IntxWeightOnlyConfig(weight_dtype,
  granularity=PerGroup(64)))` (`-gaxis`: PerAxis(0)) with a filter over Conv2d and Linear. Its CPU format
  (IntxUnpackedToInt8Tensor) stores every value in one int8 byte with an fp32 scale and an int8 zero point
  per group; the 1-channel stem conv cannot be grouped (its group dimension has 1 element) and stays fp32.

Bytes: the frozen model's whole state dict (packed weights, scales, shifts / zero points, biases, BatchNorm
tensors and buffers, quanto's per-module input/output scales) written with safetensors (torchao through its
own `flatten_tensor_state_dict`); the point's `bytes` is that file's size, header included, as for the
parent's own model.safetensors. Top-1 is measured on the model loaded back from that file, over the whole
evaluation split. `--qat-epochs N` (N > 0) fine-tunes the quanto schemes instead (fake-quantized weights,
straight-through gradients) with knowledge distillation from the fp32 parent and convert.py's recipe (SGD,
warm-up + cosine, label smoothing), then freezes and measures them the same way (method `quanto-qat-kd`).
One JSON per point in `<output>/points/`, and `<output>/baselines.md` over every point there.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

SCHEME = re.compile(r"^(quanto|torchao)-int(8|4|2)(?:-g(\d+|axis))?(-hqq)?$")
NOTES = {
    "quanto": "asymmetric (scale + shift, both float32 like the model) per group of the flattened fan-in "
    "(in_ch*kh*kw) of one output channel; quanto picks the group (128, else 96/64/32 dividing the fan-in, "
    "else per channel) and its API takes none",
    "quanto-int8": "symmetric, one float32 scale per output channel",
    "torchao": "IntxUnpackedToInt8Tensor (torchao's CPU format for quantize_ on any layer): one int8 byte per "
    "value whatever the bit width, a float32 scale and an int8 zero point per block; a conv weight is blocked "
    "(1, g, 1, 1), g input channels at one kernel tap; layers it cannot block stay float32",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--parent", default="runs/zoo/resnet18-dense-28px-10ep/model", help="dense timm model folder")
    p.add_argument("--dataset", default="data/fashion_mnist", help="Hub dataset id or local folder")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--train-split", default="train")
    p.add_argument("--schemes", nargs="+", default=["quanto-int8", "quanto-int4", "quanto-int2"],
                   help="(quanto|torchao)-int(8|4|2)[-gN|-gaxis][-hqq] (-hqq: quanto's HqqOptimizer)")  # fmt: skip
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N images only (smoke tests)")
    p.add_argument("--train-limit", type=int, default=None, help="train on the first N images only (smoke tests)")
    p.add_argument("--output", default="runs/quant/baselines", help="folder for points/*.json and baselines.md")
    p.add_argument(
        "--keep-weights",
        default=None,
        metavar="DIR",
        help="keep each measured safetensors file in DIR (default: a temporary folder)",
    )
    p.add_argument("--table-only", action="store_true", help="rewrite <output>/baselines.md from its points only")
    q = p.add_argument_group("QAT + distillation (quanto schemes only)")
    q.add_argument("--qat-epochs", type=int, default=0, help="0: round trip only; N > 0: fine-tune N epochs")
    q.add_argument("--lr", type=float, default=0.05)
    q.add_argument("--batch-size", type=int, default=128)
    q.add_argument("--warmup-epochs", type=float, default=0.2)
    q.add_argument("--label-smoothing", type=float, default=0.1)
    q.add_argument("--temperature", type=float, default=4.0)
    q.add_argument("--alpha", type=float, default=0.9, help="weight of the distillation term")
    q.add_argument("--max-steps", type=int, default=None, help="stop after N steps (timing and smoke tests)")
    q.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for scheme in args.schemes:
        match = SCHEME.match(scheme)
        if not match:
            p.error(f"unknown scheme {scheme!r}: (quanto|torchao)-int(8|4|2)[-gN|-gaxis][-hqq]")
        if match[4] and (match[1] != "quanto" or match[2] == "8"):
            p.error(f"{scheme}: -hqq is quanto's optimizer for int4 / int2 scales and shifts")
        if match[1] == "quanto" and match[2] == "8" and match[3] not in (None, "axis"):
            p.error(f"{scheme}: quanto stores int8 weights per output channel only (no groups)")
        if args.qat_epochs and match[1] != "quanto":
            p.error(f"{scheme}: --qat-epochs trains quanto schemes only")
    if args.qat_epochs < 0:
        p.error("--qat-epochs must be >= 0")
    return args


METHOD_NOTES = {
    "quanto-hqq": "the same storage, scales and shifts chosen by quanto's HqqOptimizer (half-quadratic, 20 "
    "iterations) instead of min / max; on per-channel conv layers quanto 0.2.7's HQQ shift is not reduced over "
    "the whole fan-in: (out, 1, 7, 1) for the 7x7 stem, one float32 per weight (out, in, 1, 1) for the 1x1 "
    "downsamples (resnet18: 163,840 bytes more than min / max), counted as stored",
    "quanto-qat-kd": "quanto's trainable fake-quantized weights (straight-through gradients; scales and shifts "
    "recomputed from the weights every step), fine-tuned by csg_hub.training.fit with DistillationLoss(parent, "
    "T=4, alpha=0.9) and convert.py's recipe (SGD lr 0.05, warm-up 0.2 epoch, cosine, label smoothing 0.1, "
    "batch 128), then frozen; wall s includes training",
}


# ---- quantization (library calls) ------------------------------------------------------------------------


def _is_weight_layer(module) -> bool:
    import torch

    return isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))


def quanto_quantize(model, bits: int, group: str | None, hqq: bool = False):
    """quanto's QConv2d / QLinear in place of every Conv2d / Linear (not frozen: trainable with fake-quantized
    weights). `group`: None keeps quanto's own choice; "axis" or a group size overrides it per layer. `hqq`:
    quanto's HqqOptimizer picks the scales and shifts (default: min / max). Returns
    `{layer: group size or "axis"}`."""
    from optimum.quanto import HqqOptimizer, qint2, qint4, qint8, quantize

    quantize(model, weights={8: qint8, 4: qint4, 2: qint2}[bits], optimizer=HqqOptimizer() if hqq else None)
    groups = {}
    for name, module in model.named_modules():
        if not hasattr(module, "weight_group_size") or module.weight_qtype is None:
            continue
        if bits < 8 and group is not None:
            fan_in = module.weight.numel() // module.weight.shape[0]
            size = None if group == "axis" else int(group)
            module.weight_group_size = size if size is not None and size < fan_in and fan_in % size == 0 else None
        groups[name] = module.weight_group_size or "axis"
    return groups


def quanto_freeze(model):
    from optimum.quanto import freeze

    freeze(model)
    return model


def torchao_quantize(model, bits: int, group: str | None):
    """torchao's IntxWeightOnlyConfig over Conv2d and Linear; layers whose group dimension the group size does
    not divide (the 1-channel stem) stay float. Returns `{layer: group size or "axis"}` for the quantized ones."""
    import torch
    from torchao.quantization import IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup

    size = 64 if group is None else group
    granularity = PerAxis(0) if size == "axis" else PerGroup(int(size))
    chosen = {}
    for name, module in model.named_modules():
        # torchao blocks a conv weight (out, in, kh, kw) as (1, g, 1, 1): g input channels at one kernel tap
        # (PerAxis(0): all of them); a 1-channel stem cannot be blocked either way
        if not _is_weight_layer(module):
            continue
        if (module.weight.shape[1] > 1) if size == "axis" else (module.weight.shape[1] % int(size) == 0):
            chosen[name] = size
    config = IntxWeightOnlyConfig(weight_dtype={8: torch.int8, 4: torch.int4, 2: torch.int2}[bits],
                                  granularity=granularity)  # fmt: skip
    quantize_(model, config, filter_fn=lambda module, fqn: fqn in chosen)
    return chosen


def save_state(model, path: Path, library: str) -> dict[str, int]:
    """The model's state dict as one safetensors file; returns the bytes by kind (weights, scales, other,
    header). Tied or non-contiguous tensors are stored as their own contiguous copies."""
    from safetensors.torch import save_file

    metadata = None
    if library == "torchao":
        from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

        tensors, metadata = flatten_tensor_state_dict(model.state_dict())
    else:
        tensors = model.state_dict()
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata=metadata)
    kinds = Counter()
    for key, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        if key.endswith(("._data", "._data._data", "qdata")):
            kinds["quantized_weights"] += size
        elif key.endswith(("._scale", "._shift", "scale", "zero_point")) and "weight" in key:
            kinds["scales_shifts"] += size
        else:
            kinds["other_tensors"] += size
    kinds["header"] = path.stat().st_size - sum(kinds.values())
    return dict(kinds)


def load_state(fresh, path: Path, library: str):
    """`fresh` (a model quantized the same way, frozen for quanto) with the tensors of `path`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    if library == "torchao":
        from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict

        with safe_open(str(path), "pt") as f:
            metadata = f.metadata()
        tensors, leftover = unflatten_tensor_state_dict(tensors, metadata)
        if leftover:
            raise RuntimeError(f"torchao could not rebuild {sorted(leftover)[:3]} from {path}")
        fresh.load_state_dict(tensors, assign=True)
    else:
        fresh.load_state_dict(tensors)
    return fresh.eval()


# ---- measurement -----------------------------------------------------------------------------------------


def point_path(output: Path, name: str) -> Path:
    return output / "points" / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}.json"


def storage_label(bits: int, groups: dict[str, object], float_layers: list[str]) -> str:
    counts = Counter(groups.values())
    order = sorted(counts, key=lambda g: (-counts[g], str(g)))
    label = f"int{bits}/g" + "+".join(str(g) for g in order) if order != ["axis"] else f"int{bits}/axis"
    return label + ("+fp32-" + ",".join(float_layers) if float_layers else "")


def measure(args, scheme: str, parent_path: str, eval_loader, train_loader=None, command: str = "") -> dict:
    """Quantize (and with `train_loader`, QAT-train) the parent by `scheme`, save, reload, evaluate."""
    import torch

    from csg_hub.conversion import load_dense
    from csg_hub.evaluation import evaluate

    start = time.perf_counter()
    library, bits, group, hqq = SCHEME.match(scheme).groups()
    bits = int(bits)
    model, _, _ = load_dense(parent_path)
    model = model.float().eval()
    layers = [n for n, m in model.named_modules() if _is_weight_layer(m)]
    quantize = quanto_quantize if library == "quanto" else torchao_quantize
    groups = quanto_quantize(model, bits, group, bool(hqq)) if library == "quanto" else quantize(model, bits, group)
    extra: dict = {}
    if train_loader is not None:
        extra = train_qat(args, model, parent_path, train_loader, eval_loader, scheme)
    if library == "quanto":
        quanto_freeze(model)
    keep = Path(args.keep_weights) if args.keep_weights else None
    with tempfile.TemporaryDirectory() as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{scheme}{'-qat' if train_loader is not None else ''}.safetensors"
        breakdown = save_state(model, path, library)
        size = path.stat().st_size
        fresh, _, _ = load_dense(parent_path)
        fresh = fresh.float().eval()
        quantize(fresh, bits, group)
        if library == "quanto":
            fresh = quanto_freeze(fresh)
            for name, module in fresh.named_modules():  # the group sizes the file was written with
                if name in groups:
                    module.weight_group_size = None if groups[name] == "axis" else groups[name]
        fresh = load_state(fresh, path, library)
    with torch.no_grad():
        probe = next(iter(eval_loader))[0][:8]
        same = torch.equal(model(probe), fresh(probe))
    if not same:
        raise RuntimeError(f"{scheme}: the model reloaded from {path.name} does not reproduce the quantized model")
    with torch.no_grad():  # quanto's int4/int2 QLinear fails under evaluate's inference_mode (quanto 0.2.7:
        # "Cannot set version_counter for inference tensor"): the same function, under no_grad
        metrics = evaluate.__wrapped__(fresh, eval_loader, progress=False)
    version = _library_version(library)
    float_layers = [n for n in layers if n not in groups]
    storage = storage_label(bits, groups, float_layers)
    method = (library if train_loader is None else "quanto-qat-kd") + ("-hqq" if hqq else "")
    twin = Path(parent_path).parent.name if Path(parent_path).name == "model" else Path(parent_path).name
    point = {
        "name": f"{twin}__{method}-{storage}",
        "run": twin,
        "twin": twin,
        "model": load_dense(parent_path)[1]["architecture"],
        "kind": "dense",
        "method": method,
        "scheme": scheme,
        "storage": storage,
        "bits": bits,
        "bytes": size,
        "bytes_breakdown": breakdown,
        "top1": round(metrics["top1"], 2),
        "num_samples": metrics["num_samples"],
        "source": "measured",
        "command": command,
        "library": version,
        "group_sizes": dict(Counter(str(g) for g in groups.values())),
        "float_layers": float_layers,
        "notes": NOTES[library] if bits < 8 or library == "torchao" else NOTES["quanto-int8"],
        "wall_seconds": round(time.perf_counter() - start, 1),
        **extra,
    }
    return point


def _library_version(library: str) -> str:
    from importlib.metadata import version

    return f"optimum-quanto {version('optimum-quanto')}" if library == "quanto" else f"torchao {version('torchao')}"


def train_qat(args, model, parent_path: str, train_loader, eval_loader, scheme: str) -> dict:
    """Fine-tune the (unfrozen) quanto model with the project's loop and distillation loss from the parent."""
    from csg_hub.conversion import load_dense
    from csg_hub.training import DistillationLoss, TrainingArguments, fit

    parent, _, _ = load_dense(parent_path)
    training = TrainingArguments(epochs=args.qat_epochs, batch_size=args.batch_size, lr=args.lr,
                                 warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing,
                                 seed=args.seed, max_steps=args.max_steps)  # fmt: skip
    out = Path(args.output) / "qat" / scheme  # fit's resume checkpoint (git-ignored checkpoint/ folder)

    def log(record: dict) -> None:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}), flush=True)

    history = fit(model, train_loader, training, eval_loader, out, on_epoch_end=log,
                  loss_fn=DistillationLoss(parent.float(), args.temperature, args.alpha))  # fmt: skip
    model.eval()
    return {"epochs": args.qat_epochs, "history": history, "temperature": args.temperature, "alpha": args.alpha,
            "training": {**vars(training)}}  # fmt: skip


# ---- table -----------------------------------------------------------------------------------------------


def table(points: list[dict], parent_bytes: int, parent_top1: float) -> str:
    lines = [(f"Parent: fp32 safetensors {parent_bytes:,} bytes, {parent_top1:.2f}% test top-1. Bytes: the quantized "
              "model's whole state dict as one safetensors file (header included); ratio: parent bytes / bytes; "
              "top-1 of the model reloaded from that file."), "",
             "| method | scheme | stored as | library | bytes | ratio vs fp32 | test top-1 | Δ vs fp32 | wall s |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for p in sorted(points, key=lambda p: (p["method"], -p["bits"], -p["bytes"])):
        method = p["method"] + (f" ({p['epochs']:g} ep)" if "epochs" in p else "")
        lines.append(f"| {method} | {p.get('scheme', '')} | {p['storage']} | {p['library']} | {p['bytes']:,} "
                     f"| {parent_bytes / p['bytes']:.1f}x | {p['top1']:.2f}% | {p['top1'] - parent_top1:+.2f} "
                     f"| {p['wall_seconds']:.0f} |")  # fmt: skip
    notes = {p["method"].split("-")[0] + ("-int8" if p["bits"] == 8 and p["method"] == "quanto" else ""): p["notes"]
             for p in points if p.get("notes")}  # fmt: skip
    methods = {p["method"] for p in points}
    notes.update({k: v for k, v in METHOD_NOTES.items() if any(m.startswith(k) for m in methods)})
    lines += ["", *(f"- {k}: {v}." for k, v in sorted(notes.items()))] if notes else []
    return "\n".join(lines) + "\n"


def parent_top1(parent_path: str) -> float | None:
    """The parent's test top-1 as its training run recorded it (`<run>/metrics.json` beside `<run>/model`)."""
    metrics = Path(parent_path).parent / "metrics.json"
    return json.loads(metrics.read_text())["final"]["top1"] if metrics.exists() else None


def write_table(output: Path, parent_path: str, top1: float) -> None:
    points = [json.loads(f.read_text()) for f in sorted((output / "points").glob("*.json"))]
    parent_bytes = (Path(parent_path) / "model.safetensors").stat().st_size
    (output / "baselines.md").write_text(table(points, parent_bytes, top1))


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    import torch

    from csg_hub.conversion import load_dense
    from csg_hub.data import classification_loader, image_label_columns, label_mapping, load_image_dataset

    torch.manual_seed(args.seed)
    command = shlex.join(["python", "scripts/quant_baselines.py", *(argv if argv is not None else sys.argv[1:])])
    _, kwargs, _ = load_dense(args.parent)
    import csg_hub

    config = csg_hub.CSGConfig(**kwargs)
    eval_set = load_image_dataset(args.dataset, args.eval_split, limit=args.limit)
    feature = eval_set.features[image_label_columns(eval_set)[1]]
    label_map = label_mapping(getattr(feature, "names", None), [config.id2label[i] for i in range(config.num_labels)])
    loaders = {"num_classes": config.num_labels, "label_map": label_map}
    eval_loader = classification_loader(eval_set, config.data_config, 256, **loaders)
    train_loader = None
    if args.qat_epochs:
        train_set = load_image_dataset(args.dataset, args.train_split, limit=args.train_limit)
        train_loader = classification_loader(train_set, config.data_config, args.batch_size, True, args.seed, **loaders)
    output = Path(args.output)
    top1 = parent_top1(args.parent)
    if top1 is None or args.limit:
        from csg_hub.evaluation import evaluate

        top1 = evaluate(load_dense(args.parent)[0].float(), eval_loader, progress=False)["top1"]
    if args.table_only:
        write_table(output, args.parent, top1)
        return []
    points = []
    for scheme in args.schemes:
        point = measure(args, scheme, args.parent, eval_loader, train_loader, command)
        path = point_path(output, point["name"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(point, indent=2) + "\n")
        print(json.dumps({k: v for k, v in point.items() if k not in ("history", "training")}), flush=True)
        points.append(point)
        write_table(output, args.parent, top1)
    return points


if __name__ == "__main__":
    main()
