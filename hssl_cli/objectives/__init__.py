"""SSL objectives, one file each; adding one is a file, its options in
:mod:`hssl_cli.config` (``METHOD_CONFIGS``) and a line in ``OBJECTIVES``.

Importing this package is cheap: recipe validation reads the names of the pretext
tasks, and each implementation's module (torch, escnn) is imported when it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hssl_cli.registry import Lazy

if TYPE_CHECKING:
    from hssl_cli.config import MethodConfig
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.objectives.base import Objective
    from hssl_cli.objectives.pretext_tasks import PretextTask

OBJECTIVES: dict[str, Lazy] = {
    "byol": Lazy("hssl_cli.objectives.byol", "ByolObjective"),
    "eqlabels": Lazy("hssl_cli.objectives.eqlabels", "EqlabelsObjective"),
    "equimod": Lazy("hssl_cli.objectives.equimod", "EquimodObjective"),
    "essl": Lazy("hssl_cli.objectives.essl", "EsslObjective"),
    "hssl": Lazy("hssl_cli.objectives.hssl", "HsslObjective"),
    "invcontrast": Lazy("hssl_cli.objectives.invcontrast", "InvcontrastObjective"),
    "simclr": Lazy("hssl_cli.objectives.simclr", "SimclrObjective"),
    "vicreg": Lazy("hssl_cli.objectives.vicreg", "VicregObjective"),
}

# E-SSL's transformation-prediction tasks (hssl_cli/objectives/pretext_tasks.py).
PRETEXT_TASKS: dict[str, Lazy] = {
    name: Lazy("hssl_cli.objectives.pretext_tasks", name.upper())
    for name in ("rotation4", "hflip", "vflip", "invert", "grayscale", "jigsaw4", "blur4", "none")
}


def objective_class(name: str) -> type[Objective]:
    return OBJECTIVES[name].load()


def build_objective(config: MethodConfig, backbone: Backbone) -> Objective:
    return objective_class(config.name)(config, backbone)


def pretext_task(name: str) -> PretextTask:
    return PRETEXT_TASKS[name].load()
