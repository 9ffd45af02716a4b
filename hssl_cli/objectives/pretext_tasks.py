"""Transformation-prediction pretext tasks for E-SSL (Wang et al., NeurIPS 2024).

See docs/methods.md, E-SSL.

A task has ``K`` transformations; label ``k`` selects one, and label ``0`` is always
the identity, so an untouched image is one of the classes. ``apply(images, labels)``
transforms a batch ``[B, C, H, W]`` in ``[0, 1]``, each image by its own label,
with one tensor op per distinct label (or a single gather), never a per-image loop.

The tasks Wang et al. compare, and what to expect from them:

- ``rotation4``: ``k * 90`` degrees counter-clockwise (``torch.rot90``, exact);
  global and class-relevant, the best single task.
- ``hflip`` / ``vflip``: mirror along the width / the height (2 classes).
- ``invert``: colour inversion ``1 - x`` (2 classes); readable from low-level
  intensity statistics, so it stays near the random-init baseline.
- ``grayscale``: luma grey (2 classes). On 1-channel images it is the identity,
  so both classes are the same image and the task cannot be learned: its
  accuracy sits at chance (50%). It stays runnable on purpose, as the honest
  "useless task" entry of the ranking.
- ``jigsaw4``: the 2x2 tiles permuted by one of the 24 permutations (needs even
  height and width).
- ``blur4``: Gaussian blur with ``BLUR_SIGMAS`` pixels (our design: 0, 1, 2, 3;
  replicate padding), level 0 unblurred.
- ``none``: one class, no transformation: a task with nothing to predict, so E-SSL
  alone with it is the random-init encoder baseline.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hssl_cli.augment import gaussian_blur, luma

JIGSAW_PERMUTATIONS: tuple[tuple[int, ...], ...] = tuple(itertools.permutations(range(4)))
"""Label ``k`` puts input tile ``JIGSAW_PERMUTATIONS[k][t]`` at tile position ``t``.

Tiles are numbered row-major: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.
Lexicographic order, so label 0 is the identity.
"""

BLUR_SIGMAS: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
"""Standard deviation in pixels of each ``blur4`` level (our design)."""


@dataclass(frozen=True)
class PretextTask:
    """``num_classes`` transformations and their batched application (label 0 = identity)."""

    name: str
    num_classes: int
    transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def apply(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Transform image ``b`` of ``[B, C, H, W]`` by transformation ``labels[b]``."""
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"{self.name}: need one label per image, got labels {tuple(labels.shape)} "
                f"for images {tuple(images.shape)}"
            )
        return self.transform(images, labels)


def apply_per_label(
    images: torch.Tensor,
    labels: torch.Tensor,
    transform: Callable[[torch.Tensor, int], torch.Tensor],
) -> torch.Tensor:
    """Run ``transform(sub_batch, label)`` once for each distinct label present."""
    out = images.clone()
    for label in labels.unique().tolist():
        if label == 0:
            continue
        mask = labels == label
        out[mask] = transform(images[mask], int(label))
    return out


def rotate_by_quarter_turns(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"rotation4 needs square images, got {tuple(images.shape[2:])}")
    return apply_per_label(images, labels, lambda x, k: torch.rot90(x, k, dims=(2, 3)))


def flip_width(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return apply_per_label(images, labels, lambda x, _: torch.flip(x, dims=(3,)))


def flip_height(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return apply_per_label(images, labels, lambda x, _: torch.flip(x, dims=(2,)))


def invert_colours(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return apply_per_label(images, labels, lambda x, _: 1 - x)


def luma_grey(images: torch.Tensor) -> torch.Tensor:
    """Grey version with the input's channel count; the identity on 1-channel images."""
    if images.shape[1] == 1:
        return images
    if images.shape[1] == 3:
        grey = luma(images)
    else:
        grey = images.mean(1, keepdim=True)
    return grey.expand_as(images)


def make_grey(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return apply_per_label(images, labels, lambda x, _: luma_grey(x))


def shuffle_tiles(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """2x2 jigsaw in one gather: output tile ``t`` is input tile ``permutation[t]``."""
    batch, channels, height, width = images.shape
    if height % 2 or width % 2:
        raise ValueError(f"jigsaw4 needs even height and width, got {height}x{width}")
    half_h, half_w = height // 2, width // 2
    tiles = (
        images.reshape(batch, channels, 2, half_h, 2, half_w)
        .permute(0, 2, 4, 1, 3, 5)
        .reshape(batch, 4, channels, half_h, half_w)
    )
    permutations = torch.tensor(JIGSAW_PERMUTATIONS, device=images.device)[labels]  # [B, 4]
    shuffled = tiles[torch.arange(batch, device=images.device)[:, None], permutations]
    return (
        shuffled.reshape(batch, 2, 2, channels, half_h, half_w)
        .permute(0, 3, 1, 4, 2, 5)
        .reshape(batch, channels, height, width)
    )


def blur_by(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``sigma`` pixels, radius ``ceil(3 sigma)``, replicate padding."""
    sigmas = torch.full((images.shape[0],), sigma, dtype=images.dtype, device=images.device)
    return gaussian_blur(images, sigmas, 2 * math.ceil(3 * sigma) + 1, padding="replicate")


def blur_levels(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return apply_per_label(images, labels, lambda x, k: blur_by(x, BLUR_SIGMAS[k]))


def keep(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return images


ROTATION4 = PretextTask("rotation4", 4, rotate_by_quarter_turns)
HFLIP = PretextTask("hflip", 2, flip_width)
VFLIP = PretextTask("vflip", 2, flip_height)
INVERT = PretextTask("invert", 2, invert_colours)
GRAYSCALE = PretextTask("grayscale", 2, make_grey)
JIGSAW4 = PretextTask("jigsaw4", len(JIGSAW_PERMUTATIONS), shuffle_tiles)
BLUR4 = PretextTask("blur4", len(BLUR_SIGMAS), blur_levels)
NONE = PretextTask("none", 1, keep)
