"""Backbones: a registry of builders, each taking the recipe's model section.

A builder returns a :class:`~hssl_cli.models.backbone.Backbone`; adding one is a
file plus a line in ``BACKBONES``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from hssl_cli.errors import HsslUserError
from hssl_cli.models.equivariant_resnet import build_equivariant_resnet18

if TYPE_CHECKING:
    from hssl_cli.groups import Group
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.recipe import ModelConfig


class BackboneBuilder(Protocol):
    def __call__(
        self, config: ModelConfig, group: Group, in_channels: int, initialize: bool
    ) -> Backbone: ...


def build_cnn(config: ModelConfig, group: Group, in_channels: int, initialize: bool) -> Backbone:
    """escnn CNN for a non-trivial group; its plain twin when unstructured or trivial."""
    from hssl_cli.models.equivariant_cnn import EquivariantCNN
    from hssl_cli.models.plain_cnn import PlainCNN

    shape = (group, in_channels, config.widths, config.convs_per_stage, config.kernel_size)
    if config.structure == "unstructured" or group.is_trivial:
        return PlainCNN(*shape, config.group_pool)
    return EquivariantCNN(*shape, config.group_pool, initialize=initialize)


def check_resnet18(config: ModelConfig) -> None:
    if config.structure == "equivariant" and config.group != "trivial":
        raise ValueError(
            f"backbone resnet18 is not equivariant to {config.group}; use backbone cnn for an "
            "escnn model, model.group=trivial, or model.structure=unstructured"
        )


def build_resnet18(
    config: ModelConfig, group: Group, in_channels: int, initialize: bool
) -> Backbone:
    from hssl_cli.models.resnet import CifarResNet18

    try:
        check_resnet18(config)
    except ValueError as err:
        raise HsslUserError(str(err)) from None
    return CifarResNet18(group, in_channels, config.group_pool)


BACKBONES: dict[str, BackboneBuilder] = {
    "cnn": build_cnn,
    "e2resnet18": build_equivariant_resnet18,
    "resnet18": build_resnet18,
}


# Optional recipe-time checks, so a model a backbone cannot build fails validation, not training.
BACKBONE_CHECKS: dict[str, Callable[[ModelConfig], None]] = {
    "resnet18": check_resnet18,
}


def build_backbone(config: ModelConfig, in_channels: int, initialize: bool = True) -> Backbone:
    from hssl_cli.groups import get_group

    backbone = BACKBONES[config.backbone](config, get_group(config.group), in_channels, initialize)
    backbone.model_config = config  # lets an objective build a twin (BYOL's target)
    return backbone
