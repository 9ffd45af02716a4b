"""Helpers the data set families share: layout conversion, resizing, fixed subsets and splits,
channel sums."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from hssl_cli.data.image_set import SUBSET_SEED, ImageSet
from hssl_cli.errors import HsslUserError

_RESIZE_CHUNK = 2048
# Channel sums count at most this many values of one channel at a time (see ChannelSums).
_COUNT_CHUNK_VALUES = 1 << 18


def check_split(split: str) -> None:
    """Reject a bad split early: it is a programming error, not a user's."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def image_set(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    num_classes: int,
    name: str,
    channels_last: bool = False,
) -> ImageSet:
    """Build the one in-memory layout the trainers expect: uint8 [N, C, H, W], int64 labels."""
    if isinstance(images, np.ndarray):
        # torch warns on (and must not alias) read-only buffers such as np.frombuffer's.
        tensor = torch.from_numpy(images if images.flags.writeable else images.copy())
    else:
        tensor = images
    if tensor.dtype != torch.uint8:
        raise ValueError(f"{name}: images must be uint8, got {tensor.dtype}")
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    elif channels_last:
        tensor = tensor.permute(0, 3, 1, 2)
    if isinstance(labels, np.ndarray):
        label_tensor = torch.from_numpy(labels.astype(np.int64)).reshape(-1)
    else:
        label_tensor = labels.to(torch.int64).reshape(-1)
    return ImageSet(
        images=tensor.contiguous(),
        labels=label_tensor.contiguous(),
        num_classes=num_classes,
        name=name,
    )


def resize_uint8(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with antialiasing to ``size`` (a side, or (height, width)), in chunks so a
    large set never becomes one float copy."""
    height, width = (size, size) if isinstance(size, int) else size
    if images.shape[-2:] == (height, width):
        return images.contiguous()
    out = torch.empty((*images.shape[:2], height, width), dtype=torch.uint8, device=images.device)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK]
        out[start : start + chunk.shape[0]] = _resize_chunk(chunk, (height, width))
    return out


def _resize_chunk(chunk: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Use torch's native uint8 kernel where there is one (CPU), else round a float resize."""
    kwargs = {"size": size, "mode": "bilinear", "antialias": True, "align_corners": False}
    if chunk.device.type == "cpu":
        try:
            return F.interpolate(chunk, **kwargs)
        except (RuntimeError, NotImplementedError):
            pass
    resized = F.interpolate(chunk.float(), **kwargs)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def fixed_subset(count: int, keep: int) -> torch.Tensor | None:
    """Sorted indices of a seed-0 random subset of ``keep`` of ``count`` images, or None when
    all are kept. Seed 0, not the recipe seed: runs that differ only in seed see the same images."""
    if keep >= count:
        return None
    generator = torch.Generator().manual_seed(SUBSET_SEED)
    return torch.randperm(count, generator=generator)[:keep].sort().values


class ChannelSums:
    """Exact per-channel sums of pixel values and their squares, so statistics do not depend on
    how the images are chunked (in memory or streamed in batches).

    Batches are counted into a 256-bin histogram per channel, a few images at a time, so every
    temporary stays small. (Converting whole chunks to int64 made tens of MiB allocations
    under glibc's largest dynamic mmap threshold; over a streamed pass they fragmented the
    heap until the process held about the decoded size of the split, which DataLoader
    workers forked afterwards then shared: ``benchmarks/streaming_memory.py``.)
    """

    def __init__(self) -> None:
        self.histogram: torch.Tensor | None = None  # int64 [C, 256]
        self.pixels = 0

    def add(self, images: torch.Tensor) -> None:
        """Add a uint8 [n, C, H, W] batch."""
        if images.shape[0] == 0:
            return
        per_image = images.shape[2] * images.shape[3]
        for part in images.split(max(1, _COUNT_CHUNK_VALUES // per_image)):
            counts = torch.stack(
                [
                    torch.bincount(part[:, channel].reshape(-1), minlength=256)
                    for channel in range(part.shape[1])
                ]
            ).cpu()
            self.histogram = counts if self.histogram is None else self.histogram + counts
        self.pixels += images.shape[0] * per_image

    @property
    def total(self) -> list[int]:
        """Per-channel sum of pixel values (exact Python integers)."""
        return self._moment(1)

    @property
    def squares(self) -> list[int]:
        """Per-channel sum of squared pixel values (exact Python integers)."""
        return self._moment(2)

    def _moment(self, power: int) -> list[int]:
        if self.histogram is None:
            return []
        return [
            sum(count * value**power for value, count in enumerate(row))
            for row in self.histogram.tolist()
        ]

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Mean and (population) std in [0, 1] units, from the exact sums."""
        count = self.pixels
        totals, squares = self.total, self.squares
        mean = [total / (255 * count) for total in totals]
        std = [
            math.sqrt((count * square - total * total) / (255 * 255 * count * count))
            for total, square in zip(totals, squares, strict=True)
        ]
        return mean, std


def stratified_split(labels: np.ndarray, test_fraction: float, split: str, what: str) -> np.ndarray:
    """Indices of one split, drawn per class with seed 0 so the test set never moves with the
    recipe seed and every class keeps its share."""
    check_split(split)
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(SUBSET_SEED)
    train_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(members) * test_fraction))
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    train = np.sort(np.concatenate(train_parts)) if train_parts else np.zeros(0, np.int64)
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.zeros(0, np.int64)
    if len(train) == 0 or len(test) == 0:
        raise HsslUserError(
            f"{what} has {len(labels)} images, too few to split with test_fraction={test_fraction}:"
            " add images or change data.test_fraction"
        )
    return train if split == "train" else test
