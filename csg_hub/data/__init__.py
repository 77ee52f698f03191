"""Data: Fashion-MNIST from its IDX files (`fashion_mnist`), any image-classification dataset as loaders
(`loaders`), and the transforms both use (`transforms`)."""

from .fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    fashion_mnist_dataset_dict,
    fashion_mnist_loader,
    load_fashion_mnist,
    normalize_images,
)
from .loaders import (
    PreloadedLoader,
    classification_loader,
    image_label_columns,
    label_mapping,
    load_image_dataset,
    pixel_statistics,
)
from .transforms import RandomCropFlip, crop_padding, image_transform, to_mode

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "PreloadedLoader",
    "RandomCropFlip",
    "classification_loader",
    "crop_padding",
    "fashion_mnist_dataset_dict",
    "fashion_mnist_loader",
    "image_label_columns",
    "image_transform",
    "label_mapping",
    "load_fashion_mnist",
    "load_image_dataset",
    "normalize_images",
    "pixel_statistics",
    "to_mode",
]
