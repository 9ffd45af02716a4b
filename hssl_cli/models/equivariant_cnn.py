"""An escnn CNN whose last layer is a stack of regular fields: the H-SSL backbone.

Stride-1 convolutions with odd kernels and 2x2 max pooling on even grids keep
90-degree rotations and reflections exact (docs/methods.md, Groups); strided convolutions on
even grids would not.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from hssl_cli.groups import Group
from hssl_cli.models.backbone import Backbone, trace_stages


class EquivariantCNN(Backbone):
    def __init__(
        self,
        group: Group,
        in_channels: int,
        widths: list[int],
        convs_per_stage: int,
        kernel_size: int,
        group_pool: Literal["max", "mean"],
        initialize: bool = True,
    ) -> None:
        super().__init__(group, in_channels, widths[-1], group_pool)
        from escnn import nn as enn

        gspace = group.gspace
        self.in_type = enn.FieldType(gspace, in_channels * [gspace.trivial_repr])
        layers: list[Any] = []
        current = self.in_type
        for stage, width in enumerate(widths):
            if stage > 0:
                layers.append(enn.PointwiseMaxPool2D(current, kernel_size=2, stride=2))
            for _ in range(convs_per_stage):
                out_type = enn.FieldType(gspace, width * [gspace.regular_repr])
                layers.append(
                    enn.R2Conv(
                        current,
                        out_type,
                        kernel_size,
                        padding=kernel_size // 2,
                        bias=False,
                        initialize=initialize,
                    )
                )
                layers.append(enn.InnerBatchNorm(out_type))
                layers.append(enn.ReLU(out_type, inplace=True))
                current = out_type
        self.layers = enn.SequentialModule(*layers)

    def flat_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        from escnn import nn as enn

        return self.layers(enn.GeometricTensor(images, self.in_type)).tensor

    def stage_outputs(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        from escnn import nn as enn

        start = enn.GeometricTensor(self.normalize(images), self.in_type)
        return trace_stages(self.layers.children(), start, lambda g: g.tensor)
