"""Compress a CSG or timm model (Hub repo or local folder) into weight-VAE latents plus a decoder.

Writes `<output-dir>/decoder/`, `<output-dir>/latents/` and `<output-dir>/report.json` (the honest
accounting: latents-only, total and amortized ratios, bytes, reconstruction MSE, and top-1 before and after
decoding when `--eval-dataset` is given). `--push-to-hub REPO` also uploads the decoder (to
`--decoder-repo-id`, default `REPO-decoder`) and the latents repo, which pins the decoder's commit.
`--decoder REPO[@REV]` reuses an existing decoder instead of training one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="Hub repo id or local folder of a CSG or timm model")
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
    p.add_argument("--baselines", nargs="*", default=["fp16", "int8", "int4"], choices=["fp16", "int8", "int4"],
                   help="weight round trips to compare with, at their bytes (with --eval-dataset)")  # fmt: skip
    p.add_argument("--output-dir", default=None, help="default: outputs/<model name>-vae")
    p.add_argument("--push-to-hub", default=None, metavar="REPO", help="latents repo id to upload to")
    p.add_argument("--decoder-repo-id", default=None, help="decoder repo id (default: <push-to-hub>-decoder)")
    return p.parse_args(argv)


def _selection(text: str) -> str | list[str]:
    return text if "," not in text else [s for s in text.split(",") if s]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)

    from csg_hub import vae as weight_vae
    from csg_hub.data import classification_loader, load_image_dataset
    from csg_hub.evaluation import evaluate as evaluate_loader
    from csg_hub.hub import load_classifier
    from csg_hub.vae import VAETrainingConfig, WeightVAEConfig, paper_recipe, round_trip

    model, data_config = load_classifier(args.model, args.revision)
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
    artifact = weight_vae.compress(
        model, _selection(args.selection), vae_config, training, vae=decoder, latent_dtype=args.latent_dtype
    )

    evaluate = None
    if args.eval_dataset:
        dataset = load_image_dataset(args.eval_dataset, args.eval_split, limit=args.eval_limit)
        evaluate = classification_loader(dataset, data_config, args.batch_size)
    report = weight_vae.compression_report(artifact, model, evaluate)
    if evaluate is not None and args.baselines:
        report["baselines"] = {}
        for scheme in args.baselines:
            rounded, stored = round_trip(model, scheme)
            top1 = evaluate_loader(rounded, evaluate, progress=False)["top1"]
            report["baselines"][scheme] = {"bytes": stored, "top1": top1}
        print(weight_vae.comparison_table(report))

    out = Path(args.output_dir or f"outputs/{Path(args.model).name}-vae")
    weight_vae.save_decoder(artifact.vae, out / "decoder")
    weight_vae.save_latents(artifact, out / "latents", {"path": "../decoder"}, report=report)
    if args.push_to_hub:
        if args.decoder and not Path(decoder_source).is_dir():
            decoder_repo, revision = decoder_source, decoder_revision or None  # already on the Hub
        else:
            decoder_repo = args.decoder_repo_id or f"{args.push_to_hub}-decoder"
            revision = weight_vae.push_decoder(artifact.vae, decoder_repo).oid
        commit = weight_vae.push_latents(artifact, args.push_to_hub, decoder_repo, revision, report=report)
        report.update(latents_repo=args.push_to_hub, latents_revision=commit.oid, decoder_repo=decoder_repo)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if "accuracy_before" in report:
        (out / "comparison.md").write_text(weight_vae.comparison_table(report))
    return report


if __name__ == "__main__":
    main()
