"""Augmentations as explicit parameter vectors, for methods that predict them (EquiMod).

EquiMod feeds its predictor the parameters of each view's augmentation. A row
of the vector describes one image; its columns, in ``parameter_layout`` order:

====  =====================  ==========================================================
 0-3  ``crop_top``,          the crop window as fractions of the image's height and
      ``crop_left``,         width (EquiMod's ``i, j, h, w``, in pixels there)
      ``crop_height``,
      ``crop_width``
  4   ``flip``               1 when mirrored horizontally
  5   ``jitter_on``          1 when colour jitter was applied
 6-9  ``jitter_step_0..3``   the operation applied at each step, by its index in
                             ``JITTER_OPERATIONS`` (0 brightness, 1 contrast,
                             2 saturation, 3 hue; torchvision's ``fn_idx``). With
                             ``jitter_order: fixed`` it is always ``0, 1, 2, 3``
10-13 ``brightness``,        the jitter factors
      ``contrast``,
      ``saturation``, ``hue``
 14   ``gray``               1 when converted to grayscale
 15   ``blur_on``            \\ only when some pipeline blurs (BYOL)
 16   ``blur_sigma``         /  (pixels)
 17   ``solarize_on``        only when some pipeline solarizes (BYOL)
====  =====================  ==========================================================

That is 15 values for SimCLR's CIFAR pipeline, 18 for BYOL's, as in EquiMod.
As in EquiMod's code, a step that did nothing is written with neutral values:
without jitter the order is ``0, 1, 2, 3`` and the factors ``1, 1, 1, 0``; an
unblurred image has ``blur_sigma`` 0; on single-channel images saturation, hue
and grayscale have no effect and read ``1, 0, 0``.

An augmented image is rendered *from* its vector, so re-applying the vector
reproduces it bit for bit; flags and the order are read back by thresholding
and rounding, so a vector that went through (float64) standardisation and back
still does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hssl_cli.augment import JITTER_OPERATIONS, BaseAugmentation
from hssl_cli.config import AugmentConfig, ExtendedAugmentConfig
from hssl_cli.distributed import global_count, local_rows

_BASE_COLUMNS = (
    "crop_top",
    "crop_left",
    "crop_height",
    "crop_width",
    "flip",
    "jitter_on",
    *(f"jitter_step_{step}" for step in range(len(JITTER_OPERATIONS))),
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "gray",
)
_NEUTRAL_FACTORS = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}


def parameter_layout(configs: Sequence[AugmentConfig]) -> tuple[str, ...]:
    """Column names shared by every pipeline in ``configs`` (all views of one method)."""
    extended = [c for c in configs if isinstance(c, ExtendedAugmentConfig)]
    columns = list(_BASE_COLUMNS)
    if any(c.blur > 0 for c in extended):
        columns += ["blur_on", "blur_sigma"]
    if any(c.solarize > 0 for c in extended):
        columns.append("solarize_on")
    return tuple(columns)


def params_to_vector(
    params: dict[str, torch.Tensor], layout: tuple[str, ...], channels: int
) -> torch.Tensor:
    """Sampled ``params`` (as ``BaseAugmentation.sample`` gives them) -> ``[B, len(layout)]``."""
    jittered = params["jitter_on"] > 0
    colour = channels == 3
    steps = len(JITTER_OPERATIONS)
    identity_order = torch.arange(steps, device=jittered.device).expand(len(jittered), steps)
    order = params.get("jitter_order", identity_order)
    order = torch.where(jittered[:, None], order, identity_order).to(params["flip"].dtype)
    columns = {
        "crop_top": params["crop_y"] - params["crop_h"] / 2,
        "crop_left": params["crop_x"] - params["crop_w"] / 2,
        "crop_height": params["crop_h"],
        "crop_width": params["crop_w"],
        "flip": params["flip"],
        "jitter_on": params["jitter_on"],
        **{f"jitter_step_{step}": order[:, step] for step in range(steps)},
        "gray": params["gray"] if colour else torch.zeros_like(params["gray"]),
    }
    for name, neutral in _NEUTRAL_FACTORS.items():
        effective = jittered & (colour or name in ("brightness", "contrast"))
        columns[name] = torch.where(effective, params[name], torch.full_like(params[name], neutral))
    blur_on = params.get("blur_on", torch.zeros_like(params["flip"]))
    columns["blur_on"] = blur_on
    sigma = params.get("blur_sigma", torch.zeros_like(params["flip"]))
    columns["blur_sigma"] = torch.where(blur_on > 0, sigma, torch.zeros_like(sigma))
    columns["solarize_on"] = params.get("solarize_on", torch.zeros_like(params["flip"]))
    return torch.stack([columns[name] for name in layout], dim=1)


def vector_to_params(vector: torch.Tensor, layout: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`params_to_vector`: ``[B, len(layout)]`` -> ``apply``'s params."""
    columns = dict(zip(layout, vector.unbind(1), strict=True))
    flags = {
        name: (columns[name] > 0.5).to(vector.dtype)
        for name in ("flip", "jitter_on", "gray", "blur_on", "solarize_on")
        if name in columns
    }
    steps = len(JITTER_OPERATIONS)
    order = torch.stack([columns[f"jitter_step_{step}"] for step in range(steps)], dim=1)
    params = {
        "crop_w": columns["crop_width"],
        "crop_h": columns["crop_height"],
        "crop_x": columns["crop_left"] + columns["crop_width"] / 2,
        "crop_y": columns["crop_top"] + columns["crop_height"] / 2,
        "jitter_order": order.round().long(),
        **{name: columns[name] for name in _NEUTRAL_FACTORS},
        **flags,
    }
    if "blur_sigma" in columns:
        params["blur_sigma"] = columns["blur_sigma"]
    return params


class ParametrisedAugmentation:
    """A base augmentation that returns each image's parameter vector with it.

    ``__call__`` samples parameters, writes them as vectors in ``layout`` and renders
    the images from those vectors, so ``apply_vector(images, vector)`` reproduces them.
    """

    def __init__(self, config: AugmentConfig, layout: tuple[str, ...], channels: int) -> None:
        if config.group_element:
            raise ValueError(
                "the parameter vector does not encode group elements; set augment.group_element "
                "to false"
            )
        self.augmentation = BaseAugmentation(config)
        self.layout = layout
        self.channels = channels
        # Keys this pipeline's apply() reads; others are neutral columns of a shared layout.
        probe = self.augmentation.sample(1, torch.device("cpu"), torch.Generator().manual_seed(0))
        self.used_keys = frozenset(probe)

    def sample_vector(
        self, batch: int, device: torch.device, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Raw (unstandardised) parameter vectors ``[batch, len(layout)]``."""
        params = self.augmentation.sample(batch, device, generator)
        return params_to_vector(params, self.layout, self.channels)

    def apply_vector(self, images: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """Render ``images`` ``[B, C, H, W]`` in ``[0, 1]`` with raw parameter vectors."""
        params = vector_to_params(vector.to(images.dtype), self.layout)
        return self.augmentation.apply(
            images, {key: value for key, value in params.items() if key in self.used_keys}
        )

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        draws = self.sample_vector(global_count(images.shape[0]), images.device, generator)
        vector = local_rows(draws)  # drawn for the global batch (see hssl_cli.distributed)
        return self.apply_vector(images, vector), vector


STANDARDISATION_SAMPLES = 1 << 15


class ParameterStandardiser(nn.Module):
    """``(p - mean) / std`` per column, with fixed mean and std of the sampling distributions.

    EquiMod standardises its vectors with constants measured on CIFAR-10; ours are
    measured at construction from a fixed-seed sample of ``STANDARDISATION_SAMPLES``
    vectors per pipeline (pooled over the views' pipelines, which may differ, as
    BYOL's do), so they follow the recipe. A column that is constant under the
    recipe (a fixed jitter order, a flag whose probability is 0 or 1) gets std 1
    and standardises to 0. Statistics are float64 so that standardising and back
    returns the raw vector exactly.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.to(torch.float64), persistent=False)
        self.register_buffer("std", std.to(torch.float64), persistent=False)

    @classmethod
    def measure(
        cls,
        augmentations: Sequence[ParametrisedAugmentation],
        samples: int = STANDARDISATION_SAMPLES,
        seed: int = 0,
    ) -> ParameterStandardiser:
        generator = torch.Generator().manual_seed(seed)
        cpu = torch.device("cpu")
        vectors = torch.cat([a.sample_vector(samples, cpu, generator) for a in augmentations]).to(
            torch.float64
        )
        mean = vectors.mean(0)
        std = vectors.std(0, unbiased=False)
        constant = std < 1e-6 * mean.abs().clamp_min(1.0)
        return cls(torch.where(constant, vectors[0], mean), torch.where(constant, 1.0, std))

    def forward(self, vector: torch.Tensor) -> torch.Tensor:
        """Standardised vectors, in ``vector``'s dtype."""
        return ((vector.to(torch.float64) - self.mean) / self.std).to(vector.dtype)

    def destandardise(self, standardised: torch.Tensor) -> torch.Tensor:
        """Raw vectors back from standardised ones, in ``standardised``'s dtype.

        Float64 round-off leaves ~1e-16 where the raw value was 0 (an unblurred
        ``blur_sigma``, a crop at the border); it is snapped back to 0.
        """
        raw = standardised.to(torch.float64) * self.std + self.mean
        round_off = 1e-12 * (self.mean.abs() + self.std)
        return torch.where(raw.abs() < round_off, 0.0, raw).to(standardised.dtype)
