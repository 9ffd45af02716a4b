"""BYOL (Grill et al., NeurIPS 2020, arXiv:2006.07733): bootstrap your own latent.

An online network (backbone, projector, predictor) predicts, for one view, the
projection a moving-average target network (:class:`~hssl_cli.objectives.ema.EmaTarget`)
gives the other view; no negatives. The loss is symmetrised, as in the paper and
solo-learn (:func:`hssl_cli.losses.symmetric_byol_loss`), so it lies in ``[0, 8]``.

Readouts as SimCLR's. The target is updated in :meth:`ByolObjective.after_step` and
saved with the objective's state. Logs ``target_std``, the per-dimension spread of the
L2-normalised target projections over the batch: 0 means collapse, about
``1/sqrt(projector_out_dim)`` is healthy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from hssl_cli.config import ByolConfig
from hssl_cli.losses import symmetric_byol_loss
from hssl_cli.objectives.base import Features, ReadoutObjective, Scalars, Views
from hssl_cli.objectives.ema import EmaTarget
from hssl_cli.objectives.heads import projection_head, projector

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone


class ByolObjective(ReadoutObjective):
    Config = ByolConfig

    def __init__(self, config: ByolConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: ByolConfig = config
        self.projector = projector(config, backbone.num_fields)
        self.predictor = projection_head(
            config.projector_out_dim, config.predictor_hidden_dim, config.projector_out_dim
        )
        self.target = EmaTarget(backbone, self.projector, config.base_momentum)

    def view_loss(self, backbone: Backbone, views: Views, features: Features) -> Scalars:
        first, second = (self.predictor(self.projector(feature)) for feature in features)
        targets = [self.target.project(self.read(self.target(view))) for view in views]
        loss = symmetric_byol_loss((first, second), (targets[0], targets[1]))
        with torch.no_grad():
            target_std = F.normalize(targets[0], dim=1).std(dim=0).mean()
        return {"loss": loss, "target_std": target_std}

    def after_step(self, backbone: Backbone, step: int, total_steps: int) -> None:
        self.target.update(backbone, self.projector, step, total_steps)
