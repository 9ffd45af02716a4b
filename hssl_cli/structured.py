"""Named layouts of structured (group-indexed) features, and the few ways we read them.

Layouts, fixed once here:

- feature map: ``[B, C, |G|, H, W]`` -- ``C`` regular fields, each with a fiber
  axis of length ``|G|`` (escnn stores a field's ``|G|`` channels contiguously);
- fibers: ``[B, C, |G|]`` -- the feature map pooled over space;
- invariant features: ``[B, C]`` -- fibers pooled over the group axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

GROUP_AXIS = 2


@dataclass
class BackboneOutput:
    """What every backbone returns: the structured map and its pooled readings."""

    feature_map: torch.Tensor  # [B, C, |G|, H, W]
    fibers: torch.Tensor  # [B, C, |G|]
    invariant: torch.Tensor  # [B, C]

    @property
    def full(self) -> torch.Tensor:
        """Fibers flattened to ``[B, C*|G|]``: keeps orientation, unlike ``invariant``."""
        return self.fibers.flatten(1)


def fiber_tokens(fibers: torch.Tensor) -> torch.Tensor:
    """``[B, C, |G|]`` -> ``[B, |G|, C]``: each fiber a token, for maps shared across fibers."""
    return fibers.movedim(GROUP_AXIS, 1)


def split_fields(flat_map: torch.Tensor, group_order: int) -> torch.Tensor:
    """``[B, C*|G|, H, W]`` -> ``[B, C, |G|, H, W]``."""
    batch, channels, height, width = flat_map.shape
    return flat_map.view(batch, channels // group_order, group_order, height, width)


def pool_group(fibers: torch.Tensor, how: Literal["max", "mean"]) -> torch.Tensor:
    """Group pooling over ``GROUP_AXIS``: invariant to the permutations ``rho(g)``."""
    return fibers.amax(GROUP_AXIS) if how == "max" else fibers.mean(GROUP_AXIS)


def read_output(
    feature_map: torch.Tensor,
    group_pool: Literal["max", "mean"],
    spatial_pool: Literal["max", "mean"] = "mean",
) -> BackboneOutput:
    """Pool space (mean, or max where rescaling moves content off-centre: scale groups), then
    the group axis."""
    if spatial_pool == "max":
        fibers = feature_map.amax(dim=(3, 4))
    else:
        fibers = feature_map.mean(dim=(3, 4))
    return BackboneOutput(feature_map, fibers, pool_group(fibers, group_pool))


def fiber_bundle(
    fibers: torch.Tensor,
    elements: torch.Tensor,
    bundle_offsets: torch.Tensor,
    multiplication: torch.Tensor,
    pool: Literal["max", "mean"] = "mean",
) -> torch.Tensor:
    """``pool_{g0 in G0} fibers[b, :, g_b * g0]`` -> ``[B, C]`` (docs/methods.md, H-SSL).

    ``elements`` [B] holds each sample's ``g_b``; ``bundle_offsets`` the indices of ``G0``;
    ``multiplication`` the group's table as a ``[|G|, |G|]`` long tensor.
    """
    indices = multiplication[elements][:, bundle_offsets]  # [B, |G0|]
    gathered = fibers.gather(
        GROUP_AXIS, indices.unsqueeze(1).expand(-1, fibers.shape[1], -1)
    )  # [B, C, |G0|]
    return pool_group(gathered, pool)


_POSITION_ORDERS: dict[tuple[int, int], torch.Tensor] = {}


def scramble_positions(flat_map: torch.Tensor) -> torch.Tensor:
    """The map's spatial positions in a fixed random order (the same for every map of a size).

    The translation group's "structure removed" control: neighbouring positions no longer
    hold neighbouring image regions, so a small offset between two views' windows is no
    translation of the input. Spatial pooling, which ignores the order, is unchanged.
    """
    batch, channels, height, width = flat_map.shape
    key = (height, width)
    if key not in _POSITION_ORDERS:
        generator = torch.Generator().manual_seed(height * 100_003 + width)
        _POSITION_ORDERS[key] = torch.randperm(height * width, generator=generator)
    order = _POSITION_ORDERS[key].to(flat_map.device)
    return flat_map.flatten(2).index_select(2, order).view(batch, channels, height, width)
