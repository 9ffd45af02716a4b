"""An escnn ResNet-18 with the CIFAR stem on regular fields of C_N or D_N, and its plain twin.

Topology: torchvision's ResNet-18 (He et al., 2016) with the CIFAR stem of solo-learn,
E-SSL and EquiMod (docs/methods.md, SimCLR): a 3x3 stride-1 convolution, no max-pool, then
four stages of two BasicBlocks. Every feature is a stack of regular fields (R2Conv, InnerBatchNorm,
ReLU), so the last map views as ``[B, C, |G|, H, W]`` and H-SSL reads its fibers
(docs/methods.md, H-SSL).

Down-sampling keeps 90-degree rotations and reflections exact (docs/methods.md, Groups). A
stride-2 convolution keeps the even pixels of an even grid and a 90-degree rotation sends them
to odd ones, so instead each stage's first block convolves at stride 1 and max-pools 2x2
(``PointwiseMaxPool2D``: the group maps its windows onto windows), and its shortcut
average-pools 2x2 before the 1x1 projection (ResNet-D's shortcut: linear, like the strided
1x1 convolution it replaces). Exact while every pooled grid is even: image sizes divisible by
8 (32, 16, 8); at 28x28 (7 -> 3) we measured 0.16 relative error on the C4 fibers, so use
``data.image_size: 32``. escnn's ``PointwiseAvgPoolAntialiased2D`` samples at stride 2: exact
only on odd grids (33x33), 0.15 relative error at 32x32 (measured, C4).

Widths (``model.resnet_width``), per stage, for ResNet-18's 64/128/256/512 channels ``c``:

- ``"params"``: ``c * sqrt(k*k / b)`` regular fields, where ``b`` is the size of escnn's
  steerable basis between two regular fields (24 for C4, 48 for D4 at 3x3) and ``k*k = 9``
  is what a plain 3x3 kernel costs per channel pair; the 3x3 convolutions hold nearly all
  weights, so the count lands close to ResNet-18's 11.17M (C4: 39/78/157/314 fields, 11.27M;
  D4: 28/55/111/222, 11.27M) at about ``1.5|G|`` times its FLOPs. (e2cnn's ``c / sqrt(|G|)``
  assumes ``b = 9|G|``; escnn's band-limited basis is smaller, so that gives two thirds.)
- ``"activations"``: ``c / |G|`` regular fields, so every layer has as many channels (and
  about as many FLOPs) as the plain network, with about ``1.5|G|`` times fewer parameters
  (C4: 1.88M, D4: 0.94M).

``model.width_multiplier`` scales either (at least one field per stage). With the trivial
group or ``model.structure: unstructured`` the same topology is built from plain torch layers
with the same channel counts (:class:`PlainResNet18Twin`): an ordinary ResNet-18, or, for a
non-trivial group, the structure-removed control (docs/methods.md, Groups) with the
equivariant model's activation shapes.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from hssl_cli.groups import Group
from hssl_cli.models import RESNET18_STAGE_CHANNELS
from hssl_cli.models.backbone import Backbone

if TYPE_CHECKING:
    from hssl_cli.config import ModelConfig

PLAIN_KERNEL_SIZE = 3  # the kernel whose per-channel-pair cost "params" widths match
BLOCKS_PER_STAGE = 2
STAGE_NAMES = ("stem", "layer1", "layer2", "layer3", "layer4")


def weights_per_field_pair(group: Group, kernel_size: int) -> int:
    """Free parameters of one kernel between two regular fields (escnn's basis size)."""
    if group.is_trivial:
        return kernel_size * kernel_size
    from escnn import nn as enn

    regular = enn.FieldType(group.gspace, [group.gspace.regular_repr])
    probe = enn.R2Conv(
        regular, regular, kernel_size, padding=kernel_size // 2, bias=False, initialize=False
    )
    return probe.basisexpansion.dimension()


def regular_fields_per_stage(
    group: Group,
    kernel_size: int,
    resnet_width: Literal["params", "activations"],
    width_multiplier: float,
) -> list[int]:
    """Regular fields of each stage for the chosen width rule (see the module docstring)."""
    if resnet_width == "activations":
        fields_per_channel = 1 / group.order
    else:
        plain_cost = PLAIN_KERNEL_SIZE * PLAIN_KERNEL_SIZE
        fields_per_channel = math.sqrt(plain_cost / weights_per_field_pair(group, kernel_size))
    return [
        max(1, round(width_multiplier * channels * fields_per_channel))
        for channels in RESNET18_STAGE_CHANNELS
    ]


def generalized_he_std(single_pair_basis: Any) -> torch.Tensor:
    """Per-weight std of escnn's generalized He initialisation for a 1-field -> 1-field conv.

    escnn's ``generalized_he_init`` loops in Python over every weight (many minutes for
    a full-width ResNet-18). Between ``F_in`` and ``F_out`` fields of one representation each,
    the weights are ``F_out * F_in`` copies of the single-pair basis and escnn's std of each is
    this one divided by ``sqrt(F_in)``, which :meth:`EscnnLayers.conv` uses.
    """
    pairs = [(e["in_irrep"], e["out_irreps_position"]) for e in single_pair_basis.get_basis_info()]
    source_irreps: dict[int, set[str]] = defaultdict(set)
    for in_irrep, out_position in pairs:
        source_irreps[out_position].add(in_irrep)
    counts = Counter(pairs)
    return torch.tensor([(len(source_irreps[o]) * counts[i, o]) ** -0.5 for i, o in pairs])


class EscnnLayers:
    """Makes the network's layers on regular fields of ``group`` (widths are FieldTypes)."""

    def __init__(self, group: Group, initialize: bool) -> None:
        from escnn import nn as enn

        self.enn = enn
        self.gspace = group.gspace
        self.initialize = initialize
        self._single_pair_std: dict[tuple[str, str, int], torch.Tensor] = {}

    def image(self, channels: int) -> Any:
        return self.enn.FieldType(self.gspace, channels * [self.gspace.trivial_repr])

    def regular(self, fields: int) -> Any:
        return self.enn.FieldType(self.gspace, fields * [self.gspace.regular_repr])

    def conv(self, source: Any, target: Any, kernel_size: int) -> nn.Module:
        conv = self._r2conv(source, target, kernel_size)
        if self.initialize:
            std = self._single_pair_he_std(source, target, kernel_size)
            std = std.repeat(len(target) * len(source)) / len(source) ** 0.5
            with torch.no_grad():
                conv.weights.copy_(std * torch.randn_like(std))
        return conv

    def _single_pair_he_std(self, source: Any, target: Any, kernel_size: int) -> torch.Tensor:
        key = (source.representations[0].name, target.representations[0].name, kernel_size)
        if key not in self._single_pair_std:
            first_source = self.enn.FieldType(self.gspace, source.representations[:1])
            first_target = self.enn.FieldType(self.gspace, target.representations[:1])
            single = self._r2conv(first_source, first_target, kernel_size)
            self._single_pair_std[key] = generalized_he_std(single.basisexpansion)
        return self._single_pair_std[key]

    def _r2conv(self, source: Any, target: Any, kernel_size: int) -> Any:
        # recompute: escnn otherwise shares one sampled-basis buffer between equal layers
        # (process-wide); a state dict with aliased tensors cannot be saved as safetensors.
        return self.enn.R2Conv(
            source,
            target,
            kernel_size,
            padding=kernel_size // 2,
            bias=False,
            initialize=False,
            recompute=True,
        )

    def batch_norm(self, width: Any) -> nn.Module:
        return self.enn.InnerBatchNorm(width)

    def relu(self, width: Any) -> nn.Module:
        return self.enn.ReLU(width, inplace=True)

    def max_pool(self, width: Any) -> nn.Module:
        return self.enn.PointwiseMaxPool2D(width, kernel_size=2, stride=2)

    def avg_pool(self, width: Any) -> nn.Module:
        return self.enn.PointwiseAvgPool2D(width, kernel_size=2, stride=2)


class TorchLayers:
    """The same layers in plain torch, ``|G|`` channels per field (widths are channel counts)."""

    def __init__(self, group: Group) -> None:
        self.group_order = group.order

    def image(self, channels: int) -> int:
        return channels

    def regular(self, fields: int) -> int:
        return fields * self.group_order

    def conv(self, source: int, target: int, kernel_size: int) -> nn.Module:
        return nn.Conv2d(source, target, kernel_size, padding=kernel_size // 2, bias=False)

    def batch_norm(self, width: int) -> nn.Module:
        return nn.BatchNorm2d(width)

    def relu(self, width: int) -> nn.Module:
        return nn.ReLU(inplace=True)

    def max_pool(self, width: int) -> nn.Module:
        return nn.MaxPool2d(kernel_size=2, stride=2)

    def avg_pool(self, width: int) -> nn.Module:
        return nn.AvgPool2d(kernel_size=2, stride=2)


Layers = EscnnLayers | TorchLayers


class BasicBlock(nn.Module):
    """ResNet's BasicBlock; ``downsample`` halves the grid by pooling, never by stride."""

    def __init__(
        self, layers: Layers, source: Any, target: Any, kernel_size: int, downsample: bool
    ) -> None:
        super().__init__()
        self.conv1 = layers.conv(source, target, kernel_size)
        self.pool = layers.max_pool(target) if downsample else nn.Identity()
        self.bn1 = layers.batch_norm(target)
        self.relu1 = layers.relu(target)
        self.conv2 = layers.conv(target, target, kernel_size)
        self.bn2 = layers.batch_norm(target)
        self.shortcut: nn.Module = nn.Identity()
        if downsample or source != target:
            self.shortcut = nn.Sequential(
                layers.avg_pool(source) if downsample else nn.Identity(),
                layers.conv(source, target, 1),
                layers.batch_norm(target),
            )
        self.relu2 = layers.relu(target)

    def forward(self, features: Any) -> Any:
        out = self.relu1(self.bn1(self.pool(self.conv1(features))))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(features))


class ResNet18Body(nn.Module):
    """CIFAR stem and four stages of two BasicBlocks, built by ``layers``."""

    def __init__(
        self, layers: Layers, in_channels: int, fields_per_stage: list[int], kernel_size: int
    ) -> None:
        super().__init__()
        current = layers.image(in_channels)
        first = layers.regular(fields_per_stage[0])
        stages: dict[str, nn.Module] = {
            STAGE_NAMES[0]: nn.Sequential(
                layers.conv(current, first, kernel_size),
                layers.batch_norm(first),
                layers.relu(first),
            )
        }
        current = first
        for stage, fields in enumerate(fields_per_stage):
            target = layers.regular(fields)
            blocks = [BasicBlock(layers, current, target, kernel_size, downsample=stage > 0)]
            blocks += [
                BasicBlock(layers, target, target, kernel_size, downsample=False)
                for _ in range(BLOCKS_PER_STAGE - 1)
            ]
            stages[STAGE_NAMES[stage + 1]] = nn.Sequential(*blocks)
            current = target
        self.stages = nn.ModuleDict(stages)

    def trace(self, features: Any) -> Iterator[tuple[str, Any]]:
        """Each stage's output in turn (stem, layer1..layer4)."""
        for name, stage in self.stages.items():
            features = stage(features)
            yield name, features

    def forward(self, features: Any) -> Any:
        for stage in self.stages.values():
            features = stage(features)
        return features


class EquivariantResNet18(Backbone):
    """ResNet-18 (CIFAR stem) on regular fields, exact for 90-degree rotations and reflections.

    ``initialize=False`` skips escnn's weight initialisation when a checkpoint will
    overwrite the weights (docs/methods.md, Groups, for what is exact).
    """

    def __init__(
        self,
        group: Group,
        in_channels: int,
        fields_per_stage: list[int],
        kernel_size: int,
        group_pool: Literal["max", "mean"],
        initialize: bool = True,
    ) -> None:
        super().__init__(group, in_channels, fields_per_stage[-1], group_pool)
        layers = EscnnLayers(group, initialize)
        self.in_type = layers.image(in_channels)
        self.body = ResNet18Body(layers, in_channels, fields_per_stage, kernel_size)

    def _wrap(self, images: torch.Tensor) -> Any:
        from escnn import nn as enn

        return enn.GeometricTensor(images, self.in_type)

    def flat_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self._wrap(images)).tensor

    def stage_outputs(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        traced = self.body.trace(self._wrap(self.normalize(images)))
        return [(name, features.tensor) for name, features in traced]


class PlainResNet18Twin(Backbone):
    """The same network in plain torch layers, channels grouped into a fake group axis.

    With the trivial group an ordinary ResNet-18 (pooling instead of strides); otherwise the
    structure-removed control (docs/methods.md, Groups) with :class:`EquivariantResNet18`'s
    shapes.
    """

    def __init__(
        self,
        group: Group,
        in_channels: int,
        fields_per_stage: list[int],
        kernel_size: int,
        group_pool: Literal["max", "mean"],
    ) -> None:
        super().__init__(group, in_channels, fields_per_stage[-1], group_pool)
        self.body = ResNet18Body(TorchLayers(group), in_channels, fields_per_stage, kernel_size)

    def flat_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def stage_outputs(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        return list(self.body.trace(self.normalize(images)))


def build_equivariant_resnet18(
    config: ModelConfig, group: Group, in_channels: int, initialize: bool
) -> Backbone:
    """``e2resnet18``: escnn for a non-trivial group; its plain twin when unstructured or trivial.

    ``model.widths`` and ``model.convs_per_stage`` do not apply (ResNet-18 fixes them);
    ``model.kernel_size``, ``resnet_width`` and ``width_multiplier`` do.
    """
    fields = regular_fields_per_stage(
        group, config.kernel_size, config.resnet_width, config.width_multiplier
    )
    shape = (group, in_channels, fields, config.kernel_size, config.group_pool)
    if config.structure == "unstructured" or group.is_trivial:
        return PlainResNet18Twin(*shape)
    return EquivariantResNet18(*shape, initialize=initialize)
