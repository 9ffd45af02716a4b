"""scikit-learn's bundled 8x8 handwritten digits: the default data set, needing no download."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from hssl_cli.data._common import image_set, resize_uint8, stratified_split
from hssl_cli.data.image_set import ImageSet

if TYPE_CHECKING:
    from hssl_cli.config import DataConfig

DEFAULT_SIZE = 32
NUM_CLASSES = 10


def load_digits(config: DataConfig, split: str) -> ImageSet:
    """Upsample once from 8x8 to the final size (32 by default) so equivariant convolutions have
    room to act, and split with a fixed seed so the test set never follows the recipe seed."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    raw = np.asarray(bunch.images, dtype=np.float64)  # [N, 8, 8], values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    keep = stratified_split(labels, config.test_fraction, split, "digits")
    pixels = np.clip(np.rint(raw[keep] * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    images = torch.from_numpy(pixels).unsqueeze(1)
    images = resize_uint8(images, config.image_size or DEFAULT_SIZE)
    return image_set(images, labels[keep], NUM_CLASSES, f"digits/{split}")
