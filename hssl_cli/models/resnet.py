"""torchvision's ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool).

The standard A-SSL backbone of solo-learn, E-SSL and EquiMod (METHODS §1). It is
equivariant to nothing but translations; with a non-trivial group its 512
channels are reshaped into a fake group axis (the structure-removed control).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from hssl_cli.errors import HsslUserError
from hssl_cli.groups import Group
from hssl_cli.models.backbone import Backbone

RESNET18_CHANNELS = 512


class CifarResNet18(Backbone):
    def __init__(self, group: Group, in_channels: int, group_pool: Literal["max", "mean"]) -> None:
        if RESNET18_CHANNELS % group.order:
            raise HsslUserError(
                f"resnet18's {RESNET18_CHANNELS} channels do not split into |G|={group.order} "
                "fibers; pick a group whose order divides 512"
            )
        super().__init__(
            group, in_channels, RESNET18_CHANNELS // group.order, group_pool, group.is_trivial
        )
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.body = nn.Sequential(
            net.conv1, net.bn1, net.relu, net.layer1, net.layer2, net.layer3, net.layer4
        )

    def flat_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def stage_outputs(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        names = ["stem", "layer1", "layer2", "layer3", "layer4"]
        outputs, current = [], self.normalize(images)
        modules = list(self.body.children())
        current = modules[2](modules[1](modules[0](current)))
        outputs.append((names[0], current))
        for name, layer in zip(names[1:], modules[3:], strict=True):
            current = layer(current)
            outputs.append((name, current))
        return outputs
