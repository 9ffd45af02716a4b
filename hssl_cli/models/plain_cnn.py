"""The equivariant CNN's non-equivariant twin: same layers, same activation shapes.

With ``|G| > 1`` its channels are reshaped into a fake group axis, which is the
"structure removed" control of H-SSL (docs/methods.md, Groups); with the trivial
group it is simply an ordinary CNN.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from hssl_cli.groups import AnyGroup
from hssl_cli.models.backbone import Backbone, trace_stages


class PlainCNN(Backbone):
    def __init__(
        self,
        group: AnyGroup,
        in_channels: int,
        widths: list[int],
        convs_per_stage: int,
        kernel_size: int,
        group_pool: Literal["max", "mean"],
    ) -> None:
        super().__init__(group, in_channels, widths[-1], group_pool)
        layers: list[nn.Module] = []
        current = in_channels
        for stage, width in enumerate(widths):
            if stage > 0:
                layers.append(nn.MaxPool2d(2, 2))
            for _ in range(convs_per_stage):
                channels = width * group.order
                layers += [
                    nn.Conv2d(current, channels, kernel_size, padding=kernel_size // 2, bias=False),
                    nn.BatchNorm2d(channels),
                    nn.ReLU(inplace=True),
                ]
                current = channels
        self.layers = nn.Sequential(*layers)

    def flat_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)

    def stage_outputs(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        return trace_stages(self.layers.children(), self.normalize(images), lambda t: t)
