"""The contract between the trainer and every SSL objective, and the A-SSL two-view pattern.

An objective owns its heads and its view-making; it receives the backbone and a
batch of images in ``[0, 1]`` (and their labels) and returns named scalars, of which
``loss`` is optimised and the rest are logged; ``after_step`` runs after each
optimiser step. The trainer knows nothing method-specific.

An objective that extends another (E-SSL, EquiMod) builds its base through the
registry (:func:`hssl_cli.objectives.objective_class`) and adds its own term.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from hssl_cli.augment import BaseAugmentation
from hssl_cli.objectives.group_views import group_fiber_views

if TYPE_CHECKING:
    from hssl_cli.config import MethodConfig
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.structured import BackboneOutput

Views = tuple[torch.Tensor, torch.Tensor]  # two augmented batches of the same images
Features = list[torch.Tensor]  # what the objective reads of each view's backbone output
Scalars = dict[str, torch.Tensor]  # named losses and metrics; "loss" is minimised


class Objective(nn.Module):
    Config: ClassVar[type[MethodConfig]]

    def __init__(self, config: MethodConfig, backbone: Backbone) -> None:
        super().__init__()
        self.config = config

    def forward(
        self, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Named scalars for a batch of images in ``[0, 1]``; ``loss`` is minimised.

        ``labels`` are the batch's class labels, for the few objectives whose experiment
        uses them (E-SSL's explaining-away variants); the others ignore them.
        """
        raise NotImplementedError

    def after_step(self, backbone: Backbone, step: int, total_steps: int) -> None:
        """Called after each optimiser step (e.g. a BYOL target's moving average)."""


class TwoViewObjective(Objective):
    """A-SSL: two base-augmented views of each image, each through the backbone.

    Subclasses say what they read of the backbone's output (:meth:`read`) and what loss
    the two views' readings give (:meth:`view_loss`); EquiMod reuses ``view_loss`` on
    its own parametrised views.
    """

    def __init__(self, config: MethodConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.augment = BaseAugmentation(config.augment, backbone.group)  # type: ignore[attr-defined]

    def read(self, output: BackboneOutput) -> torch.Tensor:
        raise NotImplementedError

    def view_loss(self, backbone: Backbone, views: Views, features: Features) -> Scalars:
        """Named scalars for two augmented batches ``views`` and their readings ``features``."""
        raise NotImplementedError

    def forward(
        self, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        views = (self.augment(images), self.augment(images))
        return self.view_loss(backbone, views, [self.read(backbone(view)) for view in views])


class ReadoutObjective(TwoViewObjective):
    """Reads the identity fiber bundle of an equivariant backbone, or its invariant features.

    With ``readout: fiber`` a random group element in the augmentation
    (``augment.group_element``) is the A-SSL counterpart of H-SSL's fiber views;
    ``readout: invariant`` reads the group-pooled features, which no group element changes.
    """

    def __init__(self, config: MethodConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.views = group_fiber_views(
            backbone.group,
            config.fiber_bundle_size,  # type: ignore[attr-defined]
            config.bundle_pool,  # type: ignore[attr-defined]
        )

    def read(self, output: BackboneOutput) -> torch.Tensor:
        return self.views.read_output(output, self.config.readout)  # type: ignore[attr-defined]
