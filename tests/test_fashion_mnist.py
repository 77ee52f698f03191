"""Integration tests on the real Fashion-MNIST files from Debian's dataset-fashion-mnist."""

import gzip

import pytest
import torch
from transformers import AutoModelForImageClassification

import csg_hub
from csg_hub.data import FASHION_MNIST_CLASSES, fashion_mnist_loader, load_fashion_mnist
from csg_hub.evaluation import evaluate
from csg_hub.training import TrainingArguments, fit

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_fashion_mnist_splits():
    images, labels = load_fashion_mnist("train")
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [6000] * 10
    assert images.float().mean().item() / 255 == pytest.approx(0.2860, abs=1e-3)
    test_images, test_labels = load_fashion_mnist("test")
    assert test_images.shape == (10000, 28, 28) and torch.bincount(test_labels).tolist() == [1000] * 10


def test_bad_fashion_mnist_input(tmp_path):
    with pytest.raises(ValueError, match="Unknown Fashion-MNIST split 'valid'"):
        load_fashion_mnist("valid")
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist("test", root=tmp_path)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + bytes(10))
    with pytest.raises(ValueError, match="truncated"):
        load_fashion_mnist("test", root=tmp_path)


def test_csg_resnet18_learns_fashion_mnist_and_reloads(tmp_path):
    torch.manual_seed(0)
    config = csg_hub.CSGConfig(
        architecture="resnet18", in_chans=1, image_size=28, id2label=dict(enumerate(FASHION_MNIST_CLASSES))
    )
    model = csg_hub.CSGForImageClassification(config)
    loader = fashion_mnist_loader("train", batch_size=64, train=True, limit=64 * 60)
    (record,) = fit(model, loader, TrainingArguments(epochs=1, warmup_epochs=0.2), progress=False)
    assert record["train_loss"] < 1.5  # from ~2.3 at chance

    test_loader = fashion_mnist_loader("test", batch_size=500, limit=2000)
    trained = evaluate(model, test_loader, progress=False)
    assert trained["top1"] > 60, trained  # chance is 10%

    model.save_pretrained(tmp_path)
    reloaded = evaluate(AutoModelForImageClassification.from_pretrained(tmp_path), test_loader, progress=False)
    assert reloaded["top1"] == trained["top1"] and reloaded["loss"] == pytest.approx(trained["loss"], abs=1e-6)
    dense = evaluate(model.to_timm(), test_loader, progress=False)
    assert dense["top1"] == pytest.approx(trained["top1"], abs=0.1)


def test_preloaded_loader_matches_the_per_image_loader():
    from csg_hub.data import PreloadedLoader, classification_loader, fashion_mnist_dataset_dict

    split = fashion_mnist_dataset_dict(limit=300)["train"]
    data_config = {"input_size": (1, 32, 32), "mean": (0.3,), "std": (0.35,), "interpolation": "bilinear"}
    per_image = [*classification_loader(split, data_config, 128)]
    preloaded = PreloadedLoader(split, data_config, 128)
    assert len(preloaded) == len(per_image) == 3  # evaluation keeps the last, partial batch
    for (a, la), (b, lb) in zip(per_image, preloaded):
        assert torch.equal(a, b) and torch.equal(la, lb)

    train = PreloadedLoader(split, data_config, 64, train=True, seed=1)
    assert len(train) == 300 // 64
    batches = [*train]
    assert all(x.shape == (64, 1, 32, 32) for x, _ in batches)
    # each augmented image is a flipped-or-not 32x32 window of the image padded by 4 with black (0 -> -0.3/0.35)
    x, labels = batches[0]
    padded = torch.nn.functional.pad(preloaded.pixels, (4, 4, 4, 4), value=-0.3 / 0.35)
    for image, label in zip(x[:8], labels[:8]):
        windows = [w for i in range(len(padded)) if preloaded.labels[i] == label for dy in range(9) for dx in range(9)
                   for w in (padded[i, :, dy : dy + 32, dx : dx + 32], padded[i, :, dy : dy + 32, dx : dx + 32].flip(-1))]  # fmt: skip
        assert any(torch.allclose(image, w, rtol=0, atol=1e-6) for w in windows)
    again = [*PreloadedLoader(split, data_config, 64, train=True, seed=1)]
    assert torch.equal(again[0][0], x) and not torch.equal(batches[1][0], x[: len(batches[1][0])])
