"""A scale-varied copy of a data set: ``data.rescale: [low, high]``.

SESN's MNIST-scale (Sosnovik et al., ICLR 2020) shrinks each digit about its centre by its
own random factor drawn uniformly in ``[low, high]`` and pads the canvas back with zeros,
so a model meets each class at many scales. ``load_images`` applies this after
``data.limit_*`` and ``data.image_size``, so a factor is relative to the final canvas. The
factors are drawn from a generator seeded by the split alone: the same recipe always gives
the same images, and the train and test splits draw different factors.
"""

from __future__ import annotations

import torch

from hssl_cli.data.image_set import ImageSet
from hssl_cli.rescale import rescale_images

# Images rescaled per batch (bounds the float copy: 1024 x 3 x 96 x 96 x 4 bytes ~ 113 MB).
CHUNK = 1024
# The generator seed of each split's factors.
SPLIT_SEEDS = {"train": 0, "test": 1}


def rescale_factors(count: int, low: float, high: float, split: str) -> torch.Tensor:
    """The ``count`` factors (float32, CPU) of ``split``: uniform in ``[low, high]``."""
    generator = torch.Generator().manual_seed(SPLIT_SEEDS[split])
    draws = torch.rand(count, generator=generator, dtype=torch.float64)
    return (low + (high - low) * draws).to(torch.float32)


def rescale_uint8(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Shrink uint8 ``[N, C, H, W]`` images by ``factors`` ``[N]``, chunk by chunk."""
    out = torch.empty_like(images)
    for start in range(0, images.shape[0], CHUNK):
        chunk = images[start : start + CHUNK].float()
        scaled = rescale_images(chunk, factors[start : start + CHUNK].to(images.device))
        out[start : start + CHUNK] = scaled.round().clamp(0, 255).to(torch.uint8)
    return out


def rescale_image_set(data: ImageSet, scale: tuple[float, float], split: str) -> ImageSet:
    """``data`` with each image shrunk by its split's factor, drawn in ``scale = (low, high)``."""
    low, high = scale
    data.images = rescale_uint8(data.images, rescale_factors(len(data), low, high, split))
    return data
