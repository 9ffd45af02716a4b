"""EquiMod (Devillers & Lefort, ICLR 2023; METHODS §5): an equivariance module on SimCLR or BYOL.

Per image: the un-augmented ``x0`` and two views ``x1, x2`` with explicit
parameter vectors ``p1, p2`` (:mod:`hssl_cli.augment_params`, standardised).
The invariant branch is the base method on ``z1, z2`` from ``g_inv``
(``base: simclr`` NT-Xent, or ``base: byol`` with a predictor and a moving-average
target). The equivariant branch projects ``y_t = g_eq(f(x_t))`` for t = 0, 1, 2,
encodes the parameters ``g_t(p_t)`` and predicts ``y_hat_t = u([y0; g_t(p_t)])``:
the representation of the original, displaced by the augmentation, should land
on the augmented view's. The loss is

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

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, StrictInt
from torch import nn

from hssl_cli.augment import ExtendedAugmentConfig
from hssl_cli.augment_params import (
    ParameterStandardiser,
    ParametrisedAugmentation,
    parameter_layout,
)
from hssl_cli.objectives.base import ContrastiveConfig, Objective
from hssl_cli.objectives.byol import byol_loss
from hssl_cli.objectives.ema import EmaTarget
from hssl_cli.objectives.fiber_views import FiberViews
from hssl_cli.objectives.heads import projection_head
from hssl_cli.objectives.ntxent import nt_xent, pair_accuracy

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.recipe import Recipe
    from hssl_cli.structured import BackboneOutput


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


def _equimod_augment() -> ExtendedAugmentConfig:
    """SimCLR's CIFAR pipeline with torchvision's random jitter order, as EquiMod uses it."""
    return ExtendedAugmentConfig(jitter_order="random")


class EquimodConfig(ContrastiveConfig):
    """EquiMod options; ``temperature`` is SimCLR's (unused with ``base: byol``).

    ``second_augment`` gives the second view its own pipeline (BYOL's asymmetric
    blur and solarization); unset, both views share ``augment``. The BYOL options
    (``predictor_hidden_dim``, ``base_momentum``) are ByolObjective's.
    """

    name: Literal["equimod"] = "equimod"
    base: Literal["simclr", "byol"] = "simclr"
    augment: ExtendedAugmentConfig = Field(default_factory=_equimod_augment)
    second_augment: ExtendedAugmentConfig | None = None
    readout: Literal["fiber", "invariant"] = "fiber"
    equivariant_weight: float = Field(default=1.0, ge=0)
    equivariant_temperature: float = Field(default=0.2, gt=0)
    equivariant_hidden_dim: StrictInt = Field(default=512, ge=1)
    equivariant_dim: StrictInt = Field(default=128, ge=1)
    predictor_hidden_dim: StrictInt = Field(default=512, ge=1)
    base_momentum: float = Field(default=0.99, ge=0, le=1)


class EquimodObjective(Objective):
    Config = EquimodConfig

    def __init__(self, config: EquimodConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: EquimodConfig = config
        self.views = FiberViews(backbone.group, config.fiber_bundle_size, config.bundle_pool)
        pipelines = (config.augment, config.second_augment or config.augment)
        layout = parameter_layout(pipelines)
        self.augmentations = tuple(
            ParametrisedAugmentation(pipeline, layout, backbone.in_channels)
            for pipeline in pipelines
        )
        self.standardise = ParameterStandardiser.measure(self.augmentations)
        features = backbone.num_fields
        self.invariant_projector = projection_head(
            features, config.projector_hidden_dim, config.projector_out_dim
        )
        if config.base == "byol":
            out_dim = config.projector_out_dim
            self.predictor = projection_head(out_dim, config.predictor_hidden_dim, out_dim)
            self.target = EmaTarget(backbone, self.invariant_projector, config.base_momentum)
        dim = config.equivariant_dim
        self.equivariant_projector = equivariant_projector(
            features, config.equivariant_hidden_dim, dim
        )
        self.parameter_encoder = nn.Sequential(
            nn.Linear(len(layout), dim, bias=False), nn.BatchNorm1d(dim)
        )
        self.equivariant_predictor = nn.Sequential(
            nn.Linear(2 * dim, dim, bias=False), nn.BatchNorm1d(dim, affine=False)
        )

    @classmethod
    def check_recipe(cls, recipe: Recipe) -> None:
        super().check_recipe(recipe)
        config: EquimodConfig = recipe.method  # type: ignore[assignment]
        for key in ("augment", "second_augment"):
            pipeline = getattr(config, key)
            if pipeline is not None and pipeline.group_element:
                raise ValueError(
                    f"method.{key}.group_element: EquiMod's parameter vector does not encode "
                    f"group elements; set method.{key}.group_element=false"
                )

    def read(self, output: BackboneOutput) -> torch.Tensor:
        return self.views.read_output(output, self.config.readout)

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
        features = [self.read(backbone(view)) for view in views]
        values = self.invariant_loss(features, views)
        loss = values["loss_invariant"]
        if self.config.equivariant_weight > 0:
            original = self.read(backbone(images))
            values |= self.equivariant_loss(original, features, parameters)
            loss = loss + self.config.equivariant_weight * values["loss_equivariant"]
        return {"loss": loss, **values}

    def invariant_loss(
        self, features: list[torch.Tensor], views: tuple[torch.Tensor, ...]
    ) -> dict[str, torch.Tensor]:
        """The base method on the two views, computed as SimclrObjective or ByolObjective does."""
        if self.config.base == "simclr":
            embeddings = self.invariant_projector(torch.cat(features))
            sample_ids = torch.arange(len(views[0]), device=embeddings.device).repeat(2)
            loss = nt_xent(embeddings, sample_ids, self.config.temperature)
            return {"loss_invariant": loss, "pair_acc": pair_accuracy(embeddings, sample_ids)}
        predictions = [self.predictor(self.invariant_projector(f)) for f in features]
        targets = [self.target.project(self.read(self.target(view))) for view in views]
        loss = byol_loss(predictions[0], targets[1]) + byol_loss(predictions[1], targets[0])
        with torch.no_grad():
            target_std = F.normalize(targets[0], dim=1).std(dim=0).mean()
        return {"loss_invariant": loss, "target_std": target_std}

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
        if self.config.base == "byol":
            self.target.update(backbone, self.invariant_projector, step, total_steps)
