"""Standard benchmarks read through torchvision's own on-disk layouts under ``data.root``.

torchvision raises bare RuntimeErrors ("Dataset not found or corrupted") and network errors;
they are turned here into one-line HsslUserErrors that say what was looked for and where.
MNIST-style sets also accept ``data.root`` being a folder of the four IDX files.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hssl_cli.data._common import check_split, image_set
from hssl_cli.data.idx import is_idx_folder, load_idx_split
from hssl_cli.data.image_set import ImageSet
from hssl_cli.errors import HsslUserError, one_line

if TYPE_CHECKING:
    from hssl_cli.config import DataConfig

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_IDX_FILES = (
    "the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,"
    " t10k-labels-idx1-ubyte, each optionally .gz)"
)


@dataclass(frozen=True)
class _Family:
    """What a user must provide for one data set, phrased for error messages."""

    name: str
    num_classes: int
    expected: str  # what to put under data.root


MNIST = _Family("mnist", 10, f"{_IDX_FILES} or torchvision's MNIST/raw/ folder")
FASHION_MNIST = _Family(
    "fashion-mnist", 10, f"{_IDX_FILES} or torchvision's FashionMNIST/raw/ folder"
)
CIFAR10 = _Family("cifar10", 10, "cifar-10-batches-py")
CIFAR100 = _Family("cifar100", 100, "cifar-100-python")
STL10 = _Family(
    "stl10", 10, "stl10_binary (train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin)"
)


def load_mnist(config: DataConfig, split: str) -> ImageSet:
    """MNIST from an IDX folder if ``root`` is one, else torchvision's layout (or a download)."""
    return _load_mnist_like(config, split, MNIST, "MNIST")


def load_fashion_mnist(config: DataConfig, split: str) -> ImageSet:
    """Fashion-MNIST from an IDX folder (Debian's layout) if ``root`` is one, else torchvision's."""
    return _load_mnist_like(config, split, FASHION_MNIST, "FashionMNIST")


def load_cifar10(config: DataConfig, split: str) -> ImageSet:
    """CIFAR-10 from torchvision's extracted ``cifar-10-batches-py``."""
    from torchvision.datasets import CIFAR10 as TorchCIFAR10

    return _load_cifar(config, split, CIFAR10, TorchCIFAR10)


def load_cifar100(config: DataConfig, split: str) -> ImageSet:
    """CIFAR-100 (fine labels) from torchvision's extracted ``cifar-100-python``."""
    from torchvision.datasets import CIFAR100 as TorchCIFAR100

    return _load_cifar(config, split, CIFAR100, TorchCIFAR100)


def load_stl10(config: DataConfig, split: str) -> ImageSet:
    """STL-10's labelled splits (5000 train, 8000 test at 96x96); the unlabelled part is unused."""
    from torchvision.datasets import STL10 as TorchSTL10

    check_split(split)
    dataset = _open(config, STL10, lambda root, get: TorchSTL10(root, split=split, download=get))
    return image_set(
        np.asarray(dataset.data),
        np.asarray(dataset.labels),
        STL10.num_classes,
        f"{STL10.name}/{split}",
    )


def _load_mnist_like(config: DataConfig, split: str, family: _Family, class_name: str) -> ImageSet:
    """Try the IDX folder first: it needs no torchvision import and matches Debian's layout."""
    check_split(split)
    root = _require_root(config, family)
    if is_idx_folder(root):
        return load_idx_split(root, split, family.name, family.num_classes)
    import torchvision.datasets

    cls = getattr(torchvision.datasets, class_name)
    dataset = _open(
        config, family, lambda root, get: cls(root, train=split == "train", download=get)
    )
    return image_set(dataset.data, dataset.targets, family.num_classes, f"{family.name}/{split}")


def _load_cifar(config: DataConfig, split: str, family: _Family, cls: Any) -> ImageSet:
    check_split(split)
    dataset = _open(
        config, family, lambda root, get: cls(root, train=split == "train", download=get)
    )
    return image_set(
        np.asarray(dataset.data),
        np.asarray(dataset.targets),
        family.num_classes,
        f"{family.name}/{split}",
        channels_last=True,
    )


def _require_root(config: DataConfig, family: _Family) -> Path:
    """No default root: a silent guess would download gigabytes somewhere unexpected."""
    if config.root is None:
        example = ""
        if family is FASHION_MNIST and DEBIAN_FASHION_MNIST.is_dir():
            example = f" (e.g. {DEBIAN_FASHION_MNIST}, from Debian's dataset-fashion-mnist)"
        raise HsslUserError(
            f"{family.name} needs data.root: set data.root to the folder holding "
            f"{family.expected}{example}, or to where data.download=true should put it"
        )
    return Path(config.root).expanduser()


def _open(config: DataConfig, family: _Family, build: Callable[[str, bool], Any]) -> Any:
    """``build(root, download)`` a torchvision data set, its errors turned into user errors."""
    root = _require_root(config, family)
    download = config.download
    try:
        return build(str(root), download)
    except (RuntimeError, OSError) as err:
        reason = one_line(err)
        if download:
            raise HsslUserError(
                f"{family.name} is not under {root} and downloading it failed ({reason}): "
                f"put {family.expected} there, or retry data.download=true with internet access"
            ) from None
        if isinstance(err, OSError) or _looks_missing(reason):
            raise HsslUserError(
                f"{family.name} not found under {root}: put {family.expected} there, "
                "or set data.download=true (needs internet)"
            ) from None
        raise
    except (EOFError, ValueError, KeyError, AssertionError, pickle.UnpicklingError) as err:
        # torchvision asserts on bad IDX headers and unpickles CIFAR batches without checks.
        raise HsslUserError(
            f"{family.name} under {root} is unreadable ({one_line(err)}): replace "
            f"{family.expected} with an intact copy, or delete it and set data.download=true"
        ) from None


def _looks_missing(reason: str) -> bool:
    lowered = reason.lower()
    return any(word in lowered for word in ("not found", "corrupted", "integrity"))
