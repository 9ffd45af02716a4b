"""The contract between the trainer and every SSL objective.

An objective owns its heads and its view-making; it receives the backbone and a
batch of images in ``[0, 1]`` (and their labels) and returns named scalars, of which
``loss`` is optimised and the rest are logged; ``after_step`` runs after each
optimiser step. The trainer knows nothing method-specific.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from pydantic import Field, StrictInt
from torch import nn

from hssl_cli.recipe import MethodConfig

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.recipe import Recipe


class ReadoutConfig(MethodConfig):
    """Which backbone feature an A-SSL objective projects (see ``FiberViews.read_output``)."""

    readout: Literal["fiber", "invariant"] = "fiber"
    fiber_bundle_size: StrictInt = Field(default=1, ge=1)
    bundle_pool: Literal["mean", "max"] = "mean"


class ContrastiveConfig(MethodConfig):
    """Options every NT-Xent objective shares."""

    temperature: float = Field(default=0.5, gt=0)
    projector_hidden_dim: StrictInt = Field(default=512, ge=1)
    projector_out_dim: StrictInt = Field(default=128, ge=1)
    fiber_bundle_size: StrictInt = Field(default=1, ge=1)
    bundle_pool: Literal["mean", "max"] = "mean"


def check_sizes_fit_group(recipe: Recipe, keys: tuple[str, ...]) -> None:
    """Neighbourhood sizes (``G0``, spread) cannot exceed ``|G|``."""
    from hssl_cli.groups import get_group

    order = get_group(recipe.model.group).order
    for key in keys:
        value = getattr(recipe.method, key, None)
        if value is not None and value > order:
            raise ValueError(
                f"method.{key}={value} exceeds |G|={order} of group {recipe.model.group}"
            )


class Objective(nn.Module):
    Config: ClassVar[type[MethodConfig]]

    def __init__(self, config: MethodConfig, backbone: Backbone) -> None:
        super().__init__()
        self.config = config

    @classmethod
    def check_recipe(cls, recipe: Recipe) -> None:
        """Raise ``ValueError`` when the recipe's other sections do not suit this method."""
        check_sizes_fit_group(recipe, ("fiber_bundle_size",))

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
