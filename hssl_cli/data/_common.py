"""Helpers the data set families share: layout conversion, resizing and a fixed split."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hssl_cli.data.image_set import SUBSET_SEED, ImageSet
from hssl_cli.errors import HsslUserError

_RESIZE_CHUNK = 2048


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


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize with antialiasing, in chunks so a large set never becomes one float copy."""
    if images.shape[-2:] == (size, size):
        return images.contiguous()
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8, device=images.device)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK]
        out[start : start + chunk.shape[0]] = _resize_chunk(chunk, size)
    return out


def _resize_chunk(chunk: torch.Tensor, size: int) -> torch.Tensor:
    """Use torch's native uint8 kernel where there is one (CPU), else round a float resize."""
    kwargs = {"size": (size, size), "mode": "bilinear", "antialias": True, "align_corners": False}
    if chunk.device.type == "cpu":
        try:
            return F.interpolate(chunk, **kwargs)
        except (RuntimeError, NotImplementedError):
            pass
    resized = F.interpolate(chunk.float(), **kwargs)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


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
