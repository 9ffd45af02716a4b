"""``sesn_resnet18``: a ResNet-18 of scale-equivariant steerable layers (SESN), and its plain twin.

The topology is ``e2resnet18``'s (:class:`~hssl_cli.models.equivariant_resnet.ResNet18Body`:
CIFAR stem, four stages of two BasicBlocks, down-sampling by pooling rather than strides),
built from scale layers, in the spirit of SESN's STL-10 networks (Sosnovik, Szmaja and
Smeulders, ICLR 2020, arXiv:1910.11093): the stem is a lifting convolution
(:class:`~hssl_cli.models.scale_conv.LiftingScaleConv`), every other convolution a
scale-group convolution mixing ``model.scale_size`` neighbouring scales, shortcuts 1x1
convolutions applied alike at every scale, batch norm shared over scales. Every
down-sampling averages 2x2 blocks (a maximum over a block does not commute with
rescaling: hssl_cli.models.scale_norm). Every map is ``[B, C, S, H, W]``: ``C`` fields of
``S`` scales; the last stage's fields are the output, and fibers pool space with a maximum
(see :class:`~hssl_cli.models.backbone.Backbone`).

Widths (``model.resnet_width``, as for ``e2resnet18``), per stage, for ResNet-18's
64/128/256/512 channels ``c`` (``resnet18_stage_channels(model.width_multiplier)``):

- ``"params"`` (default): ``c * sqrt(9 / (scale_size * basis_size^2))`` fields. A field
  has ``S`` channels, but its weights are shared by the scales: a convolution between two
  fields holds ``scale_size * basis_size^2`` weights whatever ``S``, where a plain 3x3 kernel
  holds 9 per channel pair. At the defaults (``basis_size`` 3, ``scale_size`` 1) that is
  ``c`` fields: about ResNet-18's parameter count with ``S`` times its activations
  (SESN's STL-10 models, too, keep the parameter count of the network they replace).
- ``"activations"``: ``c / S`` fields, so every layer has as many channels as ResNet-18.

Either is rounded to at least one field per stage. With ``model.structure: unstructured``
the same body is built from plain torch layers with ``fields x S`` channels and full
``kernel_size`` kernels (:class:`~hssl_cli.models.equivariant_resnet.PlainResNet18Twin`):
the same activation shapes without the scale structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from hssl_cli.models import resnet18_stage_channels
from hssl_cli.models.backbone import Backbone
from hssl_cli.models.equivariant_resnet import PlainResNet18Twin, ResNet18Body
from hssl_cli.models.scale_basis import ScaleBasisSpec
from hssl_cli.models.scale_conv import LiftingScaleConv, ScaleGroupConv, ScalePointwiseConv
from hssl_cli.models.scale_norm import ScaleBatchNorm, SpatialAvgPool
from hssl_cli.models.sesn_cnn import basis_spec, normalize_keeping_zero

if TYPE_CHECKING:
    from hssl_cli.config import ModelConfig
    from hssl_cli.groups import AnyGroup
    from hssl_cli.scale_group import ScaleGroup

PLAIN_WEIGHTS_PER_PAIR = 9  # a 3x3 kernel: what ResNet-18 pays per channel pair


def sesn_fields_per_stage(
    scales: int,
    basis_size: int,
    scale_size: int,
    resnet_width: Literal["params", "activations"],
    width_multiplier: float,
) -> list[int]:
    """Scale fields of each stage for the chosen width rule (see the module docstring)."""
    if resnet_width == "activations":
        fields_per_channel = 1 / scales
    else:
        fields_per_channel = math.sqrt(PLAIN_WEIGHTS_PER_PAIR / (scale_size * basis_size**2))
    return [
        max(1, round(channels * fields_per_channel))
        for channels in resnet18_stage_channels(width_multiplier)
    ]


@dataclass(frozen=True)
class ScaleWidth:
    """A layer's width for :class:`ScaleLayers`: image channels, or fields on the scale axis."""

    count: int
    lifted: bool


class ScaleLayers:
    """The layers :class:`ResNet18Body` asks for, on scale fields ``[B, C, S, H, W]``."""

    def __init__(self, spec: ScaleBasisSpec, scale_size: int) -> None:
        self.spec, self.scale_size = spec, scale_size

    def image(self, channels: int) -> ScaleWidth:
        return ScaleWidth(channels, lifted=False)

    def regular(self, fields: int) -> ScaleWidth:
        return ScaleWidth(fields, lifted=True)

    def conv(self, source: ScaleWidth, target: ScaleWidth, kernel_size: int) -> nn.Module:
        """Lifting from the image, 1x1 at every scale, or a scale-group convolution."""
        if not source.lifted:
            return LiftingScaleConv(source.count, target.count, self.spec)
        if kernel_size == 1:
            return ScalePointwiseConv(source.count, target.count)
        return ScaleGroupConv(source.count, target.count, self.spec, self.scale_size)

    def batch_norm(self, width: ScaleWidth) -> nn.Module:
        return ScaleBatchNorm(width.count)

    def relu(self, width: ScaleWidth) -> nn.Module:
        return nn.ReLU(inplace=True)

    def max_pool(self, width: ScaleWidth) -> nn.Module:
        return SpatialAvgPool(2)  # averaging: see the module docstring

    def avg_pool(self, width: ScaleWidth) -> nn.Module:
        return SpatialAvgPool(2)


class ScaleEquivariantResNet18(Backbone):
    """ResNet-18 (CIFAR stem) on scale fields: approximately scale-equivariant."""

    spatial_pool = "max"

    def __init__(
        self,
        group: ScaleGroup,
        in_channels: int,
        fields_per_stage: list[int],
        spec: ScaleBasisSpec,
        scale_size: int,
        group_pool: Literal["max", "mean"],
    ) -> None:
        super().__init__(group, in_channels, fields_per_stage[-1], group_pool)
        layers = ScaleLayers(spec, scale_size)
        self.body = ResNet18Body(layers, in_channels, fields_per_stage, spec.kernel_size)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize_keeping_zero(self, images)

    def flat_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images).flatten(1, 2)

    def stage_outputs(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        traced = self.body.trace(self.normalize(images))
        return [(name, maps.flatten(1, 2)) for name, maps in traced]


def build_sesn_resnet18(
    config: ModelConfig, group: AnyGroup, in_channels: int, initialize: bool
) -> Backbone:
    """``sesn_resnet18``; its plain twin when unstructured.

    ``model.widths`` and ``model.convs_per_stage`` do not apply (ResNet-18 fixes them).
    ``initialize`` is ignored: drawing these weights is cheap (no escnn initialisation).
    """
    from hssl_cli.scale_group import ScaleGroup

    assert isinstance(group, ScaleGroup)  # recipe validation refuses other groups
    fields = sesn_fields_per_stage(
        group.scales,
        config.basis_size,
        config.scale_size,
        config.resnet_width,
        config.width_multiplier,
    )
    if config.structure == "unstructured":
        twin = PlainResNet18Twin(group, in_channels, fields, config.kernel_size, config.group_pool)
        twin.spatial_pool = "max"
        return twin
    return ScaleEquivariantResNet18(
        group,
        in_channels,
        fields,
        basis_spec(config, group.scales),
        config.scale_size,
        config.group_pool,
    )
