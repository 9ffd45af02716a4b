"""Equivariant pretext labels (Mukuta & Harada 2023, arXiv:2303.04427; our design).

The pretext task is to predict which group element ``g`` was applied to the
input. The labels carry a group action, ``label(T_g x) = g . label(x)``, so the
head is built to share it: one logit per group element, read from the regular
fiber axis by one map applied to every fiber alike,
``logit_g(x) = phi(fibers(x)[:, :, g])``. Because ``fibers(T_h x) = rho(h) fibers(x)``
and ``phi`` acts per fiber, the logits permute as a regular fiber does: rotating
the input by ``k`` steps of C_N shifts them cyclically by ``k``, exactly, at any
weights. The network only has to learn which orientation is upright; every other
prediction follows from the symmetry.

Options:

- ``head: equivariant`` (the above) or ``invariant``: a linear map of the
  group-pooled features to ``|G|`` logits. Invariant features are the same for
  every ``T_g x``, so this control cannot beat chance (``1/|G|``).
- ``head_hidden_dim``: ``phi`` linear (unset) or a one-hidden-layer MLP, still shared
  across fibers and so still exactly equivariant.
- D_N: the labels are all ``2N`` group elements and the logits the whole regular
  fiber axis (one head for rotation and flip, not two), so the same argument holds.
- ``augment``: base augmentations applied before the group element (so labels stay
  exact); random flips are refused for groups with reflections, where they would
  change the label.

Trivial groups are refused (one element: nothing to predict). On the unstructured
twin (``model.structure: unstructured``) the fake group axis is read the same way:
the control whose logits do not shift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from hssl_cli.augment import BaseAugmentation
from hssl_cli.config import EqlabelsConfig
from hssl_cli.distributed import global_count, local_rows
from hssl_cli.objectives.base import Objective
from hssl_cli.structured import BackboneOutput, fiber_tokens

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone


class FiberLogits(nn.Module):
    """``[B, C, |G|]`` fibers -> ``[B, |G|]`` logits by one map ``phi: R^C -> R`` per fiber.

    Permuting the fiber axis permutes the logits the same way (equivariant at any weights).
    """

    def __init__(self, num_fields: int, hidden_dim: int | None) -> None:
        super().__init__()
        if hidden_dim is None:
            self.phi: nn.Module = nn.Linear(num_fields, 1)
        else:
            self.phi = nn.Sequential(
                nn.Linear(num_fields, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, 1)
            )

    def forward(self, fibers: torch.Tensor) -> torch.Tensor:
        return self.phi(fiber_tokens(fibers)).squeeze(-1)


class EqlabelsObjective(Objective):
    Config = EqlabelsConfig

    def __init__(self, config: EqlabelsConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: EqlabelsConfig = config
        self.group = backbone.group
        self.augment = BaseAugmentation(config.augment) if config.augment else None
        if config.head == "equivariant":
            self.head: nn.Module = FiberLogits(backbone.num_fields, config.head_hidden_dim)
        else:
            self.head = nn.Linear(backbone.num_fields, self.group.order)

    def logits(self, output: BackboneOutput) -> torch.Tensor:
        """``[B, |G|]`` logits, entry ``g`` for "the input was transformed by ``g``"."""
        if self.config.head == "equivariant":
            return self.head(output.fibers)
        return self.head(output.invariant)

    def forward(
        self, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        view = self.augment(images) if self.augment is not None else images
        draws = torch.randint(self.group.order, (global_count(len(images)),), device=images.device)
        elements = local_rows(draws)
        logits = self.logits(backbone(self.group.act_on_images_per_sample(view, elements)))
        loss = F.cross_entropy(logits, elements)
        pretext_acc = (logits.detach().argmax(1) == elements).float().mean()
        return {"loss": loss, "pretext_acc": pretext_acc}
