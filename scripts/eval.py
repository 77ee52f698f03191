"""Evaluate a zoo (CSG) or plain timm model on an image-classification dataset from the Hub or disk.

Detects the image and label columns (or takes --image-column / --label-column), matches the dataset's
classes to the model's by name (a reordered label set, e.g. an alphabetical `imagefolder`, is remapped;
another label set is an error listing both), applies the model's own preprocessing (channels, size,
normalization; 16-bit and palette images included) and writes top-1/top-5, loss, throughput and the
parameter report as JSON. `--update-card` writes the top-1 into the model card's `model-index` (and
pushes it for Hub repos); it refuses a partial evaluation (--limit) and a split other than the card's.
`--pipeline` also classifies the same images with transformers' `pipeline("image-classification")` (the
model's own image processor, as the Hub widget runs it) and reports its top-1 and how many images the two
paths classify differently.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of samples, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (omit --limit to evaluate the whole split), got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="Hub repo id or local folder")
    p.add_argument("--dataset", required=True, help="Hub dataset id or local folder")
    p.add_argument("--split", default="test")
    p.add_argument("--image-column", default=None, help="default: the dataset's Image column")
    p.add_argument("--label-column", default=None, help="default: the dataset's ClassLabel column")
    p.add_argument("--revision", default=None, help="model revision (branch or commit sha)")
    p.add_argument("--dataset-revision", default=None)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--limit", type=_positive_int, default=None, help="evaluate only the first N samples (N >= 1)")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--output", default=None, help="write the results JSON here (also printed)")
    p.add_argument("--update-card", action="store_true", help="record top-1 in the model card's model-index")
    p.add_argument("--pipeline", action="store_true", help="also evaluate through transformers' pipeline")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)

    import csg_hub
    from csg_hub.data import classification_loader, image_label_columns, label_mapping, load_image_dataset
    from csg_hub.evaluation import evaluate, pipeline_predictions
    from csg_hub.hub import card_result_splits, load_classifier, model_label_names, update_card_accuracy

    if args.update_card:
        if args.limit is not None:
            raise SystemExit("--update-card records the accuracy of a whole split: drop --limit.")
        recorded = card_result_splits(args.model)
        if recorded and args.split not in recorded:
            raise SystemExit(
                f"--update-card: the card records results on split(s) {sorted(recorded)}, not {args.split!r}."
            )
    model, data_config = load_classifier(args.model, args.revision)
    dataset = load_image_dataset(args.dataset, args.split, args.dataset_revision, limit=args.limit)
    columns = image_label_columns(dataset, args.image_column, args.label_column)
    feature = dataset.features[columns[1]]
    num_classes = getattr(feature, "num_classes", None)
    model_classes = getattr(getattr(model, "config", None), "num_labels", None) or getattr(model, "num_classes", None)
    label_map = label_mapping(getattr(feature, "names", None), model_label_names(model, args.model, args.revision))
    if label_map is not None:
        print(f"The dataset orders its classes differently from the model: remapped {label_map}.")
    elif num_classes is not None and model_classes is not None and num_classes != model_classes:
        raise ValueError(f"The dataset has {num_classes} classes but the model predicts {model_classes}.")
    if len(dataset) == 0:
        raise ValueError(f"Split {args.split!r} of {args.dataset} holds no rows: nothing to evaluate.")
    loader = classification_loader(dataset, data_config, args.batch_size, num_workers=args.num_workers,
                                   num_classes=model_classes, columns=columns, label_map=label_map)  # fmt: skip
    predictions: list[int] = []
    metrics = evaluate(model, loader, predictions=predictions)
    report = csg_hub.parameter_report(model)
    result = {
        "model": args.model,
        "revision": args.revision,
        "dataset": args.dataset,
        "split": args.split,
        "label_remap": label_map,
        **metrics,
        "dense_params": report["dense_params"],
        "stored_params": report["stored_params"],
        "ratio": report["ratio"],
    }
    if args.pipeline:
        targets = [label if label_map is None else label_map[label] for label in dataset[columns[1]]]
        piped = pipeline_predictions(args.model, dataset[columns[0]], args.batch_size, args.revision)
        result["pipeline_top1"] = 100.0 * sum(p == t for p, t in zip(piped, targets)) / len(targets)
        result["pipeline_disagreements"] = sum(p != q for p, q in zip(piped, predictions))
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    if args.update_card:
        update_card_accuracy(args.model, metrics["top1"], args.dataset, args.split, revision=args.revision)
    return result


if __name__ == "__main__":
    main()
