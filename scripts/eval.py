"""Evaluate a zoo (CSG) or plain timm model on an image-classification dataset from the Hub or disk.

Detects the image and label columns, applies the model's own preprocessing (channels, size,
normalization) and writes top-1/top-5, loss, throughput and the parameter report as JSON.
`--update-card` writes the top-1 into the model card's `model-index` (and pushes it for Hub repos).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="Hub repo id or local folder")
    p.add_argument("--dataset", required=True, help="Hub dataset id or local folder")
    p.add_argument("--split", default="test")
    p.add_argument("--revision", default=None, help="model revision (branch or commit sha)")
    p.add_argument("--dataset-revision", default=None)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--output", default=None, help="write the results JSON here (also printed)")
    p.add_argument("--update-card", action="store_true", help="record top-1 in the model card's model-index")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)

    import csg_hub
    from csg_hub.data import classification_loader, image_label_columns, load_image_dataset
    from csg_hub.evaluation import evaluate, load_classifier, update_card_accuracy

    model, data_config = load_classifier(args.model, args.revision)
    dataset = load_image_dataset(args.dataset, args.split, args.dataset_revision)
    if args.limit:
        dataset = dataset.select(range(min(args.limit, len(dataset))))
    _, label_col = image_label_columns(dataset)
    num_classes = (
        dataset.features[label_col].num_classes if hasattr(dataset.features[label_col], "num_classes") else None
    )
    model_classes = getattr(getattr(model, "config", None), "num_labels", None) or getattr(model, "num_classes", None)
    if num_classes is not None and model_classes is not None and num_classes != model_classes:
        raise ValueError(f"The dataset has {num_classes} classes but the model predicts {model_classes}.")
    if len(dataset) == 0:
        raise ValueError(f"Split {args.split!r} of {args.dataset} holds no rows: nothing to evaluate.")
    loader = classification_loader(
        dataset, data_config, args.batch_size, num_workers=args.num_workers, num_classes=model_classes
    )
    metrics = evaluate(model, loader)
    report = csg_hub.parameter_report(model)
    result = {
        "model": args.model,
        "revision": args.revision,
        "dataset": args.dataset,
        "split": args.split,
        **metrics,
        "dense_params": report["dense_params"],
        "stored_params": report["stored_params"],
        "ratio": report["ratio"],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    if args.update_card:
        update_card_accuracy(args.model, metrics["top1"], args.dataset, args.split, revision=args.revision)
    return result


if __name__ == "__main__":
    main()
