"""Train a CSG ResNet-18 on Fashion-MNIST, save it, reload it with the Auto classes, evaluate it."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForImageClassification

import csg_hub
from csg_hub.data import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, fashion_mnist_loader
from csg_hub.evaluation import evaluate
from csg_hub.training import train_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--architecture", default="resnet18", help="timm architecture")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--output-dir", default=None, help="where to save the model (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    torch.manual_seed(args.seed)
    config = csg_hub.CSGConfig(
        architecture=args.architecture,
        in_chans=1,
        image_size=28,
        image_mean=list(FASHION_MNIST_MEAN),
        image_std=list(FASHION_MNIST_STD),
        id2label=dict(enumerate(FASHION_MNIST_CLASSES)),
    )
    model = csg_hub.CSGForImageClassification(config)
    print(csg_hub.format_report(csg_hub.parameter_report(model)))

    train_loader = fashion_mnist_loader("train", args.batch_size, train=True, limit=args.train_limit, seed=args.seed)
    train_classifier(model, train_loader, epochs=args.epochs)

    output_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="csg-demo-"))
    model.save_pretrained(output_dir)
    reloaded = AutoModelForImageClassification.from_pretrained(output_dir)
    metrics = evaluate(reloaded, fashion_mnist_loader("test", 256))
    report = csg_hub.parameter_report(reloaded)
    summary = {
        "architecture": args.architecture,
        "epochs": args.epochs,
        "test_top1": round(metrics["top1"], 2),
        "test_loss": round(metrics["loss"], 4),
        "dense_params": report["dense_params"],
        "stored_params": report["stored_params"],
        "ratio": round(report["ratio"], 2),
        "checkpoint_bytes": (output_dir / "model.safetensors").stat().st_size,
        "saved_to": str(output_dir),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    print(csg_hub.format_report(report))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
