"""Compress a CSG or timm model (Hub repo or local folder) into weight-VAE latents plus a decoder.

Writes `<output-dir>/decoder/`, `<output-dir>/latents/` and `<output-dir>/report.json` (the honest
accounting: latents-only, total and amortized ratios, bytes, reconstruction MSE, and top-1 before and after
decoding when `--eval-dataset` is given). `--push-to-hub REPO` also uploads the decoder (to
`--decoder-repo-id`, default `REPO-decoder`) and the latents repo, which pins the decoder's commit.
`--decoder REPO[@REV]` reuses an existing decoder instead of training one.

Several models share one decoder: the VAE is trained on all their chunks (`csg_hub.vae.compress_many`) and
each model gets its own latents, `<output-dir>/<name>/latents/` and `<output-dir>/<name>/report.json`
(amortized over the N models), next to the one `<output-dir>/decoder/`; `<output-dir>/report.json` then holds
the zoo's totals. With `--push-to-hub PREFIX` the decoder is pushed once (`--decoder-repo-id`, default
`PREFIX-decoder`) and each latents repo, `PREFIX-<name>`, pins its commit.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", nargs="+", help="Hub repo id(s) or local folder(s) of CSG or timm models; "
                   "several share one decoder trained on all their chunks")  # fmt: skip
    p.add_argument("--revision", default=None, help="model revision (branch or commit sha)")
    p.add_argument(
        "--selection",
        default="all",
        help="'all', 'csg' (codes + generator), 'convs', or comma-separated state-dict name patterns",
    )
    p.add_argument("--chunk-size", type=int, default=2048)
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--encoder-hidden", type=int, nargs="*", default=[512])
    p.add_argument("--decoder-hidden", type=int, nargs="*", default=[512], help="none for a linear decoder")
    p.add_argument("--normalize", choices=["none", "global", "chunk"], default="chunk")
    p.add_argument("--beta", type=float, default=1e-3, help="KL weight")
    p.add_argument("--copies", type=int, default=100, help="noisy copies of the weights (80/20 train/val)")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--refine-steps", type=int, default=500, help="latent refinement steps (0: off)")
    p.add_argument(
        "--paper-recipe", action="store_true", help="the paper's setting: raw weights, beta 1, no refinement"
    )
    p.add_argument("--decoder", default=None, help="reuse this decoder repo or folder (REPO or REPO@REVISION)")
    p.add_argument("--latent-dtype", choices=["float16", "float32"], default="float16")
    p.add_argument("--eval-dataset", default=None, help="Hub dataset id or local folder for top-1 before/after")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--baselines", nargs="*", default=["fp16", "int8", "int4"], choices=["fp16", "int8", "int4", "int4-g64"],
                   help="weight round trips to compare with, at their bytes (with --eval-dataset)")  # fmt: skip
    p.add_argument("--output-dir", default=None, help="default: outputs/<model name>-vae (several: outputs/zoo-vae)")
    p.add_argument("--push-to-hub", default=None, metavar="REPO",
                   help="latents repo id to upload to (several models: the prefix of PREFIX-<name>)")  # fmt: skip
    p.add_argument("--decoder-repo-id", default=None, help="decoder repo id (default: <push-to-hub>-decoder)")
    return p.parse_args(argv)


def _selection(text: str) -> str | list[str]:
    return text if "," not in text else [s for s in text.split(",") if s]


def _name(model: str) -> str:
    return Path(model.partition("@")[0]).name


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)

    from csg_hub import vae as weight_vae
    from csg_hub.data import classification_loader, load_image_dataset
    from csg_hub.evaluation import evaluate as evaluate_loader
    from csg_hub.hub import load_classifier
    from csg_hub.vae import VAETrainingConfig, WeightVAEConfig, paper_recipe, round_trip

    names = [_name(m) for m in args.model]
    if len(set(names)) != len(names):
        raise SystemExit(f"Models with the same folder or repo name would share an output folder: {names}.")
    loaded = [load_classifier(m, args.revision) for m in args.model]
    vae_config = WeightVAEConfig(
        chunk_size=args.chunk_size,
        latent_dim=args.latent_dim,
        encoder_hidden=tuple(args.encoder_hidden),
        decoder_hidden=tuple(args.decoder_hidden),
        normalize=args.normalize,
    )
    training = VAETrainingConfig(
        copies=args.copies, epochs=args.epochs, patience=args.patience, beta=args.beta, refine_steps=args.refine_steps
    )
    if args.paper_recipe:
        vae_config, training = paper_recipe(args.chunk_size, args.latent_dim)
    decoder_source, _, decoder_revision = (args.decoder or "").partition("@")
    decoder = weight_vae.load_decoder(decoder_source, decoder_revision or None) if args.decoder else None
    started = time.perf_counter()
    artifacts = weight_vae.compress_many(
        [model for model, _ in loaded],
        _selection(args.selection),
        None if decoder else vae_config,
        training,
        vae=decoder,
        latent_dtype=args.latent_dtype,
    )
    compress_seconds = time.perf_counter() - started

    dataset = load_image_dataset(args.eval_dataset, args.eval_split, limit=args.eval_limit) if args.eval_dataset else None
    reports = []
    for (model, data_config), artifact in zip(loaded, artifacts, strict=True):
        evaluate = classification_loader(dataset, data_config, args.batch_size) if dataset is not None else None
        report = weight_vae.compression_report(artifact, model, evaluate, num_models=len(artifacts))
        if evaluate is not None and args.baselines:
            report["baselines"] = {}
            for scheme in args.baselines:
                rounded, stored = round_trip(model, scheme)
                top1 = evaluate_loader(rounded, evaluate, progress=False)["top1"]
                report["baselines"][scheme] = {"bytes": stored, "top1": top1}
            print(weight_vae.comparison_table(report))
        reports.append(report)

    single = len(artifacts) == 1
    out = Path(args.output_dir or (f"outputs/{names[0]}-vae" if single else "outputs/zoo-vae"))
    folders = [out] if single else [out / name for name in names]
    shared = artifacts[0].vae
    weight_vae.save_decoder(shared, out / "decoder")
    for artifact, report, folder in zip(artifacts, reports, folders, strict=True):
        weight_vae.save_latents(artifact, folder / "latents", {"path": os.path.relpath(out / "decoder", folder / "latents")},
                                report=report)  # fmt: skip
    if args.push_to_hub:
        if args.decoder and not Path(decoder_source).is_dir():
            decoder_repo, revision = decoder_source, decoder_revision or None  # already on the Hub
        else:
            decoder_repo = args.decoder_repo_id or f"{args.push_to_hub}-decoder"
            revision = weight_vae.push_decoder(shared, decoder_repo).oid
        for name, artifact, report in zip(names, artifacts, reports, strict=True):
            repo = args.push_to_hub if single else f"{args.push_to_hub}-{name}"
            commit = weight_vae.push_latents(artifact, repo, decoder_repo, revision, report=report)
            report.update(latents_repo=repo, latents_revision=commit.oid, decoder_repo=decoder_repo)
    for report, folder in zip(reports, folders, strict=True):
        (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        if "accuracy_before" in report:
            (folder / "comparison.md").write_text(weight_vae.comparison_table(report))
    if single:
        return reports[0]
    per_model = [r["latents_bytes"] + r["kept_bytes"] for r in reports]
    zoo = {
        "models": dict(zip(args.model, [f"{name}/report.json" for name in names], strict=True)),
        "num_models": len(artifacts),
        "num_chunks": sum(r["num_chunks"] for r in reports),
        "vae_epochs": len(artifacts[0].history),
        "compress_seconds": compress_seconds,
        "decoder_bytes": reports[0]["decoder_bytes"],
        "latents_and_kept_bytes": dict(zip(names, per_model, strict=True)),
        "zoo_bytes": sum(per_model) + reports[0]["decoder_bytes"],
        "original_bytes": sum(r["original_bytes"] for r in reports),
        "reports": dict(zip(names, reports, strict=True)),
    }
    (out / "report.json").write_text(json.dumps(zoo, indent=2) + "\n")
    return zoo


if __name__ == "__main__":
    main()
