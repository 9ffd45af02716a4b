"""BYOL (Grill et al., NeurIPS 2020; METHODS §1, §5): bootstrap your own latent.

An online network (backbone, projector, predictor) predicts, for one view, the
projection a moving-average target network (:class:`~hssl_cli.objectives.ema.EmaTarget`)
gives the other view; no negatives. The loss is symmetrised: each view is predicted
from the other and the two terms are summed, as in the paper and solo-learn, so it
lies in ``[0, 8]``.

Example::

    prediction, target = torch.randn(256, 256), torch.randn(256, 256)
    loss = byol_loss(prediction, target)  # 2 - 2 cos, averaged over the batch
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, StrictInt

from hssl_cli.augment import BaseAugmentation
from hssl_cli.objectives.base import Objective, ReadoutConfig
from hssl_cli.objectives.ema import EmaTarget
from hssl_cli.objectives.fiber_views import FiberViews
from hssl_cli.objectives.heads import projection_head
from hssl_cli.recipe import AugmentConfig

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.structured import BackboneOutput


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_i (2 - 2 cos(p_i, z_i))`` for one ordered pair of views; ``target`` gets no gradient.

    Equal to the mean squared distance of the L2-normalised vectors (BYOL eq. 2).
    """
    cosine = F.cosine_similarity(prediction, target.detach(), dim=-1)
    return (2 - 2 * cosine).mean()


class ByolConfig(ReadoutConfig):
    """BYOL options: projector ``hidden -> out``, predictor ``out -> hidden -> out``.

    CPU-sized defaults (512-128 projector, 512 predictor); solo-learn's CIFAR setting
    (4096-256, predictor 4096, ``base_momentum`` 0.99) is in recipes/cifar_byol.yaml.
    """

    name: Literal["byol"] = "byol"
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    projector_hidden_dim: StrictInt = Field(default=512, ge=1)
    projector_out_dim: StrictInt = Field(default=128, ge=1)
    predictor_hidden_dim: StrictInt = Field(default=512, ge=1)
    base_momentum: float = Field(default=0.99, ge=0, le=1)


class ByolObjective(Objective):
    """Two base-augmented views; online prediction vs. moving-average target projection.

    Readouts as SimCLR's: ``fiber`` (default) reads the identity fiber bundle, so
    ``augment.group_element: true`` adds a random group element to each view;
    ``invariant`` reads the group-pooled features. The target (``self.target``) is
    updated in :meth:`after_step` and saved with the objective's state. Logs
    ``target_std``, the per-dimension spread of the L2-normalised target projections
    over the batch: 0 means collapse, about ``1/sqrt(projector_out_dim)`` is healthy.
    """

    Config = ByolConfig

    def __init__(self, config: ByolConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: ByolConfig = config
        self.views = FiberViews(backbone.group, config.fiber_bundle_size, config.bundle_pool)
        self.augment = BaseAugmentation(config.augment, backbone.group)
        self.projector = projection_head(
            backbone.num_fields, config.projector_hidden_dim, config.projector_out_dim
        )
        self.predictor = projection_head(
            config.projector_out_dim, config.predictor_hidden_dim, config.projector_out_dim
        )
        self.target = EmaTarget(backbone, self.projector, config.base_momentum)

    def read(self, output: BackboneOutput) -> torch.Tensor:
        return self.views.read_output(output, self.config.readout)

    def forward(
        self, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        views = (self.augment(images), self.augment(images))
        predictions = [self.predictor(self.projector(self.read(backbone(v)))) for v in views]
        targets = [self.target.project(self.read(self.target(v))) for v in views]
        loss = byol_loss(predictions[0], targets[1]) + byol_loss(predictions[1], targets[0])
        with torch.no_grad():
            target_std = F.normalize(targets[0], dim=1).std(dim=0).mean()
        return {"loss": loss, "target_std": target_std}

    def after_step(self, backbone: Backbone, step: int, total_steps: int) -> None:
        self.target.update(backbone, self.projector, step, total_steps)
