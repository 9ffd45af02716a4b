"""SSL objectives, one file each; adding one is a file plus a line in ``OBJECTIVES``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hssl_cli.objectives.base import Objective
from hssl_cli.objectives.hssl import HsslObjective
from hssl_cli.objectives.simclr import SimclrObjective

OBJECTIVES: dict[str, type[Objective]] = {
    "hssl": HsslObjective,
    "simclr": SimclrObjective,
}

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.recipe import MethodConfig


def build_objective(config: MethodConfig, backbone: Backbone) -> Objective:
    return OBJECTIVES[config.name](config, backbone)
