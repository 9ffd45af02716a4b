"""``sesn_cnn``: a scale-equivariant CNN (SESN layers) whose last layer is a stack of scale fields.

The scale group's counterpart of the escnn ``cnn``: a lifting convolution, then scale-group
convolutions, each with batch norm shared over scales and a ReLU, a 2x2 average pool between
stages; the map ``[B, C, S, H, W]`` keeps one fiber of ``S`` scales per field. Fibers pool
space with a maximum (see :class:`~hssl_cli.models.backbone.Backbone`). Unstructured, the
same recipe builds :class:`~hssl_cli.models.plain_cnn.PlainCNN` with ``widths x S`` plain
channels: the same activation shapes without the scale structure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from hssl_cli.models.backbone import Backbone, trace_stages
from hssl_cli.models.scale_basis import ScaleBasisSpec
from hssl_cli.models.scale_conv import LiftingScaleConv, ScaleGroupConv
from hssl_cli.models.scale_norm import ScaleBatchNorm, SpatialAvgPool

if TYPE_CHECKING:
    from hssl_cli.config import ModelConfig
    from hssl_cli.groups import AnyGroup
    from hssl_cli.scale_group import ScaleGroup


def basis_spec(config: ModelConfig, scales: int) -> ScaleBasisSpec:
    """The recipe's basis: ``model.kernel_size``, ``basis_size``, ``min_scale``, ``scale_step``."""
    return ScaleBasisSpec.geometric(
        config.kernel_size, config.basis_size, scales, config.min_scale, config.scale_step
    )


def normalize_keeping_zero(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """Divide by the channel std, without subtracting the mean.

    A shrunk image is padded with zeros, and convolutions pad their borders with zeros: a
    mean subtracted first would make the two paddings differ (background ``-mean/std``
    inside the canvas, ``0`` outside it), an error at every border that grows with depth.
    The batch norm after the first convolution centres the features instead.
    """
    return images / backbone.input_std.view(1, -1, 1, 1)


class ScaleEquivariantCNN(Backbone):
    spatial_pool = "max"

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize_keeping_zero(self, images)

    def __init__(
        self,
        group: ScaleGroup,
        in_channels: int,
        widths: list[int],
        convs_per_stage: int,
        spec: ScaleBasisSpec,
        scale_size: int,
        group_pool: Literal["max", "mean"],
    ) -> None:
        super().__init__(group, in_channels, widths[-1], group_pool)
        layers: list[nn.Module] = []
        current: int | None = None
        for stage, width in enumerate(widths):
            if stage > 0:
                layers.append(SpatialAvgPool(2))
            for _ in range(convs_per_stage):
                conv: nn.Module = (
                    LiftingScaleConv(in_channels, width, spec)
                    if current is None
                    else ScaleGroupConv(current, width, spec, scale_size)
                )
                layers += [conv, ScaleBatchNorm(width), nn.ReLU(inplace=True)]
                current = width
        self.layers = nn.Sequential(*layers)

    def flat_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images).flatten(1, 2)

    def stage_outputs(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        return trace_stages(
            self.layers.children(), self.normalize(images), lambda t: t.flatten(1, 2)
        )


def build_sesn_cnn(
    config: ModelConfig, group: AnyGroup, in_channels: int, initialize: bool
) -> Backbone:
    from hssl_cli.models.plain_cnn import PlainCNN
    from hssl_cli.scale_group import ScaleGroup

    assert isinstance(group, ScaleGroup)  # recipe validation refuses other groups
    if config.structure == "unstructured":
        twin = PlainCNN(
            group,
            in_channels,
            config.widths,
            config.convs_per_stage,
            config.kernel_size,
            config.group_pool,
        )
        twin.spatial_pool = "max"
        return twin
    spec = basis_spec(config, group.scales)
    return ScaleEquivariantCNN(
        group,
        in_channels,
        config.widths,
        config.convs_per_stage,
        spec,
        config.scale_size,
        config.group_pool,
    )
