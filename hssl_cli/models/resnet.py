"""torchvision's ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool).

The standard A-SSL backbone of solo-learn, E-SSL and EquiMod (docs/methods.md, SimCLR).
It is equivariant to nothing but translations; with a non-trivial group its last
channels are reshaped into a fake group axis (the structure-removed control).

Built from torchvision's ``BasicBlock`` the way torchvision's ``ResNet`` builds it (same
module names, hence the same state-dict keys, and the same initialisation), with the stage
widths 64/128/256/512 scaled by ``model.width_multiplier``. Like solo-learn's, the CIFAR
stem keeps PyTorch's default initialisation (it replaces torchvision's stem after
torchvision has initialised the network).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from hssl_cli.errors import HsslUserError
from hssl_cli.groups import AnyGroup
from hssl_cli.models import check_resnet18, check_resnet18_channels, resnet18_stage_channels
from hssl_cli.models.backbone import Backbone

if TYPE_CHECKING:
    from hssl_cli.config import ModelConfig

BLOCKS_PER_STAGE = 2
STAGE_NAMES = ("stem", "layer1", "layer2", "layer3", "layer4")


def _stage(source: int, target: int, stride: int) -> nn.Sequential:
    """torchvision's ``ResNet._make_layer`` for a stage of BasicBlocks."""
    from torchvision.models.resnet import BasicBlock, conv1x1

    downsample = None
    if stride != 1 or source != target:
        downsample = nn.Sequential(conv1x1(source, target, stride), nn.BatchNorm2d(target))
    blocks = [BasicBlock(source, target, stride, downsample)]
    blocks += [BasicBlock(target, target) for _ in range(BLOCKS_PER_STAGE - 1)]
    return nn.Sequential(*blocks)


class CifarResNet18(Backbone):
    def __init__(
        self,
        group: AnyGroup,
        in_channels: int,
        group_pool: Literal["max", "mean"],
        width_multiplier: float = 1.0,
    ) -> None:
        try:
            check_resnet18_channels(width_multiplier, group.order)
        except ValueError as err:
            raise HsslUserError(str(err)) from None
        channels = resnet18_stage_channels(width_multiplier)
        super().__init__(group, in_channels, channels[-1] // group.order, group_pool)
        sources = [channels[0], *channels[:-1]]
        # torchvision's resnet18 also draws the weights of its ImageNet stem and 1000-way
        # head, which the CIFAR network does not keep; drawing them here too keeps every
        # seed's initialisation what it was when hssl built torchvision's model.
        imagenet_stem = nn.Conv2d(3, channels[0], kernel_size=7, stride=2, padding=3, bias=False)
        stages = [
            _stage(source, target, stride=1 if index == 0 else 2)
            for index, (source, target) in enumerate(zip(sources, channels, strict=True))
        ]
        nn.Linear(channels[-1], 1000)  # the ImageNet head's draws
        for module in nn.Sequential(imagenet_stem, *stages).modules():  # torchvision's init
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
        stem = nn.Conv2d(in_channels, channels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.body = nn.Sequential(stem, nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True), *stages)

    def flat_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def stage_outputs(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        outputs, current = [], self.normalize(images)
        modules = list(self.body.children())
        current = modules[2](modules[1](modules[0](current)))
        outputs.append((STAGE_NAMES[0], current))
        for name, layer in zip(STAGE_NAMES[1:], modules[3:], strict=True):
            current = layer(current)
            outputs.append((name, current))
        return outputs


def build_resnet18(
    config: ModelConfig, group: AnyGroup, in_channels: int, initialize: bool
) -> CifarResNet18:
    try:
        check_resnet18(config)
    except ValueError as err:
        raise HsslUserError(str(err)) from None
    return CifarResNet18(group, in_channels, config.group_pool, config.width_multiplier)
