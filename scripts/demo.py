"""Train a CSG ResNet-18 on Fashion-MNIST, save and reload it with the Auto classes, push it to the Hub
with a model card, pull it back by repo id and evaluate it.

With neither HF_ENDPOINT nor HF_TOKEN set, the Hub is csg-hub's offline Hub-protocol test server,
started on 127.0.0.1 for the run; set them (and --repo-id to a namespace you own) to use the real Hub.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--architecture", default="resnet18", help="timm architecture")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--output-dir", default=None, help="where to save the model (default: a temp dir)")
    parser.add_argument("--repo-id", default="csg-hub-demo/resnet18-csg", help="Hub repo to push to")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def _local_hub_endpoint() -> str | None:
    """Point huggingface_hub at a local test server unless a Hub is configured (must run before it is imported)."""
    if os.environ.get("HF_ENDPOINT") or os.environ.get("HF_TOKEN"):
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        HF_ENDPOINT=f"http://127.0.0.1:{port}",
        HF_HUB_DISABLE_XET="1",
        HF_HOME=tempfile.mkdtemp(prefix="csg-demo-hf-home-"),
        HF_TOKEN="local-test-server",
    )
    return os.environ["HF_ENDPOINT"]


def main() -> None:
    args = _parse_args()
    local_endpoint = _local_hub_endpoint()

    import json
    import time
    from pathlib import Path

    import torch
    from transformers import AutoModelForImageClassification

    import csg_hub
    from csg_hub.data import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, fashion_mnist_loader
    from csg_hub.evaluation import evaluate
    from csg_hub.testing.hub_server import HubServer
    from csg_hub.training import TrainingArguments, fit

    server = None
    if local_endpoint:
        port = int(local_endpoint.rsplit(":", 1)[1])
        server = HubServer(root=Path(tempfile.mkdtemp(prefix="csg-demo-hub-")), port=port).start()
        print(f"No Hub configured: using the offline Hub-protocol test server at {server.url}")

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
    fit(model, train_loader, TrainingArguments(epochs=args.epochs, batch_size=args.batch_size, warmup_epochs=0.3))
    test_loader = fashion_mnist_loader("test", 256)
    metrics = evaluate(model, test_loader)

    # save_pretrained -> Auto class: identical logits
    output_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="csg-demo-"))
    model.save_pretrained(output_dir)
    reloaded = AutoModelForImageClassification.from_pretrained(output_dir)
    batch = next(iter(test_loader))[0][:32]
    with torch.no_grad():
        assert torch.equal(model(batch).logits, reloaded(batch).logits), "reloaded model differs"

    # push with a card carrying the measured accuracy, then pull by repo id and re-evaluate
    command = " ".join(["python", *sys.argv])
    result = csg_hub.accuracy_result(
        metrics["top1"], "zalando-datasets/fashion_mnist", dataset_name="Fashion-MNIST", num_samples=10000
    )
    commit = model.push_to_hub(args.repo_id, results=[result], training_command=command)
    pulled = AutoModelForImageClassification.from_pretrained(args.repo_id, revision=commit.oid)
    pulled_metrics = evaluate(pulled, test_loader)
    report = csg_hub.parameter_report(pulled)
    summary = {
        "architecture": args.architecture,
        "epochs": args.epochs,
        "test_top1": round(metrics["top1"], 2),
        "test_top1_after_pull": round(pulled_metrics["top1"], 2),
        "test_loss": round(metrics["loss"], 4),
        "dense_params": report["dense_params"],
        "stored_params": report["stored_params"],
        "ratio": round(report["ratio"], 2),
        "checkpoint_bytes": (output_dir / "model.safetensors").stat().st_size,
        "saved_to": str(output_dir),
        "hub": os.environ.get("HF_ENDPOINT", "https://huggingface.co"),
        "pushed": f"{args.repo_id}@{commit.oid}",
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    print(csg_hub.format_report(report))
    print(json.dumps(summary, indent=2))
    if server is not None:
        server.stop()


if __name__ == "__main__":
    main()
