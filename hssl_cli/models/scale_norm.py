"""Normalisation and pooling that respect the scale axis of ``[B, C, S, H, W]`` maps.

Batch norm shares its statistics and affine parameters over the scale axis, as over
space: per-scale statistics would re-weight the scales and break equivariance. Max
pooling over the scale axis gives scale-invariant features (in the interior of the
window: see hssl_cli.scale_group); the backbones do it with
:func:`hssl_cli.structured.pool_group`, as for any group axis. Spatial down-sampling
averages 2x2 blocks: measured on digits, a max pool roughly doubles the equivariance
error of the layers after it, as a maximum over a block does not commute with resampling
the map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ScaleBatchNorm(nn.BatchNorm3d):
    """Batch norm over ``[B, C, S, H, W]`` with one mean and variance per field ``C``."""


class SpatialAvgPool(nn.Module):
    """``size x size`` average pooling of every scale's map: ``[B, C, S, H, W]`` in and out."""

    def __init__(self, size: int = 2) -> None:
        super().__init__()
        self.size = size

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        window = (1, self.size, self.size)
        return F.avg_pool3d(maps, window, window)
