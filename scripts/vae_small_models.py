"""The weight-VAE paper's table (Cheng et al., arXiv 2408.14513) on Fashion-MNIST, counted honestly.

Trains the paper's four small models (FNN, CNN, 2-layer RNN and LSTM with hidden 128, image rows as time
steps) for a few epochs on CPU, compresses each with latent 64 using each requested recipe, and writes
`<output-dir>/small_models.json` and `<output-dir>/small_models.md`: top-1 of the original and decoded
model, latents-only ratio (the paper's number, decoder left out), total ratio with the decoder, decoder
size, reconstruction MSE and wall time.

Recipes (`--recipes`): `paper` (raw weights, beta 1, no refinement); `paper+norm` and `paper+small-beta` (the
paper with per-chunk normalisation, or with beta 1e-3, only); `ours` (csg-hub's default: per-chunk normalisation,
beta 1e-3, latent refinement); `ours-no-refine` (the same VAE, encoder latents only); `ours-linear` (a linear
64 -> 2048 decoder, 133K parameters); `ours-linear+distill` (that VAE, latents refined against the model's own
predictions on training images). `--shared-decoder` also trains one VAE on all models' chunks, for `ours` and
`ours-linear+distill`, and reports the total ratio with the decoder amortized over the models.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

TRAINING = {"fnn": (10, 0.05), "cnn": (3, 0.05), "rnn": (5, 0.02), "lstm": (4, 0.05)}  # epochs, SGD lr
RECIPES = ("paper", "paper+norm", "paper+small-beta", "ours", "ours-no-refine", "ours-linear", "ours-linear+distill")
# recipes that only change the refinement reuse the VAE of another recipe instead of training their own
REUSES = {"ours-no-refine": "ours", "ours-linear+distill": "ours-linear"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", choices=sorted(TRAINING), default=["fnn", "cnn", "rnn", "lstm"])
    p.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    p.add_argument("--shared-decoder", action="store_true", help="also one decoder for all models (amortized)")
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--vae-epochs", type=int, default=500, help="upper bound; early stopping ends sooner")
    p.add_argument("--train-limit", type=int, default=None, help="train the small models on N images (smoke runs)")
    p.add_argument("--train-epochs", type=int, default=None, help="override the per-model training epochs")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="runs/vae")
    return p.parse_args(argv)


def _recipe(name: str, latent_dim: int, epochs: int, seed: int):
    """`(vae_config, training, distill)` of a recipe."""
    from csg_hub.vae import VAETrainingConfig, WeightVAEConfig, paper_recipe

    if name.startswith("paper"):
        vae_config, training = paper_recipe(latent_dim=latent_dim)
        if name == "paper+norm":
            vae_config = dataclasses.replace(vae_config, normalize="chunk")
        if name == "paper+small-beta":
            training = dataclasses.replace(training, beta=1e-3)
        return vae_config, dataclasses.replace(training, epochs=epochs, seed=seed), False
    decoder = () if name.startswith("ours-linear") else (512,)
    training = VAETrainingConfig(epochs=epochs, seed=seed, refine_steps=0 if name == "ours-no-refine" else 500)
    return WeightVAEConfig(latent_dim=latent_dim, decoder_hidden=decoder), training, name.endswith("+distill")


def train_small_model(name: str, epochs: int, lr: float, limit: int | None, seed: int):
    """A small model trained on Fashion-MNIST with the project's training loop; returns it and the seconds taken."""
    import torch

    from csg_hub.data import fashion_mnist_loader
    from csg_hub.training import TrainingArguments, fit
    from csg_hub.vae.small_models import build_small_model

    torch.manual_seed(seed)
    model = build_small_model(name)
    start = time.perf_counter()
    loader = fashion_mnist_loader("train", 128, train=True, limit=limit, seed=seed)
    fit(model, loader, TrainingArguments(epochs=epochs, lr=lr, warmup_epochs=0.2, seed=seed), progress=False)
    return model.eval(), time.perf_counter() - start


def _row(name: str, recipe: str, artifact, model, test_loader, seconds: float, num_models: int = 1) -> dict:
    from csg_hub.vae import compression_report

    report = compression_report(artifact, model, test_loader, num_models=num_models, print_report=False)
    return {
        "model": name,
        "recipe": recipe,
        "params": sum(p.numel() for p in model.parameters()),
        **report,
        "accuracy_drop": report["accuracy_before"] - report["accuracy_after"],
        "vae_epochs": len(artifact.history),
        "compress_seconds": seconds,
    }


def _compress(model, vae_config, training, vae=None, distill_batches=None):
    from csg_hub.vae import compress

    start = time.perf_counter()
    artifact = compress(
        model, vae_config=None if vae else vae_config, training=training, vae=vae, distill_batches=distill_batches
    )
    return artifact, time.perf_counter() - start


def markdown(rows: list[dict]) -> str:
    """The results as a markdown table."""
    lines = [
        (
            "| model | params | recipe | top-1 original | top-1 decoded | drop | latents-only ratio | total ratio "
            "(with decoder) | amortized over | decoder params | MSE (relative) | VAE epochs | compress s |"
        ),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        total = r["total_ratio"] if r["num_models"] == 1 else r["amortized_ratio"]
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['recipe']} | {r['accuracy_before']:.2f} | {r['accuracy_after']:.2f} | "
            f"{r['accuracy_drop']:+.2f} | {r['latents_only_ratio']:.1f}x | {total:.2f}x | {r['num_models']} | "
            f"{r['decoder_params']:,} | {r['mse']:.2e} ({r['relative_mse']:.1e}) | {r['vae_epochs']} | "
            f"{r['compress_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _training_table(models: dict, seconds: dict[str, float], epochs: dict[str, int], rows: list[dict]) -> str:
    lines = ["", "| model | params | training epochs | training s (CPU) | top-1 |", "|---|---:|---:|---:|---:|"]
    for name, model in models.items():
        top1 = next(r["accuracy_before"] for r in rows if r["model"] == name)
        params = sum(p.numel() for p in model.parameters())
        lines.append(f"| {name} | {params:,} | {epochs[name]} | {seconds[name]:.0f} | {top1:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)

    import torch

    from csg_hub.data import fashion_mnist_loader
    from csg_hub.vae import flatten_parameters, train_weight_vae

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    test_loader = fashion_mnist_loader("test", 1000)
    distill_batches = fashion_mnist_loader("train", 256, train=True, limit=args.train_limit, seed=args.seed)
    models, rows, training_seconds, training_epochs = {}, [], {}, {}
    for name in args.models:
        training_epochs[name] = args.train_epochs or TRAINING[name][0]
        models[name], training_seconds[name] = train_small_model(
            name, training_epochs[name], TRAINING[name][1], args.train_limit, args.seed
        )
        print(f"trained {name} in {training_seconds[name]:.0f} s", flush=True)
        done: dict[str, tuple] = {}
        for recipe in args.recipes:
            vae_config, training, distill = _recipe(recipe, args.latent_dim, args.vae_epochs, args.seed)
            base = done.get(REUSES.get(recipe))
            artifact, seconds = _compress(
                models[name], vae_config, training, base[0].vae if base else None, distill_batches if distill else None
            )
            if base:  # the reused VAE's training counts towards this artifact's time
                artifact.history, seconds = base[0].history, seconds + base[1]
            done[recipe] = (artifact, seconds)
            rows.append(_row(name, recipe, artifact, models[name], test_loader, seconds))
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)

    if args.shared_decoder and len(models) > 1:
        for recipe in ("ours", "ours-linear+distill"):
            vae_config, training, distill = _recipe(recipe, args.latent_dim, args.vae_epochs, args.seed)
            start = time.perf_counter()
            chunks = torch.cat([flatten_parameters(m, chunk_size=vae_config.chunk_size)[0] for m in models.values()])
            shared, history = train_weight_vae(chunks, vae_config, training)
            share = (time.perf_counter() - start) / len(models)
            for name, model in models.items():
                artifact, seconds = _compress(model, None, training, shared, distill_batches if distill else None)
                artifact.history = history
                row = _row(
                    name, f"{recipe}, shared decoder", artifact, model, test_loader, seconds + share, len(models)
                )
                rows.append(row)
                print(markdown(rows[-1:]).splitlines()[-1], flush=True)

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join(["python scripts/vae_small_models.py", *(sys.argv[1:] if argv is None else argv)]),
        "dataset": "Fashion-MNIST (Debian dataset-fashion-mnist IDX files), 10k test images",
        "training_epochs": training_epochs,
        "training_seconds": training_seconds,
        "wall_seconds": time.perf_counter() - started,
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
    }
    (out / "small_models.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(rows) + _training_table(models, training_seconds, training_epochs, rows)
    (out / "small_models.md").write_text(text)
    print(text)
    return rows


if __name__ == "__main__":
    main()
