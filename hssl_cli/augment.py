"""Batched image augmentations that run on the training device.

Every sample draws its own parameters, but each operation is one tensor op for
the whole batch (no per-image Python loop), so augmentation keeps up with a
GPU. Parameters are sampled and applied separately: a method can log, re-apply
or predict them (EquiMod: Devillers & Lefort, ICLR 2023; docs/methods.md, EquiMod).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from hssl_cli.config import AugmentConfig, ExtendedAugmentConfig
from hssl_cli.distributed import global_count, local_rows
from hssl_cli.groups import Group

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale

# Colour-jitter operations by index, as torchvision's ColorJitter numbers them (its ``fn_idx``).
JITTER_OPERATIONS = ("brightness", "contrast", "saturation", "hue")


class BaseAugmentation:
    """RandomResizedCrop + horizontal flip + colour jitter + grayscale (+ a random group element).

    Colour jitter applies brightness, contrast, saturation and hue in that fixed
    order (torchvision shuffles the order); hue is a rotation in YIQ space. An
    :class:`ExtendedAugmentConfig` adds a random jitter order, then Gaussian blur and
    solarization after grayscale (BYOL's pipeline).
    """

    def __init__(self, config: AugmentConfig, group: Group | None = None) -> None:
        self.config = config
        self.group = group
        # The extra options of ExtendedAugmentConfig; their defaults add nothing.
        self.extended = (
            config if isinstance(config, ExtendedAugmentConfig) else ExtendedAugmentConfig()
        )

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
        extended = self.extended
        if extended.jitter_order == "random":
            steps = len(JITTER_OPERATIONS)
            draws = torch.rand(batch, steps, generator=generator, device=device)
            params["jitter_order"] = draws.argsort(1)
        if extended.blur > 0:
            params["blur_on"] = (uniform(0, 1) < extended.blur).float()
            params["blur_sigma"] = uniform(*extended.blur_sigma)
        if extended.solarize > 0:
            params["solarize_on"] = (uniform(0, 1) < extended.solarize).float()
        return params

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply sampled ``params`` to ``images`` in ``[0, 1]``, ``[B, C, H, W]``."""
        cfg = self.config
        out = images
        full_crop = cfg.crop_scale == (1.0, 1.0) and cfg.crop_ratio == (1.0, 1.0)
        if not (full_crop and cfg.hflip == 0):  # skipped, not resampled: the identity stays exact
            out = crop_and_flip(out, params)
        if cfg.jitter_p > 0 and "jitter_order" in params:
            out = colour_jitter_in_order(out, params)
        elif cfg.jitter_p > 0 and images.shape[1] == 3:
            out = colour_jitter(out, params)
        elif cfg.jitter_p > 0:
            out = brightness_contrast(out, params)
        if cfg.grayscale > 0 and images.shape[1] == 3:
            out = torch.where(params["gray"].view(-1, 1, 1, 1) > 0, luma(out).expand_as(out), out)
        if "blur_on" in params:
            kernel_size = self.extended.blur_kernel_size or default_blur_kernel_size(out)
            out = gaussian_blur(out, params["blur_sigma"], kernel_size, on=params["blur_on"])
        if "solarize_on" in params:
            out = solarize(out, params["solarize_on"], self.extended.solarize_threshold)
        if "group_element" in params and self.group is not None:
            out = self.group.act_on_images_per_sample(out, params["group_element"])
        return out

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Augment a batch; parameters are drawn for the global batch (see hssl_cli.distributed)."""
        params = self.sample(global_count(images.shape[0]), images.device, generator)
        return self.apply(images, {key: local_rows(value) for key, value in params.items()})


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


def luma(images: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` RGB -> ``[B, 1, H, W]`` grey."""
    weights = torch.tensor(LUMA_WEIGHTS, device=images.device, dtype=images.dtype)
    return (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)


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
    out = _blend(out, luma(out).expand_as(out), params["saturation"])
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


def colour_jitter_in_order(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Colour jitter in a per-sample order, as torchvision's ColorJitter shuffles it.

    ``params["jitter_order"]`` ``[B, 4]`` (long) names the operation of each step by its
    index in ``JITTER_OPERATIONS``; saturation and hue leave single-channel images alone.
    Each operation is the same computation as in :func:`colour_jitter`.
    """
    on = params["jitter_on"].view(-1, 1, 1, 1) > 0
    out = images
    for step in range(len(JITTER_OPERATIONS)):
        out = _jitter_step(out, params["jitter_order"][:, step], params)
    return torch.where(on, out, images)


def _jitter_step(
    images: torch.Tensor, operation: torch.Tensor, params: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Each sample applies its own ``operation`` [B]; one batched blend serves the first three.

    Brightness, contrast and saturation all blend towards an anchor (black, the mean,
    the gray image), so the batch needs one blend whatever the mix of operations.
    """
    colour = images.shape[1] == 3
    chosen = operation.view(-1, 1, 1, 1)
    factors = torch.stack([params["brightness"], params["contrast"], params["saturation"]], 1)
    factor = factors.gather(1, operation.clamp(max=2)[:, None]).squeeze(1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True).expand_as(images)
    anchor = torch.where(chosen == 1, mean, torch.zeros_like(images))
    if colour:
        anchor = torch.where(chosen == 2, luma(images).expand_as(images), anchor)
    blended = chosen <= (2 if colour else 1)
    out = torch.where(blended, _blend(images, anchor, factor), images)
    if colour:
        out = torch.where(chosen == 3, _rotate_hue(images, params["hue"]), out)
    return out


def default_blur_kernel_size(images: torch.Tensor) -> int:
    """About a tenth of the image side, odd: 23 px at 224 (BYOL), 3 px at 32 (EquiMod, CIFAR)."""
    return max(3, 2 * (min(images.shape[-2:]) // 20) + 1)


def gaussian_blur(
    images: torch.Tensor,
    sigma: torch.Tensor,
    kernel_size: int,
    on: torch.Tensor | None = None,
    padding: Literal["reflect", "replicate"] = "reflect",
) -> torch.Tensor:
    """Per-sample Gaussian blur of standard deviation ``sigma`` [B] (pixels) where ``on`` [B].

    Separable, one grouped convolution per axis for the whole batch. ``reflect`` padding
    is torchvision's GaussianBlur (BYOL's augmentation); ``replicate`` keeps an image's
    mean at its borders (E-SSL's blur levels).
    """
    batch, channels, height, width = images.shape
    if padding == "reflect":  # reflect padding needs pad < side
        kernel_size = min(kernel_size, 2 * min(height, width) - 1)
    offsets = torch.arange(kernel_size, device=images.device, dtype=images.dtype)
    offsets = offsets - kernel_size // 2
    spread = sigma.to(images.dtype).clamp_min(1e-3)  # samples left unblurred may carry sigma 0
    kernels = torch.exp(-0.5 * (offsets[None, :] / spread[:, None]) ** 2)
    kernels = (kernels / kernels.sum(1, keepdim=True)).repeat_interleave(channels, 0)
    pad = kernel_size // 2
    flat = F.pad(images.reshape(1, batch * channels, height, width), (pad,) * 4, mode=padding)
    flat = F.conv2d(flat, kernels.view(-1, 1, 1, kernel_size), groups=batch * channels)
    flat = F.conv2d(flat, kernels.view(-1, 1, kernel_size, 1), groups=batch * channels)
    blurred = flat.view_as(images).clamp(0, 1)
    if on is None:
        return blurred
    return torch.where(on.view(-1, 1, 1, 1) > 0, blurred, images)


def solarize(images: torch.Tensor, on: torch.Tensor, threshold: float) -> torch.Tensor:
    """Invert pixels at or above ``threshold`` where ``on`` [B] (torchvision's solarize)."""
    inverted = (on.view(-1, 1, 1, 1) > 0) & (images >= threshold)
    return torch.where(inverted, 1 - images, images)
