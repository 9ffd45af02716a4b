"""Image data sets as uint8 tensors: loaded whole into memory (``load_images``), or served
batch by batch, from memory or streamed from disk (``hssl_cli.data.batches.open_batches``).

Recipe validation imports this package to check ``data.name``, so importing it must stay
cheap: the registry maps names to thin wrappers, and each family's module (with torch,
torchvision, scikit-learn, PIL and numpy behind it) is imported on the first load.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from hssl_cli.data.image_set import ImageSet
from hssl_cli.errors import HsslUserError

if TYPE_CHECKING:
    from hssl_cli.config import DataConfig
    from hssl_cli.data.batches import BatchSource

SPLITS = ("train", "test")
STATS_MAX_IMAGES = 10_000


Loader = Callable[["DataConfig", str], ImageSet]


def _lazy(module: str, function: str) -> Loader:
    """Defer importing a family's module (and its heavy dependencies) until a load asks for it."""

    def load(config: DataConfig, split: str) -> ImageSet:
        return getattr(importlib.import_module(f"hssl_cli.data.{module}"), function)(config, split)

    load.__name__ = function
    load.__qualname__ = f"{module}.{function}"
    load.__doc__ = f"Lazily calls hssl_cli.data.{module}.{function}."
    return load


DATASETS: dict[str, Loader] = {
    "digits": _lazy("digits", "load_digits"),
    "mnist": _lazy("torchvision_sets", "load_mnist"),
    "fashion-mnist": _lazy("torchvision_sets", "load_fashion_mnist"),
    "cifar10": _lazy("torchvision_sets", "load_cifar10"),
    "cifar100": _lazy("torchvision_sets", "load_cifar100"),
    "stl10": _lazy("torchvision_sets", "load_stl10"),
    "imagefolder": _lazy("imagefolder", "load_imagefolder"),
    "npz": _lazy("npz", "load_npz"),
}

# Data sets that can be streamed from disk (data.in_memory); the others are always loaded.
STREAMABLE = frozenset({"imagefolder"})


# Image shape (channels, height, width) each data set yields before data.image_size, so a
# model can be built without the data (random-noise inputs). None: only the files know.
NATIVE_SHAPES: dict[str, tuple[int, int, int] | None] = {
    "digits": (1, 32, 32),
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "stl10": (3, 96, 96),
    "imagefolder": None,
    "npz": None,
}


def image_shape(config: DataConfig) -> tuple[int, int, int] | None:
    """The shape ``load_images`` will give, when it can be known without reading files."""
    native = NATIVE_SHAPES.get(config.name)
    if native is None:
        return None
    size = config.image_size
    return (native[0], size, size) if size is not None else native


def load_images(config: DataConfig, split: str) -> ImageSet:
    """Load one split, then apply the recipe's limit, size and rescale so every data set obeys
    them alike."""
    from hssl_cli.data._common import fixed_subset, resize_uint8

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    loader = DATASETS.get(config.name)
    if loader is None:
        known = ", ".join(sorted(DATASETS))
        raise HsslUserError(f"unknown data set {config.name!r}: set data.name to one of {known}")
    data = loader(config, split)

    keep = fixed_subset(len(data), split_limit(config, split) or len(data))
    if keep is not None:
        data = ImageSet(
            images=data.images[keep].contiguous(),
            labels=data.labels[keep].contiguous(),
            num_classes=data.num_classes,
            name=data.name,
        )
    if config.image_size is not None:
        data.images = resize_uint8(data.images, config.image_size)
    if config.rescale is not None:
        from hssl_cli.data.rescaled import rescale_image_set

        data = rescale_image_set(data, config.rescale, split)
    _check_image_set(data)
    return data


def split_limit(config: DataConfig, split: str) -> int | None:
    """The recipe's cap on the number of images of ``split`` (data.limit_train / limit_test)."""
    return config.limit_train if split == "train" else config.limit_test


def _check_image_set(data: ImageSet) -> None:
    """Catch a loader breaking the contract here rather than as a shape error deep in training."""
    import torch

    images, labels = data.images, data.labels
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise RuntimeError(
            f"{data.name}: images must be uint8 [N, 1|3, H, W], got {images.dtype} "
            f"{tuple(images.shape)}"
        )
    if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
        raise RuntimeError(
            f"{data.name}: labels must be int64 [N], got {labels.dtype} {tuple(labels.shape)}"
        )
    if not images.is_contiguous():
        data.images = images.contiguous()


def channel_stats(images: ImageSet | BatchSource) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units, for normalising inputs; a fixed subset of at most
    10000 images bounds the cost. Exact integer sums make an image set and a streamed batch
    source of the same images give identical values."""
    from hssl_cli.data._common import ChannelSums, fixed_subset

    if not isinstance(images, ImageSet):
        return images.channel_stats()
    data = images.images
    if data.shape[0] == 0:
        raise ValueError(f"{images.name}: cannot compute channel statistics of an empty image set")
    keep = fixed_subset(data.shape[0], STATS_MAX_IMAGES)
    sums = ChannelSums()
    for start in range(0, data.shape[0] if keep is None else len(keep), 1024):
        if keep is None:
            sums.add(data[start : start + 1024])
        else:
            sums.add(data[keep[start : start + 1024].to(data.device)])
    return sums.mean_std()
