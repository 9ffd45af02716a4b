"""The ``cnn`` backbone: the escnn CNN, or its plain twin when unstructured or trivial."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hssl_cli.config import ModelConfig
    from hssl_cli.groups import AnyGroup
    from hssl_cli.models.backbone import Backbone


def build_cnn(config: ModelConfig, group: AnyGroup, in_channels: int, initialize: bool) -> Backbone:
    from hssl_cli.models.equivariant_cnn import EquivariantCNN
    from hssl_cli.models.plain_cnn import PlainCNN

    shape = (group, in_channels, config.widths, config.convs_per_stage, config.kernel_size)
    if config.structure == "unstructured" or group.is_trivial:
        return PlainCNN(*shape, config.group_pool)
    return EquivariantCNN(*shape, config.group_pool, initialize=initialize)
