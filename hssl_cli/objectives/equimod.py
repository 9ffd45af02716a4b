"""EquiMod (Devillers & Lefort, ICLR 2023, arXiv:2211.01244): an equivariance module.

Per image: the un-augmented ``x0`` and two views ``x1, x2`` with explicit
parameter vectors ``p1, p2`` (:mod:`hssl_cli.augment_params`, standardised).
The invariant branch is the base method (SimCLR or BYOL) on the two views, built
through the registry and given these views' features. The equivariant branch projects
``y_t = g_eq(f(x_t))`` for t = 0, 1, 2, encodes the parameters ``g_t(p_t)`` and
predicts ``y_hat_t = u([y0; g_t(p_t)])``: the representation of the original, displaced
by the augmentation, should land on the augmented view's. The loss is

    ``L = L_inv + lambda * NTXent_{tau_y}({y1, y2}, {y_hat1, y_hat2})``.

Logged: ``eqgain = mean cos(y_t, y_hat_t) - mean cos(y_t, y0)``; above 0 the module
predicts the displacement better than "no displacement" does.

Design choices (EquiMod's code where it is known, ours where marked):

- ``g_eq`` is EquiMod's: three linear layers, BN and ReLU between them, a final
  ``BN(affine=False)``; ``g_t`` is ``Linear(p, d) + BN``; ``u`` is
  ``Linear(2d, d) + BN(affine=False)``; ``d = equivariant_dim`` (128).
- Each of ``x0, x1, x2`` goes through the backbone in its own forward (ours; EquiMod
  concatenates the three), so the invariant branch sees exactly the batches, and
  batch-norm statistics, of SimCLR's or BYOL's two forwards here.
- ``equivariant_weight: 0`` skips the equivariant branch altogether (ours): loss,
  gradients and batch-norm statistics are then the base method's, and ``eqgain``
  is not logged (its heads would be untrained).
- Readout of the backbone as SimCLR's: the identity fiber bundle or the invariant
  (group-pooled) features; both branches read the same features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from hssl_cli.augment_params import (
    ParameterStandardiser,
    ParametrisedAugmentation,
    parameter_layout,
)
from hssl_cli.config import EquimodConfig
from hssl_cli.losses import nt_xent
from hssl_cli.objectives import objective_class
from hssl_cli.objectives.base import Objective, TwoViewObjective

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone


def equivariant_nt_xent(
    targets: torch.Tensor, predictions: torch.Tensor, temperature: float
) -> torch.Tensor:
    """EquiMod's NT-Xent between views ``targets`` [2B, d] and their predictions [2B, d].

    Over the ``4B`` rows ``[y1; y2; y_hat1; y_hat2]``, the one positive of ``y_t^i``
    is ``y_hat_t^i`` (and the reverse); every other row is a negative: other
    images' ``y`` and ``y_hat``, and also the same image's other view ``y_{t'}^i``
    and its prediction ``y_hat_{t'}^i``, as in EquiMod's code (``src/main.py``).
    """
    rows = torch.arange(len(targets), device=targets.device)
    return nt_xent(torch.cat([targets, predictions]), rows.repeat(2), temperature)


def equivariance_gain(
    targets: torch.Tensor, predictions: torch.Tensor, originals: torch.Tensor
) -> torch.Tensor:
    """``mean cos(y_t, y_hat_t) - mean cos(y_t, y0)`` over rows (EquiMod's ``eqgain``)."""
    predicted = F.cosine_similarity(targets, predictions, dim=1)
    unmoved = F.cosine_similarity(targets, originals, dim=1)
    return (predicted - unmoved).mean()


def equivariant_projector(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """EquiMod's ``g_eq``: Linear-BN-ReLU-Linear-BN-ReLU-Linear-BN(affine=False)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim, bias=False),
        nn.BatchNorm1d(out_dim, affine=False),
    )


class EquimodObjective(Objective):
    Config = EquimodConfig

    def __init__(self, config: EquimodConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: EquimodConfig = config
        pipelines = (config.augment, config.second_augment or config.augment)
        layout = parameter_layout(pipelines)
        self.augmentations = tuple(
            ParametrisedAugmentation(pipeline, layout, backbone.in_channels)
            for pipeline in pipelines
        )
        self.standardise = ParameterStandardiser.measure(self.augmentations)
        self.base: TwoViewObjective = objective_class(config.base)(config.base_config(), backbone)
        dim = config.equivariant_dim
        self.equivariant_projector = equivariant_projector(
            backbone.num_fields, config.equivariant_hidden_dim, dim
        )
        self.parameter_encoder = nn.Sequential(
            nn.Linear(len(layout), dim, bias=False), nn.BatchNorm1d(dim)
        )
        self.equivariant_predictor = nn.Sequential(
            nn.Linear(2 * dim, dim, bias=False), nn.BatchNorm1d(dim, affine=False)
        )

    def forward(
        self, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        views, parameters = zip(*(augment(images) for augment in self.augmentations), strict=True)
        return self.losses(backbone, images, views, parameters)

    def losses(
        self,
        backbone: Backbone,
        images: torch.Tensor,
        views: tuple[torch.Tensor, ...],
        parameters: tuple[torch.Tensor, ...],
    ) -> dict[str, torch.Tensor]:
        """Loss and logged scalars for ``images``, two ``views`` and their raw vectors."""
        features = [self.base.read(backbone(view)) for view in views]
        values = self.base.view_loss(backbone, (views[0], views[1]), features)
        values["loss_invariant"] = values.pop("loss")
        loss = values["loss_invariant"]
        if self.config.equivariant_weight > 0:
            original = self.base.read(backbone(images))
            values |= self.equivariant_loss(original, features, parameters)
            loss = loss + self.config.equivariant_weight * values["loss_equivariant"]
        return {"loss": loss, **values}

    def equivariant_loss(
        self,
        original: torch.Tensor,
        features: list[torch.Tensor],
        parameters: tuple[torch.Tensor, ...],
    ) -> dict[str, torch.Tensor]:
        """NT-Xent between ``y_t`` and ``y_hat_t = u([y0; g_t(p_t)])``, and ``eqgain``."""
        projected = self.equivariant_projector(torch.cat([original, *features]))
        original_y, *view_y = projected.chunk(1 + len(features))
        targets = torch.cat(view_y)
        originals = original_y.repeat(len(features), 1)
        encoded = self.parameter_encoder(self.standardise(torch.cat(parameters)))
        predictions = self.equivariant_predictor(torch.cat([originals, encoded], dim=1))
        loss = equivariant_nt_xent(targets, predictions, self.config.equivariant_temperature)
        with torch.no_grad():
            gain = equivariance_gain(targets, predictions, originals)
        return {"loss_equivariant": loss, "eqgain": gain}

    def after_step(self, backbone: Backbone, step: int, total_steps: int) -> None:
        self.base.after_step(backbone, step, total_steps)
