"""Convert a trained dense timm model to CSG form and train it against its parent by distillation.

The parent (Hub repo id or local folder: timm `hf-hub:` format, TimmWrapper repos, `push_timm` exports;
safetensors only) gives the architecture, labels and preprocessing. `--init least_squares` (default) or
`activations` fits codes and generators to the parent's filters (`CSGForImageClassification.from_dense`),
copying every tensor that is not generated; `random` starts from scratch (the ablation). BatchNorm
statistics are then re-estimated on training images, the student is evaluated (epoch 0), and trained with
knowledge distillation (`--student` starts instead from a CSG model of the parent's, e.g. an earlier
conversion to fine-tune; `--qat` trains against the stored values of `--storage-dtype`, e.g. int4, with a
straight-through estimator, so the saved model holds exactly the weights that were evaluated):
`--alpha` x soft targets at `--temperature` plus (1 - alpha) x the label loss
(`--no-labels` trains on images alone). Same training loop, recipe flags and launchers (torchrun,
accelerate launch) as `train.py`; writes `metrics.json` (with the parent's top-1 measured on the same
split, and epoch 0), a checkpoint per epoch (`--resume`), and a Hub-ready `model/` folder whose card names
the parent as `base_model` and reports recovery against it; `--push-to-hub` uploads it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

from csg_hub.cli_flags import add_csg_flags, add_training_flags, csg_options, training_arguments

STORAGE_FIELDS = ("storage_dtype", "storage_scope", "storage_group_size")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--parent", required=True, help="dense timm model: Hub repo id or local folder")
    p.add_argument("--parent-revision", default=None)
    p.add_argument("--init", default="least_squares", choices=("least_squares", "activations", "random"))
    p.add_argument("--student", default=None,
                   help="start from this CSG model (Hub id or folder) instead of fitting one (--init is then unused): "
                        "its CSG settings are kept, the --storage-* flags apply")  # fmt: skip
    p.add_argument("--qat", action="store_true",
                   help="quantization-aware training: every forward pass sees the weights as --storage-dtype stores "
                        "them (--storage-scope, --storage-group-size), the float weights take the updates")  # fmt: skip
    p.add_argument("--calibration-images", type=int, default=256, help="images for --init activations")
    p.add_argument("--bn-batches", type=int, default=20, help="training batches to re-estimate BatchNorm on")
    add_csg_flags(p.add_argument_group("CSG"))
    k = p.add_argument_group("distillation")
    k.add_argument("--temperature", type=float, default=4.0)
    k.add_argument("--alpha", type=float, default=0.9, help="weight of the distillation term (1: no label loss)")
    k.add_argument("--no-labels", action="store_true", help="ignore the labels: distill on images alone")
    d = p.add_argument_group("data")
    d.add_argument("--dataset", default="zalando-datasets/fashion_mnist", help="Hub dataset id or local folder")
    d.add_argument("--revision", default=None)
    d.add_argument("--train-split", default="train")
    d.add_argument("--eval-split", default="test")
    d.add_argument("--num-workers", type=int, default=0)
    d.add_argument("--train-limit", type=int, default=None)
    d.add_argument("--eval-limit", type=int, default=None)
    t = p.add_argument_group("optimisation (train.py's recipe)")
    add_training_flags(t)
    o = p.add_argument_group("output")
    o.add_argument("--output-dir", required=True)
    o.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint")
    o.add_argument("--push-to-hub", metavar="REPO_ID", default=None)
    args = p.parse_args(argv)
    if args.epochs < 0:
        p.error("--epochs must be >= 0 (0: convert, recalibrate and evaluate only)")
    if args.qat and args.storage_dtype == "float32":
        p.error("--qat trains against the stored weights: give a reduced --storage-dtype (e.g. int4)")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()

    import datasets
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    import csg_hub
    from csg_hub.atomic_write import atomic_folder, write_file_atomic
    from csg_hub.conversion import load_dense
    from csg_hub.data import classification_loader, image_label_columns, label_mapping, load_image_dataset
    from csg_hub.evaluation import evaluate
    from csg_hub.hub.model_repo import write_card
    from csg_hub.training import DistillationLoss, QuantizationAware, distributed_state, fit, recalibrate_batchnorm

    state = distributed_state()
    set_seed(args.seed)
    parent, parent_kwargs, parent_name = load_dense(args.parent, args.parent_revision)
    parent = parent.float().eval()
    options = csg_options(args)
    config = csg_hub.CSGConfig(**{**parent_kwargs, **options, "base_model": parent_name})
    data_config = config.data_config

    train_set = load_image_dataset(args.dataset, args.train_split, args.revision, limit=args.train_limit)
    eval_set = load_image_dataset(args.dataset, args.eval_split, args.revision, limit=args.eval_limit)
    columns = image_label_columns(eval_set)
    feature = eval_set.features[columns[1]]
    model_names = [config.id2label[i] for i in range(config.num_labels)]
    label_map = label_mapping(getattr(feature, "names", None), model_names)
    training = training_arguments(args)
    loaders = {"num_workers": args.num_workers, "num_classes": config.num_labels, "label_map": label_map}
    train_loader = classification_loader(train_set, data_config, training.batch_size, True, args.seed, **loaders)
    eval_loader = classification_loader(eval_set, data_config, 256, **loaders)
    output_dir = Path(args.output_dir)
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "scripts/convert.py", *(argv if argv is not None else sys.argv[1:])])

    parent_metrics = evaluate(parent, eval_loader, progress=False)
    report = None
    if args.student:
        model = load_student(args.student, config, options)
    elif args.init == "random":
        model = csg_hub.CSGForImageClassification(config)
    else:
        calibration = None
        if args.init == "activations":
            calibration_loader = classification_loader(train_set, data_config, args.calibration_images, **loaders)
            calibration = next(iter(calibration_loader))[0]
        model, report = csg_hub.CSGForImageClassification.from_dense(
            parent, fit=args.init, calibration=calibration, output_fit_report=True,
            **{**options, "base_model": parent_name},
        )  # fmt: skip
        model.config.id2label, model.config.label2id = config.id2label, config.label2id
    # the stored values are what every forward pass sees from here on (the context ends after training)
    quantized = contextlib.ExitStack()
    if args.qat:
        quantized.enter_context(QuantizationAware(model))
    if not args.student or args.qat:
        recalibrate_batchnorm(model, classification_loader(train_set, data_config, training.batch_size, True,
                                                           args.seed, **loaders), args.bn_batches)  # fmt: skip
    model.eval()
    epoch0 = evaluate(model, eval_loader, progress=False)
    start_name = f"student {args.student}" if args.student else f"{args.init} init"
    if state.is_main_process:
        print(f"parent top-1 {parent_metrics['top1']:.2f}%; after {start_name}"
              f"{f' ({args.storage_dtype}, BatchNorm recalibrated)' if args.qat else ''}: {epoch0['top1']:.2f}%",
              flush=True)  # fmt: skip

    def log(record: dict) -> None:
        tqdm.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))

    history = []
    if args.epochs > 0:
        if args.no_labels:
            # images only (the dataset may have no labels): a placeholder label column that the loss ignores
            image_col = columns[0]
            images = train_set.select_columns([image_col]).add_column("unused", [0] * len(train_set))
            images = images.cast_column("unused", datasets.ClassLabel(num_classes=config.num_labels))
            train_loader = classification_loader(images, data_config, training.batch_size, True, args.seed,
                                                 num_workers=args.num_workers, columns=(image_col, "unused"))  # fmt: skip
        loss = DistillationLoss(parent, args.temperature, 1.0 if args.no_labels else args.alpha)
        history = fit(model, train_loader, training, eval_loader, output_dir, resume=args.resume, on_epoch_end=log,
                      loss_fn=loss)  # fmt: skip
    quantized.close()  # the float weights are back; saving stores exactly the values evaluated last
    final = {k.removeprefix("eval_"): v for k, v in history[-1].items() if k.startswith("eval_")} if history else epoch0
    if not state.is_main_process:
        return {"final": final, "history": history}

    model_dir = output_dir / "model"
    # weights, card and processor land together: a kill leaves the previous model folder, whole
    with atomic_folder(model_dir) as tmp:
        model.save_pretrained(tmp)
        stored = csg_hub.CSGForImageClassification.from_pretrained(tmp)
        final_stored = evaluate(stored, eval_loader, progress=False) if args.storage_dtype != "float32" else None
        top1 = (final_stored or final)["top1"]
        write_card(
            stored,
            tmp,
            args.push_to_hub or f"csg-hub/{output_dir.name}",
            durable=False,  # the folder is fsynced and swapped in whole
            results=[
                csg_hub.accuracy_result(top1, args.dataset, split=args.eval_split, num_samples=final["num_samples"])
            ],
            training_command=command,
            dense_baseline=parent_metrics["top1"],
            base_model=parent_name,
            tags=[Path(args.dataset).name, "distillation"],
        )
    metrics = {
        "command": command,
        "parent": args.parent,
        "init": "student" if args.student else args.init,
        "student": args.student,
        "qat": {k: getattr(args, k) for k in STORAGE_FIELDS} if args.qat else None,
        "fit_report": report,
        "loss": "kd" if args.no_labels or args.alpha == 1 else ("labels" if args.alpha == 0 else "kd+labels"),
        "temperature": args.temperature,
        "alpha": 1.0 if args.no_labels else args.alpha,
        "dataset": args.dataset,
        "eval_split": args.eval_split,
        "config": model.config.to_dict(),
        "training": dataclasses.asdict(training),
        "processes": state.num_processes,
        "parent_top1": parent_metrics["top1"],
        "epoch0": epoch0,
        "final": final,
        "final_stored": final_stored,
        "report": {k: v for k, v in csg_hub.parameter_report(model).items() if k != "dense_layer_reasons"},
        "history": history,
        "wall_seconds": time.perf_counter() - start,
    }
    write_file_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2, default=str))
    print(
        f"final {args.eval_split} top-1 {top1:.2f}% (parent {parent_metrics['top1']:.2f}%; {output_dir / 'metrics.json'})"
    )
    if args.push_to_hub:
        # loaded from the folder it now lives in, whose card the push carries over
        commit = csg_hub.CSGForImageClassification.from_pretrained(model_dir).push_to_hub(args.push_to_hub)
        print(f"pushed {args.push_to_hub}@{commit.oid}")
    return metrics


def load_student(source: str, config, options: dict):
    """The CSG model at `source`, checked against the parent's config (`config`), with the --storage-* options;
    a CSG flag given with another value than the student's is refused rather than ignored."""
    import dataclasses as dc

    import csg_hub

    student = csg_hub.CSGForImageClassification.from_pretrained(source)
    ours = student.config
    for name in ("architecture", "in_chans", "image_size", "id2label"):
        if getattr(ours, name) != getattr(config, name):
            raise SystemExit(f"--student {source} has {name}={getattr(ours, name)!r}, the parent "
                             f"{getattr(config, name)!r}: it is not a CSG model of this parent.")  # fmt: skip
    defaults = {f.name: f.default for f in dc.fields(type(ours))}
    for name, value in options.items():
        if name in STORAGE_FIELDS:
            setattr(ours, name, value)
        elif value != defaults[name] and value != getattr(ours, name):
            raise SystemExit(f"--{name.replace('_', '-')} {value!r} contradicts --student {source} "
                             f"({name}={getattr(ours, name)!r}); the student's CSG settings are kept.")  # fmt: skip
    ours.validate()
    return student


if __name__ == "__main__":
    main()
