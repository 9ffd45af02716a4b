"""Rescaling images about their centre: the scale group's action on pixels.

A factor below 1 shrinks the content and pads the border with zeros (a digit drawn
smaller on the same canvas, as in SESN's MNIST-scale: Sosnovik et al., ICLR 2020); a
factor above 1 enlarges it and crops. Shrinking first low-passes the image with a
Gaussian whose width grows with the shrink (antialiasing), so fine detail is averaged
rather than aliased. One batched op serves a different factor per image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def antialias_sigma(factor: torch.Tensor) -> torch.Tensor:
    """Pixel-unit Gaussian width before shrinking by ``factor`` (0 when not shrinking).

    Shrinking by ``d = 1/factor`` turns a pixel-wide detail into ``1/d`` of a pixel; a
    Gaussian of width ``sqrt(d^2 - 1) / 2`` makes the result about as smooth as an image
    sampled at the new resolution (a pixel's own footprint is about ``1/2``).
    """
    shrink = (1.0 / factor).clamp_min(1.0)
    return (shrink.square() - 1.0).sqrt() / 2


def gaussian_blur_per_image(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of image ``b`` with width ``sigma[b]`` (zero padding)."""
    largest = float(sigma.max()) if sigma.numel() else 0.0
    if largest <= 0:
        return images
    radius = max(1, math.ceil(3 * largest))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    width = sigma.to(images.dtype).clamp_min(1e-6).view(-1, 1)
    kernels = torch.exp(-0.5 * (offsets.view(1, -1) / width) ** 2)
    # Each image's own reach (3 widths), whatever its batch-mates need: an image blurs the
    # same in any batch.
    own_radius = (3 * width).ceil().clamp_min(1)
    kernels = kernels * (offsets.view(1, -1).abs() <= own_radius)
    kernels = kernels / kernels.sum(1, keepdim=True)  # [B, 2r+1]; sigma ~ 0 gives a delta
    batch, channels, height, width_px = images.shape
    per_channel = kernels.repeat_interleave(channels, 0)  # [B*C, 2r+1]
    flat = images.reshape(1, batch * channels, height, width_px)
    flat = F.conv2d(
        flat,
        per_channel.view(-1, 1, 1, 2 * radius + 1),
        padding=(0, radius),
        groups=batch * channels,
    )
    flat = F.conv2d(
        flat,
        per_channel.view(-1, 1, 2 * radius + 1, 1),
        padding=(radius, 0),
        groups=batch * channels,
    )
    return flat.view(batch, channels, height, width_px)


def rescale_images(images: torch.Tensor, factors: torch.Tensor | float) -> torch.Tensor:
    """Rescale ``[B, C, H, W]`` images about the centre by ``factors`` (a float or ``[B]``).

    Bilinear resampling after antialiasing; the canvas keeps its size. Images whose factor
    is exactly 1 come back unchanged.
    """
    batch = images.shape[0]
    if not torch.is_tensor(factors):
        factors = torch.full((batch,), float(factors), device=images.device)
    factors = factors.to(device=images.device, dtype=torch.float32)
    if batch == 0 or bool((factors == 1).all()):
        return images
    source = images.float()
    blurred = gaussian_blur_per_image(source, antialias_sigma(factors))
    theta = torch.zeros(batch, 2, 3, device=images.device)
    theta[:, 0, 0] = 1.0 / factors  # output coordinate u reads the input at u / factor
    theta[:, 1, 1] = 1.0 / factors
    grid = F.affine_grid(theta, list(source.shape), align_corners=False)
    out = F.grid_sample(blurred, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    keep = (factors == 1).view(-1, 1, 1, 1)
    return torch.where(keep, source, out).to(images.dtype)
