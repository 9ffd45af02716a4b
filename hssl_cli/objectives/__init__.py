"""SSL objectives, one file each; adding one is a file plus a line in ``OBJECTIVES``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hssl_cli.objectives.base import Objective
from hssl_cli.objectives.byol import ByolObjective
from hssl_cli.objectives.eqlabels import EqlabelsObjective
from hssl_cli.objectives.equimod import EquimodObjective
from hssl_cli.objectives.essl import EsslObjective
from hssl_cli.objectives.hssl import HsslObjective
from hssl_cli.objectives.invcontrast import InvcontrastObjective
from hssl_cli.objectives.simclr import SimclrObjective
from hssl_cli.objectives.vicreg import VicregObjective

OBJECTIVES: dict[str, type[Objective]] = {
    "byol": ByolObjective,
    "eqlabels": EqlabelsObjective,
    "equimod": EquimodObjective,
    "essl": EsslObjective,
    "hssl": HsslObjective,
    "invcontrast": InvcontrastObjective,
    "simclr": SimclrObjective,
    "vicreg": VicregObjective,
}

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.recipe import MethodConfig


def build_objective(config: MethodConfig, backbone: Backbone) -> Objective:
    return OBJECTIVES[config.name](config, backbone)
