"""Rebuild a model from a weight-VAE latents repo (or folder) and its pinned decoder.

Saves the decoded model as an ordinary checkpoint in `--output-dir` (CSG: `save_pretrained`, loadable with the
transformers Auto classes; timm: a timm folder; small models: `model.safetensors` + `model_config.json`),
optionally re-estimates BatchNorm statistics and evaluates it, and `--push-to-hub REPO` uploads a CSG
or timm result as a regular model repo.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("latents", help="latents repo id or local latents folder")
    p.add_argument("--revision", default=None, help="latents revision (branch or commit sha)")
    p.add_argument("--output-dir", default=None, help="where to save the decoded model")
    p.add_argument("--push-to-hub", default=None, metavar="REPO", help="upload the decoded CSG or timm model")
    p.add_argument("--eval-dataset", default=None, help="Hub dataset id or local folder to measure top-1 on")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--recalibrate-bn", type=int, default=0, metavar="N", help="re-estimate BatchNorm on N batches")
    p.add_argument("--calibration-split", default="train", help="split of --eval-dataset used for --recalibrate-bn")
    p.add_argument("--batch-size", type=int, default=256)
    return p.parse_args(argv)


def _data_config(model) -> dict:
    from timm.data import resolve_data_config

    from csg_hub.vae.small_models import SMALL_MODEL_DATA_CONFIG

    if hasattr(model, "config"):
        return model.config.data_config
    if hasattr(model, "spec"):
        return SMALL_MODEL_DATA_CONFIG
    return resolve_data_config(model=model)


def _save(model, model_config: dict, folder: Path) -> None:
    from safetensors.torch import save_file

    from csg_hub import save_timm

    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(folder)
    elif hasattr(model, "spec"):
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
        (folder / "model_config.json").write_text(json.dumps(model_config, indent=2) + "\n")
    else:
        save_timm(model, folder)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)

    import csg_hub
    from csg_hub.data import classification_loader, load_image_dataset
    from csg_hub.evaluation import evaluate
    from csg_hub.training import recalibrate_batchnorm
    from csg_hub.vae import load_latents

    artifact = load_latents(args.latents, args.revision)
    model = artifact.to_model()
    result: dict = {"latents": args.latents, "revision": args.revision, "model_config": artifact.model_config}
    if args.recalibrate_bn or args.eval_dataset:
        if not args.eval_dataset:
            raise SystemExit("--recalibrate-bn needs --eval-dataset (its --calibration-split provides the batches).")
        data_config = _data_config(model)
        if args.recalibrate_bn:
            calibration = load_image_dataset(args.eval_dataset, args.calibration_split)
            loader = classification_loader(calibration, data_config, args.batch_size, train=True)
            recalibrate_batchnorm(model, loader, args.recalibrate_bn)
        dataset = load_image_dataset(args.eval_dataset, args.eval_split, limit=args.eval_limit)
        result.update(evaluate(model, classification_loader(dataset, data_config, args.batch_size)))
    if args.output_dir:
        _save(model, artifact.model_config, Path(args.output_dir))
    if args.push_to_hub:
        if hasattr(model, "push_to_hub"):
            result["pushed"] = model.push_to_hub(args.push_to_hub).oid
        elif hasattr(model, "spec"):
            raise SystemExit("Small models are not pushed as model repos; use --output-dir.")
        else:
            result["pushed"] = csg_hub.push_timm(model, args.push_to_hub).oid
    print(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
