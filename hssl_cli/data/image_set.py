"""The one in-memory layout every data set family loads into."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Seed of every fixed choice of images (splits, limits, statistics subsets): not the recipe
# seed, so runs that differ only in seed see the same images.
SUBSET_SEED = 0


@dataclass
class ImageSet:
    """Images kept in memory as uint8, so batches are slices and augmentation runs batched on
    the device."""

    images: torch.Tensor  # uint8, [N, C, H, W], C = 1 or 3
    labels: torch.Tensor  # int64, [N]
    num_classes: int
    name: str  # e.g. "digits/train"

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``, as a :class:`~hssl_cli.data.batches.BatchSource` reports it."""
        channels, height, width = self.images.shape[1:]
        return (int(channels), int(height), int(width))
