"""One weight-VAE decoder for several zoo models: does a shared decoder ever pay off in a zoo?

Runs `scripts/compress.py` on all `--models` at once (one VAE trained on the chunks of every model, one
latents repo per model pinned to the one decoder repo; arguments this script does not know are passed on to
it), pushes them (to the Hub `HF_ENDPOINT` names, or with `--offline-hub` to csg-hub's offline Hub-protocol
server) and pulls each latents repo back, checking that the pulled model is the one compressed. Then per
model: top-1 before and after decoding (and after re-estimating BatchNorm statistics on `--recalibrate-bn`
training batches, through `scripts/decompress.py` on the pushed repo), the bytes of its latents (+ kept
tensors) and its share of the decoder, against the same model stored as int8 (every weight matrix,
`csg_hub.storage.storage_sizes`) and int4 (4-bit values, one fp16 scale per 64; `storage_sizes`' "int4/all"
when it has one, else the `int4-g64` round trip's bytes; top-1 from that round trip).

Writes `<output-dir>/points/<run>__weight-vae-shared.json` (one frontier point per model), `zoo.json` and
`summary.md` (the table; the verdict paragraph is written by hand).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import socket
import sys
import tempfile
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
DEFAULT_MODELS = [
    "model_cards/resnet18-csg-28px-10ep",
    "model_cards/resnet18-csg-28px-c32",
    "model_cards/resnet18-csg-28px-s16c64",
    "model_cards/resnet18-csg-28px-allconvs-p48",
    "model_cards/resnet18-csg-from-dense",
]


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="CSG model folders (e.g. under model_cards/)")
    p.add_argument("--output-dir", default="runs/vae/zoo-shared")
    p.add_argument("--eval-dataset", default="data/fashion_mnist")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N test images (smoke runs)")
    p.add_argument("--recalibrate-bn", type=int, default=20, metavar="N", help="BatchNorm re-estimation batches (0: off)")
    p.add_argument("--runs", default="runs/zoo", help="training runs, to name each model's dense twin")
    p.add_argument("--repo-prefix", default="csg-hub/zoo-weight-vae", help="latents repos PREFIX-<name>")
    p.add_argument("--offline-hub", action="store_true", help="push to a local offline Hub-protocol server")
    return p.parse_known_args(argv)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"csg_hub_{name}_script", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _offline_hub() -> object:
    """Start the offline Hub-protocol server and point huggingface_hub at it (before anything imports it)."""
    if "huggingface_hub" in sys.modules:
        raise SystemExit("--offline-hub must be set up before huggingface_hub is imported.")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_DISABLE_XET="1", HF_TOKEN="local-test-server",
                      HF_HOME=tempfile.mkdtemp(prefix="vae-zoo-hf-home-"))  # fmt: skip
    from csg_hub.testing.hub_server import HubServer

    return HubServer(root=Path(tempfile.mkdtemp(prefix="vae-zoo-hub-")), port=port).start()


def identity(folder: Path, runs: Path) -> tuple[str, str | None]:
    """The training run a model folder came from (as `scripts/frontier.py` names it) and its dense twin: the
    run's `--dense-baseline`, else the dense parent a conversion started from (`base_model`)."""
    frontier = _script("frontier")
    run = frontier.run_name(folder)
    metrics = runs / run / "metrics.json"
    twin = frontier._dense_run({**json.loads(metrics.read_text())}) if metrics.exists() else None
    if twin is None:
        parent = json.loads((folder / "config.json").read_text()).get("base_model")
        twin = Path(parent).parent.name if parent and Path(parent).name == "model" else parent and Path(parent).name
    return run, twin


def int4_bytes(model, report: dict) -> tuple[int, str]:
    """int4 bytes of every weight matrix: `storage_sizes`' "int4/all" when csg_hub.storage has it, else the
    `int4-g64` round trip's count."""
    from csg_hub.storage import storage_sizes

    sizes = storage_sizes(model)
    if "int4/all" in sizes:
        return sizes["int4/all"], "csg_hub.storage.storage_sizes int4/all"
    return report["baselines"]["int4-g64"]["bytes"], "int4-g64 round trip (numel/2 + numel/64*2 per matrix, fp32 rest)"


def point(name: str, run: str, twin: str | None, folder: str, report: dict, n: int, top1: float, command: str) -> dict:
    latents = report["latents_bytes"] + report["kept_bytes"]
    return {
        "name": f"{run}__weight-vae-shared",
        "run": run,
        "twin": twin,
        "model": report["architecture"],
        "kind": "csg",
        "folder": folder,
        "method": "weight-vae-shared",
        "storage": "vae-latents+decoder/N",
        "bits": None,
        "bytes": latents + report["decoder_bytes"] / n,
        "latents_bytes": latents,
        "latent_vectors_bytes": report["latents_bytes"],
        "kept_bytes": report["kept_bytes"],
        "decoder_bytes": report["decoder_bytes"],
        "n_models": n,
        "top1": top1,
        "num_samples": report["num_samples"],
        "source": "measured",
        "command": command,
    }


def summary(rows: list[dict], zoo: dict) -> str:
    n, decoder = zoo["num_models"], zoo["decoder_bytes"]
    lines = [
        (
            f"One decoder ({decoder:,} bytes) shared by {n} models; {zoo['num_chunks']:,} chunks of 2048, "
            f"{zoo['vae_epochs']} VAE epochs, compression {zoo['compress_seconds'] / 60:.1f} min on one CPU thread."
        ),
        "",
        (
            "| model | top-1 fp32 | top-1 decoded | decoded + BN recal | rel. MSE | latents + kept B | + decoder/N B "
            "| int8/all B | top-1 int8 | int4 B | top-1 int4 |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        recal = f"{r['top1_recal']:.2f}" if r["top1_recal"] is not None else "n/a"
        lines.append(
            f"| {r['folder']} | {r['top1_before']:.2f} | {r['top1_after']:.2f} | {recal} | {r['relative_mse']:.3g} "
            f"| {r['latents_bytes']:,} | {round(r['bytes']):,} | {r['int8_bytes']:,} | {r['int8_top1']:.2f} "
            f"| {r['int4_bytes']:,} | {r['int4_top1']:.2f} |"
        )
    totals = zoo["totals"]
    lines += [
        "",
        "| the zoo of N models | bytes | per model |",
        "|---|---:|---:|",
        f"| fp32 checkpoints | {totals['fp32']:,} | {totals['fp32'] / n:,.0f} |",
        f"| int8/all | {totals['int8']:,} | {totals['int8'] / n:,.0f} |",
        f"| int4 (g64) | {totals['int4']:,} | {totals['int4'] / n:,.0f} |",
        f"| weight-VAE: latents + kept of all + one decoder | {totals['vae']:,} | {totals['vae'] / n:,.0f} |",
        f"| (of which the decoder) | {decoder:,} | {decoder / n:,.0f} |",
        "",
        (
            "Break-even zoo size at these per-model bytes (decoder / (baseline - (latents + kept)), accuracy aside): "
            f"{zoo['break_even']['int8']:.1f} models against int8, {zoo['break_even']['int4']:.1f} against int4."
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args, compress_args = parse_args(argv)
    command = shlex.join(["python", "scripts/vae_zoo.py", *(sys.argv[1:] if argv is None else argv)])
    server = _offline_hub() if args.offline_hub else None
    started = time.perf_counter()
    try:
        return _run(args, compress_args, command, started)
    finally:
        if server is not None:
            server.stop()


def _run(args: argparse.Namespace, compress_args: list[str], command: str, started: float) -> dict:
    import torch

    from csg_hub.hub import load_classifier
    from csg_hub.storage import storage_sizes
    from csg_hub.vae import load_latents, pull_latents

    out = Path(args.output_dir)
    eval_args = ["--eval-dataset", args.eval_dataset] + (["--eval-limit", str(args.eval_limit)] if args.eval_limit else [])
    zoo = _script("compress").main([
        *args.models, "--output-dir", str(out), "--push-to-hub", args.repo_prefix, "--baselines", "int8", "int4-g64",
        *eval_args, *compress_args,
    ])  # fmt: skip
    n, rows, points = zoo["num_models"], [], []
    decompress = _script("decompress")
    for folder in args.models:
        name = Path(folder).name
        report = zoo["reports"][name]
        model, _ = load_classifier(folder)
        run, twin = identity(Path(folder), Path(args.runs))
        # the pushed repo, pulled back with its pinned decoder, is the model that was compressed and evaluated
        pulled = pull_latents(report["latents_repo"]).state_dict()
        local = load_latents(out / name / "latents").to_model().state_dict()
        identical = all(torch.equal(pulled[k], v) for k, v in local.items())
        if not identical:
            raise SystemExit(f"{report['latents_repo']} pulled from the Hub differs from {out / name / 'latents'}.")
        recal = None
        if args.recalibrate_bn:
            recal = decompress.main([report["latents_repo"], *eval_args, "--recalibrate-bn", str(args.recalibrate_bn)])
        int4, int4_source = int4_bytes(model, report)
        report = {**report, "architecture": model.config.architecture, "num_samples": args.eval_limit or 10000}
        p = point(name, run, twin, folder, report, n, report["accuracy_after"], command)
        points.append(p)
        rows.append({
            **p, "top1_before": report["accuracy_before"], "top1_after": report["accuracy_after"],
            "top1_recal": recal["top1"] if recal else None, "relative_mse": report["relative_mse"],
            "fp32_bytes": storage_sizes(model)["float32"], "int8_bytes": storage_sizes(model)["int8/all"],
            "int8_top1": report["baselines"]["int8"]["top1"], "int4_bytes": int4, "int4_source": int4_source,
            "int4_top1": report["baselines"]["int4-g64"]["top1"], "latents_repo": report["latents_repo"],
            "latents_revision": report["latents_revision"], "decoder_repo": report["decoder_repo"],
            "hub_round_trip_identical": identical,
        })  # fmt: skip
        if recal:
            p["top1_bn_recalibrated"] = recal["top1"]
            p["bn_recalibration_batches"] = args.recalibrate_bn
        path = out / "points" / f"{p['name']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(p, indent=2) + "\n")
    per_model = sum(r["latents_bytes"] for r in rows)
    decoder = zoo["decoder_bytes"]
    totals = {
        "fp32": sum(r["fp32_bytes"] for r in rows),
        "int8": sum(r["int8_bytes"] for r in rows),
        "int4": sum(r["int4_bytes"] for r in rows),
        "vae": per_model + decoder,
    }
    saved = {k: (totals[k] - per_model) / n for k in ("int8", "int4")}
    result = {
        "command": command,
        "hub": os.environ.get("HF_ENDPOINT", "https://huggingface.co") if not args.offline_hub else "offline test server",
        "wall_seconds": time.perf_counter() - started,
        "num_models": n,
        "num_chunks": zoo["num_chunks"],
        "vae_epochs": zoo["vae_epochs"],
        "compress_seconds": zoo["compress_seconds"],
        "decoder_bytes": decoder,
        "totals": totals,
        "break_even": {k: decoder / v if v > 0 else float("inf") for k, v in saved.items()},
        "models": rows,
    }
    (out / "zoo.json").write_text(json.dumps(result, indent=2) + "\n")
    text = summary(rows, result)
    (out / "summary.md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
