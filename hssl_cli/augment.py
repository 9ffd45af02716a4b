"""Batched image augmentations that run on the training device.

Every sample draws its own parameters, but each operation is one tensor op for
the whole batch (no per-image Python loop), so augmentation keeps up with a
GPU. Parameters are sampled and applied separately: a method can log, re-apply
or predict them (EquiMod, METHODS §5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hssl_cli.groups import Group
from hssl_cli.recipe import AugmentConfig

_LUMA = (0.299, 0.587, 0.114)


class BaseAugmentation:
    """RandomResizedCrop + horizontal flip + colour jitter + grayscale (+ a random group element).

    Colour jitter applies brightness, contrast, saturation and hue in that fixed
    order (torchvision shuffles the order); hue is a rotation in YIQ space.
    """

    def __init__(self, config: AugmentConfig, group: Group | None = None) -> None:
        self.config = config
        self.group = group

    def sample(
        self, batch: int, device: torch.device, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        cfg = self.config

        def uniform(low: float, high: float, size: int = batch) -> torch.Tensor:
            return low + (high - low) * torch.rand(size, generator=generator, device=device)

        area = uniform(*cfg.crop_scale)
        log_ratio = uniform(math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]))
        ratio = log_ratio.exp()
        width = (area * ratio).sqrt().clamp(max=1.0)
        height = (area / ratio).sqrt().clamp(max=1.0)
        params = {
            "crop_w": width,
            "crop_h": height,
            "crop_x": uniform(0, 1) * (1 - width) + width / 2,
            "crop_y": uniform(0, 1) * (1 - height) + height / 2,
            "flip": (uniform(0, 1) < cfg.hflip).float(),
            "jitter_on": (uniform(0, 1) < cfg.jitter_p).float(),
            "brightness": uniform(max(0.0, 1 - cfg.jitter[0]), 1 + cfg.jitter[0]),
            "contrast": uniform(max(0.0, 1 - cfg.jitter[1]), 1 + cfg.jitter[1]),
            "saturation": uniform(max(0.0, 1 - cfg.jitter[2]), 1 + cfg.jitter[2]),
            "hue": uniform(-cfg.jitter[3], cfg.jitter[3]),
            "gray": (uniform(0, 1) < cfg.grayscale).float(),
        }
        if cfg.group_element and self.group is not None:
            params["group_element"] = torch.randint(
                self.group.order, (batch,), generator=generator, device=device
            )
        return params

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply sampled ``params`` to ``images`` in ``[0, 1]``, ``[B, C, H, W]``."""
        cfg = self.config
        out = images
        full_crop = cfg.crop_scale == (1.0, 1.0) and cfg.crop_ratio == (1.0, 1.0)
        if not (full_crop and cfg.hflip == 0):  # skipped, not resampled: the identity stays exact
            out = crop_and_flip(out, params)
        if cfg.jitter_p > 0 and images.shape[1] == 3:
            out = colour_jitter(out, params)
        elif cfg.jitter_p > 0:
            out = brightness_contrast(out, params)
        if cfg.grayscale > 0 and images.shape[1] == 3:
            out = torch.where(params["gray"].view(-1, 1, 1, 1) > 0, _gray(out).expand_as(out), out)
        if "group_element" in params and self.group is not None:
            out = self.group.act_on_images_per_sample(out, params["group_element"])
        return out

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.apply(images, self.sample(images.shape[0], images.device, generator))


def crop_and_flip(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Resized crop back to the input size, with an optional horizontal flip, in one grid_sample."""
    sign = 1 - 2 * params["flip"]
    theta = torch.zeros(images.shape[0], 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = params["crop_w"] * sign
    theta[:, 1, 1] = params["crop_h"]
    theta[:, 0, 2] = 2 * params["crop_x"] - 1
    theta[:, 1, 2] = 2 * params["crop_y"] - 1
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _gray(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (other + factor.view(-1, 1, 1, 1) * (images - other)).clamp(0, 1)


def brightness_contrast(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    on = params["jitter_on"].view(-1, 1, 1, 1) > 0
    out = _blend(images, torch.zeros_like(images), params["brightness"])
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = _blend(out, mean.expand_as(out), params["contrast"])
    return torch.where(on, out, images)


def colour_jitter(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    on = params["jitter_on"].view(-1, 1, 1, 1) > 0
    out = brightness_contrast(images, {**params, "jitter_on": torch.ones_like(params["flip"])})
    out = _blend(out, _gray(out).expand_as(out), params["saturation"])
    out = _rotate_hue(out, params["hue"])
    return torch.where(on, out, images)


_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _rotate_hue(images: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Shift hue by ``hue`` turns: rotate the chroma plane (I, Q) of YIQ."""
    to_yiq = _RGB_TO_YIQ.to(images)
    to_rgb = torch.linalg.inv(to_yiq)
    angle = hue * 2 * math.pi
    cos, sin = angle.cos(), angle.sin()
    rotation = torch.zeros(images.shape[0], 3, 3, device=images.device, dtype=images.dtype)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    matrix = to_rgb @ rotation @ to_yiq  # [B, 3, 3]
    return torch.einsum("bij,bjhw->bihw", matrix, images).clamp(0, 1)
