"""Train a dense or CSG timm classifier on an image-classification dataset (Hub id or local folder).

Runs anywhere HF accelerate does: `python scripts/train.py ...` on one CPU or GPU, or data-parallel
with `torchrun --nproc_per_node N scripts/train.py ...` or `accelerate launch --multi_gpu --num_processes N
scripts/train.py ...` (GPUs: nccl; CPUs: gloo). Each process takes --batch-size images per step: the
effective batch is N x --batch-size, and --lr is used as given (scale it yourself, e.g. linearly, when
you change N). The main process evaluates, writes and pushes; the others wait. Writes `metrics.json`,
a checkpoint after every epoch (`--resume` continues), and the final model to OUTPUT_DIR/model (CSG:
config.json, model.safetensors and a model card filled from the measured numbers).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import time
from pathlib import Path

from csg_hub.cli_flags import add_csg_flags, add_training_flags, csg_options, training_arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="resnet18", help="timm architecture")
    p.add_argument("--csg", action="store_true", help="reparameterize with a Convolutional Slice Generator")
    add_csg_flags(p.add_argument_group("CSG (with --csg)"))
    d = p.add_argument_group("data")
    d.add_argument("--dataset", default="zalando-datasets/fashion_mnist", help="Hub dataset id or local folder")
    d.add_argument("--revision", default=None, help="dataset revision")
    d.add_argument("--train-split", default="train")
    d.add_argument("--eval-split", default="test")
    d.add_argument("--image-size", type=int, default=None, help="default: the dataset's own size")
    d.add_argument("--in-chans", type=int, default=None, help="default: 1 for greyscale datasets, else 3")
    d.add_argument("--num-workers", type=int, default=0)
    d.add_argument("--preload", action="store_true",
                   help="decode each split once into one tensor on the training device and augment there (keeps a "
                        "GPU fed; one process only)")  # fmt: skip
    d.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    d.add_argument("--eval-limit", type=int, default=None, help="use only the first N evaluation images")
    t = p.add_argument_group("optimisation (paper recipe: SGD 0.05, momentum 0.9, wd 5e-4)")
    add_training_flags(t)
    o = p.add_argument_group("output")
    o.add_argument("--output-dir", default=None, help="default: runs/<model>-<csg|dense>")
    o.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint")
    o.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="upload the final model with its card")
    o.add_argument("--dense-baseline", metavar="METRICS_JSON", default=None, help="dense run's metrics.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()

    import timm
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    import csg_hub
    from csg_hub.atomic_write import atomic_folder, write_file_atomic
    from csg_hub.data import (
        PreloadedLoader,
        classification_loader,
        image_label_columns,
        load_image_dataset,
        pixel_statistics,
    )
    from csg_hub.evaluation import evaluate
    from csg_hub.hub.model_repo import write_card
    from csg_hub.training import distributed_state, fit

    # read before training, so that a wrong path fails now rather than after the run
    dense_baseline = None
    if args.dense_baseline:
        try:
            dense_baseline = json.loads(Path(args.dense_baseline).read_text())["final"]["top1"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SystemExit(f"--dense-baseline {args.dense_baseline}: not a finished run's metrics.json ({err!r}).") from err
    state = distributed_state()
    print(f"process {state.process_index} of {state.num_processes} ({state.distributed_type.name}, "
          f"backend {state.backend})", flush=True)  # fmt: skip
    set_seed(args.seed)
    train_set = load_image_dataset(args.dataset, args.train_split, args.revision, limit=args.train_limit)
    eval_set = load_image_dataset(args.dataset, args.eval_split, args.revision, limit=args.eval_limit)
    image_col, label_col = image_label_columns(train_set)
    label_names = train_set.features[label_col].names
    first = train_set[0][image_col]
    in_chans = args.in_chans or (1 if first.mode in ("L", "1", "I", "I;16", "F") else 3)
    mean, std = pixel_statistics(train_set, in_chans)

    config = csg_hub.CSGConfig(
        architecture=args.model,
        in_chans=in_chans,
        image_size=args.image_size or first.size[1],
        image_mean=list(mean),
        image_std=list(std),
        id2label=dict(enumerate(label_names)),
        **csg_options(args),
    )
    if args.csg:
        model = csg_hub.CSGForImageClassification(config)
    else:
        model = timm.create_model(args.model, pretrained=False, in_chans=in_chans, num_classes=len(label_names))
    report = csg_hub.parameter_report(model)
    if state.is_main_process:
        print(csg_hub.format_report(report))

    training = training_arguments(args)
    data_config = config.data_config
    make_loader = classification_loader
    if args.preload:
        if state.num_processes > 1:
            raise SystemExit("--preload keeps a whole split on one device: launch one process, or drop --preload.")
        make_loader = functools.partial(PreloadedLoader, device=state.device)
    train_loader = make_loader(train_set, data_config, training.batch_size, True, args.seed, args.num_workers)
    eval_loader = make_loader(eval_set, data_config, 256, num_workers=args.num_workers)
    output_dir = Path(args.output_dir or f"runs/{args.model}-{'csg' if args.csg else 'dense'}")
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "scripts/train.py", *(argv if argv is not None else sys.argv[1:])])

    def log(record: dict) -> None:
        # tqdm.write keeps the record on a line of its own between progress-bar refreshes
        tqdm.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))

    history = fit(model, train_loader, training, eval_loader, output_dir, resume=args.resume, on_epoch_end=log)
    final = {k.removeprefix("eval_"): v for k, v in history[-1].items() if k.startswith("eval_")}
    if not state.is_main_process:
        return {"final": final, "history": history}

    model_dir = output_dir / "model"
    final_stored = None
    if args.csg:
        # weights, card and processor land together: a kill leaves the previous model folder, whole
        with atomic_folder(model_dir) as tmp:
            model.save_pretrained(tmp)
            if args.storage_dtype != "float32":
                # the card describes the stored (rounded) weights: measure them, not the float32 ones trained
                final_stored = evaluate(csg_hub.CSGForImageClassification.from_pretrained(tmp), eval_loader)
            results = [csg_hub.accuracy_result((final_stored or final)["top1"], args.dataset, split=args.eval_split,
                                               num_samples=final["num_samples"])]  # fmt: skip
            write_card(model, tmp, args.push_to_hub or f"csg-hub/{output_dir.name}", results=results, durable=False,
                       training_command=command, dense_baseline=dense_baseline, tags=[Path(args.dataset).name])  # fmt: skip
    else:
        csg_hub.save_timm(model, model_dir, label_names=label_names, data_config=data_config)
    metrics = {
        "command": command,
        "model": args.model,
        "csg": args.csg,
        "dataset": args.dataset,
        "eval_split": args.eval_split,
        "config": config.to_dict() if args.csg else None,
        "training": dataclasses.asdict(training),
        "processes": state.num_processes,
        "effective_batch_size": training.batch_size * state.num_processes,
        "final": final,
        "final_stored": final_stored,
        "dense_baseline_top1": dense_baseline,
        "report": {k: v for k, v in report.items() if k != "dense_layer_reasons"},
        "checkpoint_bytes": sum(f.stat().st_size for f in model_dir.glob("*.safetensors")),
        "history": history,
        "wall_seconds": time.perf_counter() - start,
    }
    write_file_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2, default=str))
    print(f"final {args.eval_split} top-1 {final['top1']:.2f}% ({output_dir / 'metrics.json'})")

    if args.push_to_hub:
        if args.csg:
            commit = model.push_to_hub(args.push_to_hub, results=results, training_command=command,
                                       dense_baseline=dense_baseline)  # fmt: skip
        else:
            commit = csg_hub.push_timm(model, args.push_to_hub, label_names=label_names, data_config=data_config)
        print(f"pushed {args.push_to_hub}@{commit.oid}")
    return metrics


if __name__ == "__main__":
    main()
