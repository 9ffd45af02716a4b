"""Backbones: a registry of builders, each taking the recipe's model section.

A builder returns a :class:`~hssl_cli.models.backbone.Backbone`; adding one is a
file plus a line in ``BACKBONES``. Importing this package is cheap (recipe
validation reads the names): each builder's module is imported when it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from hssl_cli.registry import Lazy

if TYPE_CHECKING:
    from hssl_cli.config import ModelConfig
    from hssl_cli.groups import AnyGroup
    from hssl_cli.models.backbone import Backbone


class BackboneBuilder(Protocol):
    def __call__(
        self, config: ModelConfig, group: AnyGroup, in_channels: int, initialize: bool
    ) -> Backbone: ...


BACKBONES: dict[str, Lazy] = {
    "cnn": Lazy("hssl_cli.models.cnn", "build_cnn"),
    "e2resnet18": Lazy("hssl_cli.models.equivariant_resnet", "build_equivariant_resnet18"),
    "resnet18": Lazy("hssl_cli.models.resnet", "build_resnet18"),
    "sesn_cnn": Lazy("hssl_cli.models.sesn_cnn", "build_sesn_cnn"),
    "sesn_resnet18": Lazy("hssl_cli.models.sesn_resnet", "build_sesn_resnet18"),
}


RESNET18_STAGE_CHANNELS = (64, 128, 256, 512)


def resnet18_stage_channels(width_multiplier: float) -> list[int]:
    """ResNet-18's stage widths scaled by ``model.width_multiplier`` (rounded, at least 1)."""
    return [max(1, round(width_multiplier * channels)) for channels in RESNET18_STAGE_CHANNELS]


def check_resnet18_channels(width_multiplier: float, group_order: int) -> None:
    """The last stage's channels must split into ``|G|`` fibers (the unstructured control)."""
    channels = resnet18_stage_channels(width_multiplier)[-1]
    if channels % group_order:
        raise ValueError(
            f"resnet18's {channels} output channels do not split into |G|={group_order} "
            f"fibers; pick a group whose order divides {channels}, or change "
            "model.width_multiplier"
        )


def check_resnet18(config: ModelConfig) -> None:
    """torchvision's ResNet-18 is equivariant to no rotation or flip."""
    from hssl_cli.groups import get_group

    if config.structure == "equivariant" and config.group != "trivial":
        raise ValueError(
            f"backbone resnet18 is not equivariant to {config.group}; use backbone cnn for an "
            "escnn model, model.group=trivial, or model.structure=unstructured"
        )
    check_resnet18_channels(config.width_multiplier, get_group(config.group).order)


def _pooled_side(pools: int) -> Callable[[ModelConfig, int], int]:
    return lambda config, side: side >> pools


def _cnn_side(config: ModelConfig, side: int) -> int:
    return side >> (len(config.widths) - 1)  # a 2x2 max-pool before every stage but the first


def _strided_side(config: ModelConfig, side: int) -> int:
    for _ in RESNET18_STAGE_CHANNELS[1:]:  # a stride-2 3x3 convolution (padding 1) per stage
        side = (side - 1) // 2 + 1
    return side


# The side of the last feature map each backbone makes of a square image of a given side
# (0: the image is too small for its down-sampling), so validation can refuse a size
# before a layer fails on an empty map.
FEATURE_MAP_SIDES: dict[str, Callable[[ModelConfig, int], int]] = {
    "cnn": _cnn_side,
    "e2resnet18": _pooled_side(3),  # stages 2-4 each max-pool 2x2
    "resnet18": _strided_side,
    "sesn_cnn": _cnn_side,
    "sesn_resnet18": _pooled_side(3),  # e2resnet18's body: stages 2-4 each pool 2x2
}


def feature_map_side(config: ModelConfig, side: int) -> int:
    return FEATURE_MAP_SIDES[config.backbone](config, side)


def check_scale_backbone(config: ModelConfig) -> None:
    """SESN layers need a scale group, and their interaction range fits inside it."""
    from hssl_cli.groups import get_group
    from hssl_cli.scale_group import ScaleGroup

    group = get_group(config.group)
    if not isinstance(group, ScaleGroup):
        raise ValueError(
            f"backbone {config.backbone} is scale-equivariant and needs a scale group, not "
            f"{config.group}; use model.group=scale3 (or scale4, ...)"
        )
    if config.scale_size > group.scales:
        raise ValueError(
            f"model.scale_size={config.scale_size} exceeds the {group.scales} scales of "
            f"{config.group}; use 1..{group.scales}"
        )


def check_escnn_group(config: ModelConfig) -> None:
    """escnn knows rotations and reflections; a scale group needs the SESN backbones.

    The ``cnn``'s unstructured twin is plain torch and takes any group; ``e2resnet18``
    sizes even its twin with escnn, so it refuses scale groups outright.
    """
    from hssl_cli.scale_group import SCALE_NAME

    twin_is_plain = config.backbone == "cnn" and config.structure == "unstructured"
    if SCALE_NAME.match(config.group) and not twin_is_plain:
        raise ValueError(
            f"backbone {config.backbone} is built with escnn, which has no scale group; "
            "use model.backbone=sesn_cnn or sesn_resnet18 for scale equivariance"
        )


# Recipe-time checks, so a model a backbone cannot build fails validation, not training.
BACKBONE_CHECKS: dict[str, Callable[[ModelConfig], None]] = {
    "cnn": check_escnn_group,
    "e2resnet18": check_escnn_group,
    "resnet18": check_resnet18,
    "sesn_cnn": check_scale_backbone,
    "sesn_resnet18": check_scale_backbone,
}


def build_backbone(config: ModelConfig, in_channels: int, initialize: bool = True) -> Backbone:
    from hssl_cli.groups import model_group

    builder: BackboneBuilder = BACKBONES[config.backbone].load()
    backbone = builder(config, model_group(config), in_channels, initialize)
    if config.structure == "unstructured" and config.group == "trivial":
        backbone.scrambled_positions = True  # no group axis to unstructure: positions instead
    backbone.model_config = config  # lets an objective build a twin (BYOL's target)
    return backbone
