"""One training step as one module, wrapped for several processes when there are several.

DDP synchronises gradients once per forward call of the module it wraps, while an
objective runs the backbone several times per step (two views, a target, a pretext
view); wrapping backbone and objective together makes a step one forward call.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from hssl_cli.distributed import World, synchronise_batch_norms

if TYPE_CHECKING:
    from hssl_cli.config import TrainConfig


class TrainStep(nn.Module):
    """``objective(backbone, images, labels)`` as a module with both as children."""

    def __init__(self, backbone: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.objective = objective

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.objective(self.backbone, images, labels)


def training_step(
    backbone: nn.Module,
    objective: nn.Module,
    config: TrainConfig,
    here: World,
    device: torch.device,
) -> nn.Module:
    """The module a step calls: batch norms synchronised if asked, DDP with several ranks.

    Batch norms are converted in place (the same parameters), so the optimiser, the
    checkpoint and a BYOL target keep referring to ``backbone`` and ``objective``.
    ``train.sync_batchnorm`` (default: on) matters only with several processes: one process
    already normalises over its whole batch.
    """
    if here.size > 1 and config.sync_batchnorm is not False:
        synchronise_batch_norms(backbone, device)
        synchronise_batch_norms(objective, device)
    step = TrainStep(backbone, objective)
    if here.size == 1:
        return step
    with warnings.catch_warnings():
        # torch 2.14 renames broadcast_buffers; the old name keeps older torch working.
        warnings.simplefilter("ignore", FutureWarning)
        return nn.parallel.DistributedDataParallel(
            step,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,  # synchronised batch norms keep running statistics equal
            # The same parameters take part in every step, some possibly in none (E-SSL's
            # head at weight 0, EquiMod's module at lambda 0): a static graph covers both.
            static_graph=True,
        )
